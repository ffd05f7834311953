// The W8A8 decode path (the fused decode path, CudaBackend::set_fused_decode, on by default) against the CPU oracle on fresh random inputs: the decode-size linear
// (gemm/w8a8_decode_gemm.h) at every DeepSeek-V3 FP8 shape and at odd ones, the producers that
// quantize their outputs (RMSNorm, add + RMSNorm, SiLU-and-mul), the MLP with SiLU-and-mul fused into
// its gate_up product, and CUDA-graph replays (bit for bit, with and without programmatic dependent
// launch).
// Two references per product: an exact W8A8 emulation on the host (activations quantized per token
// per 128 channels as the GPU does, weights e4m3 x block scale in float32, not rounded: only the
// float32 summation order and the output's BF16 rounding differ, so the bound is tight and checked
// per token and 64-column piece) and the oracle itself (unquantized activations, BF16-rounded
// weights: the e4m3 rounding of the activations, a few percent).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/gemm/w8a8_decode_gemm.h"
#include "gpu/gpu_test_util.h"

namespace dsserve::test {
namespace {

constexpr double kPieceTol = 6e-3;   // vs the exact W8A8 emulation: BF16 output rounding and float32 order
constexpr double kOracleTol = 8e-2;  // vs the oracle: the activations' e4m3 rounding

cuda::CudaBackend& cg() { return static_cast<cuda::CudaBackend&>(gpu()); }

// Host quantization of rows as the GPU does it: per token per 128 columns, s = max(amax, 1e-12) / 448,
// q = e4m3(x / s). Returns the dequantized values (q * s).
Tensor quantize_rows(const Tensor& x) {
  Tensor out = Tensor::zeros_host(DType::F32, x.shape());
  const int64_t T = x.size(0), K = x.size(1);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t b = 0; b < K; b += 128) {
      float amax = 0;
      for (int64_t i = b; i < b + 128; ++i) amax = std::max(amax, std::fabs(x.ptr<float>()[t * K + i]));
      const float s = std::max(amax, 1e-12f) / 448.0f;
      for (int64_t i = b; i < b + 128; ++i)
        out.ptr<float>()[t * K + i] = e4m3_to_f32(f32_to_e4m3(x.ptr<float>()[t * K + i] / s)) * s;
    }
  return out;
}

// The weight as the W8A8 product uses it: e4m3 x block scale in float32 (not rounded to BF16).
WeightPart exact_part(const WeightPart& p) {
  const int64_t rows = p.weight.size(0), cols = p.weight.size(1), bc = (cols + 127) / 128;
  WeightPart out;
  out.weight = Tensor::zeros_host(DType::F32, {rows, cols});
  const uint8_t* w = p.weight.ptr<uint8_t>();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      out.weight.ptr<float>()[r * cols + c] = e4m3_to_f32(w[r * cols + c]) * p.scale.ptr<float>()[(r / 128) * bc + c / 128];
  return out;
}

// A checkpoint-style FP8 part whose scales also step by powers of two from block to block.
WeightPart fp8_part(int64_t out, int64_t in, Rng& rng) {
  WeightPart p = random_fp8_part(out, in, rng);
  float* s = p.scale.ptr<float>();
  for (int64_t i = 0; i < p.scale.numel(); ++i) s[i] *= float(1 << (i % 5)) / 4.0f;
  return p;
}

// The largest ||a - b|| / ||b|| over (token, 64-column) pieces; infinity if a is not finite.
double max_piece_err(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.shape(), b.shape());
  const int64_t T = b.size(0), N = b.size(1);
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

class W8A8Decode : public ::testing::Test {
 protected:
  void SetUp() override {
    DS_REQUIRE_GPU();
    if (sm80_forced()) GTEST_SKIP() << "the fused decode path (FP8 tensor cores) is not in the sm80 kernel set";
    gpu().begin_forward();
    cpu().begin_forward();
    cg().set_fused_decode(true);
    // The kernel over its whole range (the fused path's own rule stops at kFusedDecodeMaxTokens).
    cg().set_fp8_linear_path(cuda::CudaBackend::Fp8LinearPath::W8A8Decode);
  }
  void TearDown() override {
    if (!gpu_available()) return;
    cg().set_fused_decode(true);  // the default
    cg().set_fp8_linear_path(cuda::CudaBackend::Fp8LinearPath::None);
    cg().set_pdl(true);
    cg().set_fused_mlp(true);
  }
  void record(const std::string& name, double err, double tol) {
    RecordProperty(name, std::to_string(err));
    EXPECT_LE(err, tol) << name;
  }
  // Both references of one linear: the oracle on the parts, and the exact emulation.
  struct Refs {
    LinearWeight oracle, exact, gpu;
  };
  Refs make(const std::vector<WeightPart>& parts) {
    std::vector<WeightPart> exact;
    for (const auto& p : parts) exact.push_back(p.weight.dtype() == DType::F8_E4M3 ? exact_part(p) : p);
    return {cpu().make_linear(parts, LinearUse::Projection), cpu().make_linear(exact, LinearUse::Projection),
            gpu().make_linear(parts, LinearUse::Projection)};
  }
  // x (host, BF16 values) through the GPU linear, checked against both references.
  void check(const std::string& name, const Refs& w, const Tensor& x, const Tensor& g_out, bool all_fp8 = true) {
    Tensor g = gpu().to_host_f32(g_out);
    Tensor oracle = cpu().to_host_f32(cpu().linear(cpu().to_device(x), w.oracle));
    record(name + "_vs_oracle", rel_err(g, oracle), kOracleTol);
    if (all_fp8) {
      Tensor emul = cpu().to_host_f32(cpu().linear(cpu().to_device(quantize_rows(x)), w.exact));
      record(name + "_vs_w8a8", max_piece_err(g, emul), kPieceTol);
    }
  }
  Rng rng{std::random_device{}()};
};

TEST_F(W8A8Decode, V3ShapesMatchW8A8Emulation) {
  struct Case {
    const char* name;
    int64_t in;
    std::vector<int64_t> outs;
  };
  const Case cases[] = {
      {"q_a+kv_a", 7168, {1536, 576}},    // real: one fp8 [2112] segment, a partial last scale block
      {"q_b", 1536, {24576}},             // real
      {"o_proj", 16384, {7168}},          // real
      {"gate_up/8", 7168, {2304, 2304}},  // N / 8 (the real one is 18432 + 18432)
      {"down", 18432, {7168}},            // real
      {"shared_down", 2048, {7168}},      // the shared expert's down projection
  };
  using Path = cuda::CudaBackend::Fp8LinearPath;
  for (const Case& cs : cases) {
    std::vector<WeightPart> parts;
    for (int64_t o : cs.outs) parts.push_back(fp8_part(o, cs.in, rng));
    Refs w = make(parts);
    EXPECT_EQ(cuda::CudaBackend::describe(w.gpu).find("bf16"), std::string::npos) << cs.name;
    for (int64_t T : {1, 2, 3, 8, 9, 16, 17, 33, 64}) {
      Tensor x = randn({T, cs.in}, rng);
      Tensor g = gpu().linear(to_backend(gpu(), x), w.gpu);
      EXPECT_EQ(cg().last_fp8_linear(), Path::W8A8Decode) << cs.name << " T=" << T;
      check(std::string(cs.name) + "_T" + std::to_string(T), w, x, g);
    }
  }
}

TEST_F(W8A8Decode, SplitsOddRowsAndSegments) {
  // Few rows over a long K (a split of 8 over 64 chunks), one 128-wide chunk, rows ending inside an
  // m16 tile and inside a scale block, and fused parts: fp8 136 rows, fp8 256 at row 136 (a new
  // segment: 136 is not on a scale block), a BF16 part, fp8 520 rows; inputs as a strided slice.
  struct Case {
    const char* name;
    int64_t in;
    std::vector<int64_t> outs;
    bool bf16_third;
  };
  for (const Case& cs : {Case{"split8", 8192, {256}, false}, Case{"one_chunk", 128, {200}, false},
                         Case{"ragged_rows", 1024, {1000}, false}, Case{"fused", 512, {136, 256, 64, 520}, true}}) {
    std::vector<WeightPart> parts;
    for (size_t i = 0; i < cs.outs.size(); ++i)
      parts.push_back(cs.bf16_third && i == 2 ? random_bf16_part(cs.outs[i], cs.in, rng) : fp8_part(cs.outs[i], cs.in, rng));
    Refs w = make(parts);
    RecordProperty(std::string("layout_") + cs.name, cuda::CudaBackend::describe(w.gpu));
    if (cs.bf16_third) {
      EXPECT_EQ(cuda::CudaBackend::describe(w.gpu), "fp8 [136] + fp8 [256] + bf16 [64] + fp8 [520]");
    }
    for (int64_t T : {1, 5, 40, 64}) {
      Tensor wide = randn({T, cs.in + 32}, rng);
      Tensor g = gpu().linear(to_backend(gpu(), wide).slice(1, 16, 16 + cs.in), w.gpu);
      Tensor x = cpu().to_host_f32(cpu().contiguous(cpu().to_device(wide).slice(1, 16, 16 + cs.in)));
      check(std::string(cs.name) + "_T" + std::to_string(T), w, x, g, !cs.bf16_third);
    }
  }
}

TEST_F(W8A8Decode, ThresholdAndCublasltAgree) {
  std::vector<WeightPart> parts{fp8_part(1536, 7168, rng), fp8_part(576, 7168, rng)};
  Refs w = make(parts);
  using Path = cuda::CudaBackend::Fp8LinearPath;
  // Forced: the kernel up to its limit, cuBLASLt past it.
  for (int64_t T : {cuda::kW8A8DecodeMaxTokens, cuda::kW8A8DecodeMaxTokens + 1}) {
    Tensor x = randn({T, 7168}, rng);
    Tensor g = gpu().linear(to_backend(gpu(), x), w.gpu);
    EXPECT_EQ(cg().last_fp8_linear(), T <= cuda::kW8A8DecodeMaxTokens ? Path::W8A8Decode : Path::Cublaslt);
    check("threshold_T" + std::to_string(T), w, x, g);
  }
  // The fused decode path's rule: the kernel up to kFusedDecodeMaxTokens, cuBLASLt past it.
  cg().set_fp8_linear_path(Path::None);
  for (int64_t T : {int64_t{1}, cuda::CudaBackend::kFusedDecodeMaxTokens, cuda::CudaBackend::kFusedDecodeMaxTokens + 1}) {
    Tensor x = randn({T, 7168}, rng);
    Tensor g = gpu().linear(to_backend(gpu(), x), w.gpu);
    EXPECT_EQ(cg().last_fp8_linear(), T <= cuda::CudaBackend::kFusedDecodeMaxTokens ? Path::W8A8Decode : Path::Cublaslt)
        << "T=" << T;
    check("rule_T" + std::to_string(T), w, x, g);
  }
  cg().set_fp8_linear_path(Path::W8A8Decode);
  // The same W8A8 arithmetic on cuBLASLt (one token padded to 8 rows) and on the forced W8A16 kernel.
  for (int64_t T : {1, 7}) {
    Tensor x = to_backend(gpu(), randn({T, 7168}, rng));
    Tensor ours = gpu().linear(x, w.gpu);
    cg().set_fp8_linear_path(Path::Cublaslt);
    Tensor lt = gpu().linear(x, w.gpu);
    EXPECT_EQ(cg().last_fp8_linear(), Path::Cublaslt);
    cg().set_fp8_linear_path(Path::W8A16Decode);
    Tensor w8a16 = gpu().linear(x, w.gpu);
    EXPECT_EQ(cg().last_fp8_linear(), Path::W8A16Decode);
    cg().set_fp8_linear_path(Path::W8A8Decode);
    record("cublaslt_vs_ours_T" + std::to_string(T), max_piece_err(gpu().to_host_f32(ours), gpu().to_host_f32(lt)),
           kPieceTol);
    record("w8a16_vs_ours_T" + std::to_string(T), rel_err(gpu(), ours, gpu(), w8a16), kOracleTol);
  }
}

TEST_F(W8A8Decode, NormsQuantizeTheirOutput) {
  // rms_norm_quant / add_rms_norm_quant: the rows as the plain ops (BF16 bound against the oracle),
  // the residual updated, and the quantized rows exactly what the host quantizer makes of the GPU's
  // own BF16 rows (bytes and scales), padding rows zero with scale 1. Inputs: strided column slices
  // (the model's q_a), F32 rows (MTP's hidden states), widths needing 1 to 3 vectors per thread.
  for (auto [T, H, f32] : {std::tuple{1, 7168, false}, std::tuple{5, 7168, true}, std::tuple{9, 1536, false},
                           std::tuple{64, 512, false}, std::tuple{3, 18432, false}, std::tuple{2, 256, false}}) {
    const std::string tag = "_T" + std::to_string(T) + "_H" + std::to_string(H) + (f32 ? "_f32" : "");
    Tensor wide = randn({T, H + 64}, rng, 3.0f), wv = uniform({H}, rng, 0.5f, 1.5f);
    Tensor wc = cpu().make_vector(wv), wg = gpu().make_vector(wv);
    Tensor xg_wide = f32 ? gpu().to_device(wide) : to_backend(gpu(), wide);
    Tensor xc = cpu().to_device(wide).slice(1, 32, 32 + H), xg = xg_wide.slice(1, 32, 32 + H);
    for (bool residual : {false, true}) {
      Tensor res = randn({T, H}, rng, 2.0f);
      Tensor rc = cpu().to_device(res), rg = to_backend(gpu(), res);
      Activation a = residual ? gpu().add_rms_norm_quant(rg, xg, wg, 1e-6f) : gpu().rms_norm_quant(xg, wg, 1e-6f);
      Tensor c = residual ? cpu().add_rms_norm(rc, xc, wc, 1e-6f) : cpu().rms_norm(xc, wc, 1e-6f);
      const std::string name = (residual ? "add_norm" : "norm") + tag;
      record(name + "_rows", rel_err(gpu(), a.x, cpu(), c), 8e-3);
      if (residual) record(name + "_residual", rel_err(gpu(), rg, cpu(), rc), 8e-3);
      ASSERT_TRUE(a.q.defined() && a.q_scale.defined()) << name;
      const int64_t tq = (T + 7) / 8 * 8;
      ASSERT_EQ(a.q.shape(), Shape({tq, H})) << name;
      ASSERT_EQ(a.q_scale.shape(), Shape({H / 128, tq})) << name;
      Tensor rows = gpu().to_host_f32(a.x), want = quantize_rows(rows);
      std::vector<uint8_t> q(size_t(tq * H));
      std::vector<float> s(size_t(tq * H / 128));
      ASSERT_EQ(cudaMemcpy(q.data(), a.q.data(), q.size(), cudaMemcpyDeviceToHost), cudaSuccess);
      ASSERT_EQ(cudaMemcpy(s.data(), a.q_scale.data(), s.size() * 4, cudaMemcpyDeviceToHost), cudaSuccess);
      int64_t wrong = 0;
      for (int64_t t = 0; t < tq; ++t)
        for (int64_t k = 0; k < H; ++k) {
          const float sc = s[size_t((k / 128) * tq + t)];
          const float got = e4m3_to_f32(q[size_t(t * H + k)]) * sc;
          const float expect = t < T ? want.ptr<float>()[t * H + k] : 0.0f;
          wrong += got != expect || (t >= T && sc != 1.0f);
        }
      EXPECT_EQ(wrong, 0) << name << ": quantized values that differ from the host quantizer";
    }
  }
}

TEST_F(W8A8Decode, FusedMlpMatchesOracle) {
  // The MLP of the shared expert (2048) and a dense MLP scaled down (18432 / 8), fused (T <= 16:
  // gate_up with SiLU-and-mul and quantization in one kernel) and unfused (SiLU-and-mul writing the
  // quantized rows), against the oracle's MLP and against each other.
  for (auto [H, I] : {std::pair<int64_t, int64_t>{7168, 2048}, std::pair<int64_t, int64_t>{7168, 2304}}) {
    std::vector<WeightPart> gu{fp8_part(I, H, rng), fp8_part(I, H, rng)}, dn{fp8_part(H, I, rng)};
    LinearWeight guc = cpu().make_linear(gu, LinearUse::Projection), dnc = cpu().make_linear(dn, LinearUse::Projection);
    LinearWeight gug = gpu().make_linear(gu, LinearUse::Projection), dng = gpu().make_linear(dn, LinearUse::Projection);
    for (int64_t T : {1, 4, 16, 17, 64, 80}) {
      const std::string tag = "_I" + std::to_string(I) + "_T" + std::to_string(T);
      Tensor x = randn({T, H}, rng);
      Tensor oracle = cpu().mlp(cpu().to_device(x), guc, dnc);
      Tensor xg = to_backend(gpu(), x);
      cg().set_fused_mlp(true);
      Tensor fused = gpu().mlp(xg, gug, dng);
      EXPECT_EQ(cg().last_mlp_fused(), T <= 16) << tag;
      cg().set_fused_mlp(false);
      Tensor unfused = gpu().mlp(xg, gug, dng);
      EXPECT_FALSE(cg().last_mlp_fused());
      cg().set_fused_mlp(true);
      record("mlp_fused_vs_oracle" + tag, rel_err(gpu(), fused, cpu(), oracle), kOracleTol);
      record("mlp_unfused_vs_oracle" + tag, rel_err(gpu(), unfused, cpu(), oracle), kOracleTol);
      record("mlp_fused_vs_unfused" + tag, rel_err(gpu(), fused, gpu(), unfused), 4e-2);
    }
  }
}

TEST_F(W8A8Decode, GraphReplayIsBitIdentical) {
  // A norm that quantizes, the linear reading it, and the fused MLP, recorded in a CUDA graph and
  // replayed on new inputs: the same bits as eager calls, with and without programmatic dependent launch.
  const int64_t H = 7168, I = 2048;
  std::vector<WeightPart> qkv{fp8_part(1536, H, rng), fp8_part(576, H, rng)};
  std::vector<WeightPart> gu{fp8_part(I, H, rng), fp8_part(I, H, rng)}, dn{fp8_part(H, I, rng)};
  LinearWeight wq = gpu().make_linear(qkv, LinearUse::Projection);
  LinearWeight wgu = gpu().make_linear(gu, LinearUse::Projection), wdn = gpu().make_linear(dn, LinearUse::Projection);
  Tensor nw = gpu().make_vector(uniform({H}, rng, 0.5f, 1.5f));
  for (int64_t T : {1, 8, 24}) {
    Tensor x = gpu().alloc(DType::BF16, {T, H});
    auto run = [&](Tensor& out_a, Tensor& out_b) {
      out_a = Tensor(), out_b = Tensor();
      Activation a = gpu().rms_norm_quant(x, nw, 1e-6f);
      out_a = gpu().linear(a, wq);
      out_b = gpu().mlp(a, wgu, wdn);
    };
    for (bool pdl : {true, false}) {
      cg().set_pdl(pdl);
      Tensor graph_a, graph_b;
      auto graph = gpu().capture([&] { run(graph_a, graph_b); });
      ASSERT_NE(graph, nullptr);
      for (int round = 0; round < 2; ++round) {
        gpu().copy_into(x, to_backend(gpu(), randn({T, H}, rng)));
        graph->replay();
        gpu().synchronize();
        Tensor ga = gpu().to_host_f32(graph_a), gb = gpu().to_host_f32(graph_b);
        Tensor eager_a, eager_b;
        gpu().begin_forward();
        run(eager_a, eager_b);
        const std::string tag = "_T" + std::to_string(T) + (pdl ? "_pdl" : "") + "_round" + std::to_string(round);
        EXPECT_EQ(rel_err(ga, gpu().to_host_f32(eager_a)), 0.0) << "linear" << tag;
        EXPECT_EQ(rel_err(gb, gpu().to_host_f32(eager_b)), 0.0) << "mlp" << tag;
        EXPECT_GT(rel_err(ga, Tensor::zeros_host(DType::F32, ga.shape())), 0.5) << "output not written" << tag;
      }
    }
  }
}

// The planner is host code: checked without a GPU. A split only where every block is resident
// (no second wave), the smallest that fills the GPU.
TEST(W8A8DecodePlan, SplitsOnlyToFillTheGpuInOneWave) {
  for (int64_t resident : {132, 264})
    for (int64_t tiles = 1; tiles < 400; tiles += 7)
      for (int64_t chunks : {1, 2, 5, 12, 16, 56, 128, 144}) {
        const cuda::W8A8DecodePlan pl = cuda::plan_w8a8_decode(tiles, chunks, 132, resident);
        ASSERT_TRUE(pl.split == 1 || pl.split == 2 || pl.split == 4 || pl.split == 8);
        EXPECT_LE(pl.split, chunks);
        EXPECT_EQ(pl.blocks, tiles * pl.split);
        if (pl.split > 1) {
          EXPECT_LE(pl.blocks, resident) << "a split that runs in two waves";
          EXPECT_LT(tiles * pl.split / 2, 132) << "a smaller split already fills the GPU";
        }
      }
  // DeepSeek-V3 at 132 SMs, 2 blocks per SM (up to 16 tokens): q_a + kv_a 17 tiles x 8, q_b 192 x 1,
  // o_proj and down 56 x 4, gate_up 288 x 1; 1 block per SM (17 to 64 tokens): q_a + kv_a x 4, o_proj x 2.
  EXPECT_EQ(cuda::plan_w8a8_decode(17, 56, 132, 264).split, 8);
  EXPECT_EQ(cuda::plan_w8a8_decode(192, 12, 132, 264).split, 1);
  EXPECT_EQ(cuda::plan_w8a8_decode(56, 128, 132, 264).split, 4);
  EXPECT_EQ(cuda::plan_w8a8_decode(288, 56, 132, 264).split, 1);
  EXPECT_EQ(cuda::plan_w8a8_decode(17, 56, 132, 132).split, 4);
  EXPECT_EQ(cuda::plan_w8a8_decode(56, 128, 132, 132).split, 2);
}

}  // namespace
}  // namespace dsserve::test
