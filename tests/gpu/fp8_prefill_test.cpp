// The FP8 linears and routed experts at prefill sizes on the sm90 GEMM (gemm/sm90), through the
// backend, on fresh random inputs: against cuBLASLt's W8A8 product on the same quantized
// activations (the same function: BF16 output rounding and summation order apart) and against the
// CPU oracle (unquantized activations: W8A8's bound). DeepSeek-V3's FP8 linear shapes (gate_up
// scaled down in N for the oracle's time), partial tiles, the fallbacks (K not a multiple of 128:
// BF16 on cuBLASLt; an odd N: the segment on cuBLASLt, named by fp8_paths), and the expert-grouped
// path: empty experts, one hot expert taking every token, ids outside this rank's experts.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/gemm/sm90/fp8_gemm_sm90.h"
#include "gpu/gpu_test_util.h"

namespace dsserve::test {
namespace {

cuda::CudaBackend& cg() { return static_cast<cuda::CudaBackend&>(gpu()); }
using Path = cuda::CudaBackend::Fp8LinearPath;
using MoePath = cuda::CudaBackend::MoePath;

// The largest ||a - b|| / ||b|| over (row, 64-column block) pieces of two host [T, N] results.
double max_piece_err(const Tensor& a, const Tensor& b) {
  const int64_t T = b.size(0), N = b.numel() / std::max<int64_t>(T, 1);
  double worst = 0;
  for (int64_t t = 0; t < T; ++t)
    for (int64_t c0 = 0; c0 < N; c0 += 64) {
      double d = 0, r = 0;
      for (int64_t c = c0; c < std::min(N, c0 + 64); ++c) {
        const double x = a.ptr<float>()[t * N + c], y = b.ptr<float>()[t * N + c];
        if (!std::isfinite(x)) return INFINITY;
        d += (x - y) * (x - y), r += y * y;
      }
      worst = std::max(worst, std::sqrt(d / std::max(r, 1e-30)));
    }
  return worst;
}

class Fp8Prefill : public ::testing::Test {
 protected:
  void SetUp() override {
    DS_REQUIRE_GPU();
    if (!cuda::fp8_gemm_sm90_device_ok()) GTEST_SKIP() << "not an sm_90 device";
    if (sm80_forced()) GTEST_SKIP() << "the Hopper set's sm90 GEMM (--sm80-kernels)";
    cg().set_sm90_fp8_gemm(true);  // the kernels under test are opt-in
    gpu().begin_forward();
    cpu().begin_forward();
  }
  void TearDown() override {
    if (!gpu_available()) return;
    cg().set_sm90_fp8_gemm(false);
    cg().set_moe_path(MoePath::Auto);
  }
  // One linear call on the sm90 path and on cuBLASLt, and the oracle.
  void check_linear(const std::string& name, const std::vector<WeightPart>& parts, int64_t T, bool expect_sm90) {
    LinearWeight wc = cpu().make_linear(parts, LinearUse::Projection);
    LinearWeight wg = gpu().make_linear(parts, LinearUse::Projection);
    RecordProperty("paths_" + name, cuda::CudaBackend::fp8_paths(wg));
    const int64_t in = wg.in_features;
    Tensor x = randn({T, in}, rng);
    Tensor xg = to_backend(gpu(), x);
    gpu().begin_forward();
    Tensor g = gpu().to_host_f32(gpu().linear(xg, wg));
    EXPECT_EQ(cg().last_fp8_linear(), expect_sm90 ? Path::Sm90 : Path::Cublaslt)
        << name << " T=" << T << ": " << cuda::CudaBackend::fp8_paths(wg);
    cg().set_fp8_sm90_min_tokens(INT64_MAX);
    Tensor l = gpu().to_host_f32(gpu().linear(xg, wg));
    EXPECT_EQ(cg().last_fp8_linear(), Path::Cublaslt);
    cg().set_fp8_sm90_min_tokens(cuda::CudaBackend::kFp8Sm90MinTokens);
    Tensor c = cpu().to_host_f32(cpu().linear(cpu().to_device(x), wc));
    const double vs_lt = max_piece_err(g, l), vs_oracle = rel_err(g, c);
    RecordProperty(name + "_T" + std::to_string(T) + "_vs_cublaslt", std::to_string(vs_lt));
    RecordProperty(name + "_T" + std::to_string(T) + "_vs_oracle", std::to_string(vs_oracle));
    EXPECT_LE(vs_lt, 1.5e-2) << name << " T=" << T << " against cuBLASLt W8A8";
    EXPECT_LE(vs_oracle, 8e-2) << name << " T=" << T << " against the oracle";
  }
  Rng rng{std::random_device{}()};
};

TEST_F(Fp8Prefill, V3LinearShapesMatchCublasltAndOracle) {
  struct Case {
    const char* name;
    int64_t in;
    std::vector<int64_t> outs;
  };
  const Case cases[] = {
      {"q_a+kv_a", 7168, {1536, 576}},  // one fp8 [2112] segment, a partial last scale block
      {"q_b", 1536, {24576}},
      {"o_proj", 16384, {7168}},
      {"gate_up/8", 7168, {2304, 2304}},
      {"down", 18432, {7168}},
      {"shared_down", 2048, {7168}},
  };
  for (const Case& cs : cases) {
    std::vector<WeightPart> parts;
    for (int64_t o : cs.outs) parts.push_back(random_fp8_part(o, cs.in, rng));
    for (int64_t T : {128, 333}) check_linear(cs.name, parts, T, true);
  }
}

TEST_F(Fp8Prefill, FusedSegmentsAndFallbacks) {
  // fp8 136 rows, fp8 256 at row 136 (its own segment), BF16 64, fp8 520: every FP8 segment on sm90.
  const int64_t in = 512;
  std::vector<WeightPart> parts{random_fp8_part(136, in, rng), random_fp8_part(256, in, rng),
                                random_bf16_part(64, in, rng), random_fp8_part(520, in, rng)};
  check_linear("fused", parts, 300, true);
  // K = 192: not a multiple of 128, so the linear is BF16 on cuBLASLt (no FP8 segment at all).
  std::vector<WeightPart> k192{random_fp8_part(256, 192, rng)};
  LinearWeight wg = gpu().make_linear(k192, LinearUse::Projection);
  EXPECT_EQ(cuda::CudaBackend::describe(wg), "bf16 [256]");
  EXPECT_EQ(cuda::CudaBackend::fp8_paths(wg), "");
  // N = 1 and an odd N: the sm90 kernel stores column pairs, so those segments say why and run on
  // cuBLASLt (or, where cuBLASLt declines too, as BF16).
  for (int64_t n : {int64_t(1), int64_t(129)}) {
    std::vector<WeightPart> odd{random_fp8_part(n, 256, rng)};
    LinearWeight wo = gpu().make_linear(odd, LinearUse::Projection);
    const std::string paths = cuda::CudaBackend::fp8_paths(wo);
    RecordProperty("paths_N" + std::to_string(n), cuda::CudaBackend::describe(wo) + " / " + paths);
    if (!paths.empty()) {
      EXPECT_NE(paths.find("cublaslt"), std::string::npos) << paths;
    }
    LinearWeight wc = cpu().make_linear(odd, LinearUse::Projection);
    Tensor x = randn({200, 256}, rng);
    Tensor g = gpu().to_host_f32(gpu().linear(to_backend(gpu(), x), wo));
    Tensor c = cpu().to_host_f32(cpu().linear(cpu().to_device(x), wc));
    EXPECT_LE(rel_err(g, c), 8e-2) << "N=" << n;
  }
}

// Routed experts on the sm90 grouped path against the cuBLASLt path and the oracle.
struct MoeCase {
  const char* name;
  int E, H, I, K;
  int64_t T;
  std::vector<int> hot;  // every token takes these experts first
  bool out_of_range = false;  // some ids outside [0, E) (experts of other ranks)
};

TEST_F(Fp8Prefill, GroupedExpertsMatchCublasltAndOracle) {
  const MoeCase cases[] = {
      {"E32_T300", 32, 1024, 512, 8, 300, {}},
      {"E64_T40_empty", 64, 512, 256, 2, 40, {}},       // most experts empty
      {"E16_hot", 16, 512, 384, 1, 700, {5}},            // one expert takes every token
      {"E16_hot_top3", 16, 512, 256, 3, 500, {0, 15}},   // two hot experts beside random ones
      {"E8_ep", 8, 512, 256, 4, 300, {}, true},          // ids of other ranks' experts skipped
  };
  for (const MoeCase& cs : cases) {
    std::vector<ExpertParts> parts;
    for (int e = 0; e < cs.E; ++e)
      parts.push_back({random_fp8_part(cs.I, cs.H, rng), random_fp8_part(cs.I, cs.H, rng),
                       random_fp8_part(cs.H, cs.I, rng)});
    ExpertWeights wc = cpu().make_experts(parts), wg = gpu().make_experts(parts);
    Tensor ids = Tensor::zeros_host(DType::I32, {cs.T, cs.K}), wts = uniform({cs.T, cs.K}, rng, 0.1f, 0.7f);
    for (int64_t t = 0; t < cs.T; ++t) {
      std::vector<int32_t> e(static_cast<size_t>(cs.E));
      std::iota(e.begin(), e.end(), 0);
      std::shuffle(e.begin(), e.end(), rng);
      for (size_t h = 0; h < cs.hot.size(); ++h)
        std::iter_swap(e.begin() + long(h), std::find(e.begin(), e.end(), cs.hot[h]));
      for (int k = 0; k < cs.K; ++k) {
        int32_t id = e[size_t(k)];
        if (cs.out_of_range && (t + k) % 3 == 0) id = (t % 2) ? cs.E + 3 : -2;
        ids.ptr<int32_t>()[t * cs.K + k] = id;
      }
    }
    // The oracle skips out-of-range ids as expert parallelism does (weight 0 for them).
    Tensor ids_c = Tensor::zeros_host(DType::I32, {cs.T, cs.K}), wts_c = Tensor::zeros_host(DType::F32, {cs.T, cs.K});
    for (int64_t i = 0; i < ids.numel(); ++i) {
      const int32_t id = ids.ptr<int32_t>()[i];
      const bool in = id >= 0 && id < cs.E;
      ids_c.ptr<int32_t>()[i] = in ? id : 0;
      wts_c.ptr<float>()[i] = in ? wts.ptr<float>()[i] : 0.0f;
    }
    RouterOutput rc{cpu().to_device(ids_c), cpu().to_device(wts_c)}, rg{gpu().to_device(ids), gpu().to_device(wts)};
    Tensor x = randn({cs.T, cs.H}, rng);
    Tensor xg = to_backend(gpu(), x);
    gpu().begin_forward();
    cg().set_moe_path(MoePath::Sm90);
    Tensor g = gpu().to_host_f32(gpu().moe_experts(xg, wg, rg));
    EXPECT_EQ(cg().last_moe_path(), MoePath::Sm90);
    cg().set_moe_path(MoePath::Cublaslt);
    Tensor l = gpu().to_host_f32(gpu().moe_experts(xg, wg, rg));
    cg().set_moe_path(MoePath::Auto);
    Tensor c = cpu().to_host_f32(cpu().moe_experts(cpu().to_device(x), wc, rc));
    const double vs_lt = rel_err(g, l), vs_oracle = rel_err(g, c);
    RecordProperty(std::string(cs.name) + "_vs_cublaslt", std::to_string(vs_lt));
    RecordProperty(std::string(cs.name) + "_vs_oracle", std::to_string(vs_oracle));
    // Both paths quantize the same inputs; the intermediate activation may round differently where
    // the two products' BF16 outputs differ in the last bit.
    EXPECT_LE(vs_lt, 2e-2) << cs.name << " against the cuBLASLt path";
    EXPECT_LE(vs_oracle, 0.1) << cs.name << " against the oracle";
  }
}

// MoePath::Auto with the dense sm90 GEMM off (the default): the sm90 grouped launch up to
// kMoeSm90AutoMaxPairs (token, expert) pairs, cuBLASLt per expert beyond; both results agree.
TEST_F(Fp8Prefill, AutoTakesTheGroupedLaunchUpToItsMeasuredRange) {
  cg().set_sm90_fp8_gemm(false);
  const int E = 16, H = 256, I = 128, K = 8;
  std::vector<ExpertParts> parts;
  for (int e = 0; e < E; ++e)
    parts.push_back({random_fp8_part(I, H, rng), random_fp8_part(I, H, rng), random_fp8_part(H, I, rng)});
  ExpertWeights wg = gpu().make_experts(parts);
  const int64_t at_limit = cuda::CudaBackend::kMoeSm90AutoMaxPairs / K;
  for (auto [T, expected] : {std::pair{int64_t(300), MoePath::Sm90}, std::pair{at_limit, MoePath::Sm90},
                             std::pair{at_limit + 1, MoePath::Cublaslt}}) {
    Tensor ids = Tensor::zeros_host(DType::I32, {T, K}), wts = uniform({T, K}, rng, 0.1f, 0.7f);
    for (int64_t t = 0; t < T; ++t)
      for (int k = 0; k < K; ++k) ids.ptr<int32_t>()[t * K + k] = int32_t((t + 3 * k) % E);
    RouterOutput rg{gpu().to_device(ids), gpu().to_device(wts)};
    Tensor xg = to_backend(gpu(), randn({T, H}, rng));
    gpu().begin_forward();
    Tensor a = gpu().to_host_f32(gpu().moe_experts(xg, wg, rg));
    EXPECT_EQ(cg().last_moe_path(), expected) << "T=" << T;
    cg().set_moe_path(expected == MoePath::Sm90 ? MoePath::Cublaslt : MoePath::Sm90);
    Tensor b = gpu().to_host_f32(gpu().moe_experts(xg, wg, rg));
    cg().set_moe_path(MoePath::Auto);
    EXPECT_LE(rel_err(a, b), 2e-2) << "T=" << T << ": the two paths";
  }
}

// Per-head weights as a block-FP8 checkpoint gives them: e4m3 codes (each 128x128 block reaching
// +-448) times the block's scale, rounded to BF16 (the loader's dequantization).
Tensor fp8_head_weight(int64_t n, int64_t out, int64_t in, Rng& rng) {
  Tensor w = Tensor::zeros_host(DType::F32, {n, out, in});
  std::normal_distribution<float> nd(0.0f, 100.0f);
  std::uniform_real_distribution<float> us(0.5f, 1.5f);
  for (int64_t h = 0; h < n; ++h)
    for (int64_t r0 = 0; r0 < out; r0 += 128)
      for (int64_t c0 = 0; c0 < in; c0 += 128) {
        const float scale = us(rng) / (448.0f * std::sqrt(float(in)));
        for (int64_t r = r0; r < r0 + 128; ++r)
          for (int64_t k = c0; k < c0 + 128; ++k) {
            const uint8_t code = r == r0 && k == c0 ? f32_to_e4m3(448.0f) : f32_to_e4m3(nd(rng));
            w.ptr<float>()[(h * out + r) * in + k] = bf16_to_f32(f32_to_bf16(e4m3_to_f32(code) * scale));
          }
      }
  return w;
}

TEST_F(Fp8Prefill, OffByDefaultAndOnTogether) {
  cg().set_sm90_fp8_gemm(false);
  std::vector<WeightPart> parts{random_fp8_part(256, 512, rng)};
  LinearWeight wg = gpu().make_linear(parts, LinearUse::Projection);
  gpu().linear(to_backend(gpu(), randn({300, 512}, rng)), wg);
  EXPECT_EQ(cg().last_fp8_linear(), Path::Cublaslt) << "off: prefill-size FP8 linears stay on cuBLASLt";
  EXPECT_FALSE(cg().sm90_fp8_gemm());
  cg().set_sm90_fp8_gemm(true);
  EXPECT_TRUE(cg().sm90_fp8_gemm());
  gpu().linear(to_backend(gpu(), randn({300, 512}, rng)), wg);
  EXPECT_EQ(cg().last_fp8_linear(), Path::Sm90);
}

TEST_F(Fp8Prefill, HeadProductsInFp8MatchBf16AndOracle) {
  // W_UK^T (128 -> 512) on q_nope taken as a strided slice of q, and W_UV (512 -> 128), 16 heads.
  const int64_t n = 16, dn = 128, dr = 64, kr = 512;
  Tensor wuk = fp8_head_weight(n, kr, dn, rng), wuv = fp8_head_weight(n, dn, kr, rng);
  HeadWeight kc = cpu().make_head_weight(wuk, true), kg = gpu().make_head_weight(wuk, true);
  HeadWeight vc = cpu().make_head_weight(wuv, true), vg = gpu().make_head_weight(wuv, true);
  for (int64_t T : {1, 7, 64, 300}) {
    Tensor q = randn({T, n * (dn + dr)}, rng), lat = randn({T, n * kr}, rng);
    Tensor qc = cpu().to_device(q).unflatten(1, n, dn + dr).slice(2, 0, dn);
    Tensor qg = to_backend(gpu(), q).unflatten(1, n, dn + dr).slice(2, 0, dn);
    Tensor lc = cpu().to_device(lat).unflatten(1, n, kr), lg = to_backend(gpu(), lat).unflatten(1, n, kr);
    for (int which = 0; which < 2; ++which) {
      const HeadWeight& wc = which == 0 ? kc : vc;
      const HeadWeight& wg = which == 0 ? kg : vg;
      const Tensor& xc = which == 0 ? qc : lc;
      const Tensor& xg = which == 0 ? qg : lg;
      gpu().begin_forward();
      cg().set_head_fp8(true);
      Tensor g = gpu().to_host_f32(gpu().head_linear(xg, wg));
      EXPECT_TRUE(cg().last_head_fp8()) << "T=" << T;
      cg().set_head_fp8(false);
      Tensor b = gpu().to_host_f32(gpu().head_linear(xg, wg));
      EXPECT_FALSE(cg().last_head_fp8());
      cg().set_head_fp8(true);
      Tensor c = cpu().to_host_f32(cpu().head_linear(xc, wc));
      const std::string tag = std::string(which == 0 ? "w_uk" : "w_uv") + "_T" + std::to_string(T);
      const double vs_bf16 = rel_err(g, b), vs_oracle = rel_err(g, c), bf16_vs_oracle = rel_err(b, c);
      RecordProperty(tag + "_fp8_vs_oracle", std::to_string(vs_oracle));
      RecordProperty(tag + "_bf16_vs_oracle", std::to_string(bf16_vs_oracle));
      // FP8 activations (one e4m3 rounding, about 3.5% per value) against the oracle's BF16 ones.
      EXPECT_LE(vs_oracle, 8e-2) << tag;
      EXPECT_LE(vs_bf16, 8e-2) << tag;
      EXPECT_LE(bf16_vs_oracle, 1e-2) << tag;
    }
  }
}

}  // namespace
}  // namespace dsserve::test
