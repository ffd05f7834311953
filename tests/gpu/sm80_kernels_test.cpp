// The Ampere (sm80) kernel set, forced on the Hopper GPU the tests run on (what an A100 runs), on a
// backend of its own whatever --sm80-kernels says: the set is chosen and reported, Hopper-only
// switches stay off, FP8 linears run W8A16 at every size (the decode kernel up to 64 tokens without
// clusters, then weights widened chunk by chunk into BF16 products) against the CPU oracle, the
// widening is bit-exact with the oracle's dequantization, routed experts beyond the grouped path's
// range run on widened weights, and a widened product replays from a CUDA graph. `test_gpu
// --sm80-kernels` runs the whole suite on this set.
// Bounds: W8A16 multiplies the oracle's own BF16 weights by the same BF16 inputs with float32
// accumulation; the output's BF16 rounding (2^-9 relative) and summation order remain: 1e-2.
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <numeric>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/gemm/fp8_widen.h"
#include "backend/weight_dequant.h"
#include "gpu/gpu_test_util.h"

namespace dsserve::test {
namespace {

constexpr double kW8A16 = 1e-2;
using Path = cuda::CudaBackend::Fp8LinearPath;

cuda::CudaBackend& sm80() {
  static std::unique_ptr<Backend> b = [] {
    std::unique_ptr<Backend> be = create_backend(DeviceKind::Cuda);
    be->force_sm80_kernels();
    return be;
  }();
  return static_cast<cuda::CudaBackend&>(*b);
}

class Sm80Kernels : public ::testing::Test {
 protected:
  void SetUp() override {
    DS_REQUIRE_GPU();
    sm80().begin_forward();
    cpu().begin_forward();
  }
  void TearDown() override {
    if (gpu_available()) sm80().set_w8a16_decode_max_tokens(cuda::kFp8DecodeMaxTokens);
  }
  void expect_close(const std::string& what, double err, double tol) {
    RecordProperty(what, std::to_string(err));
    EXPECT_LE(err, tol) << what;
  }
  Tensor on_sm80(const Tensor& host_f32) { return to_backend(sm80(), host_f32); }
  Rng rng{std::random_device{}()};
};

TEST_F(Sm80Kernels, ChosenAndHopperSwitchesStayOff) {
  EXPECT_EQ(sm80().kernel_set(), KernelSet::Sm80);
  EXPECT_FALSE(sm80().hopper_kernels());
  sm80().set_sm90_fp8_gemm(true);
  EXPECT_FALSE(sm80().sm90_fp8_gemm()) << "the sm90 GEMM is not part of the sm80 set";
  EXPECT_EQ(static_cast<cuda::CudaBackend&>(gpu()).kernel_set(), sm80_forced() ? KernelSet::Sm80 : KernelSet::Sm90)
      << "an H100 / H200 chooses the Hopper set unless forced";
}

// V3's FP8 linears (fused q_a + kv_a, q_b, o_proj, the dense MLP's gate_up, wide enough to be
// widened in several chunks) at decode and prefill sizes, on both W8A16 paths.
TEST_F(Sm80Kernels, Fp8LinearsMatchOracleAtEverySize) {
  struct Case {
    const char* name;
    int64_t in;
    std::vector<int64_t> outs;
  };
  for (const Case& cs : {Case{"q_a+kv_a", 7168, {1536, 576}}, Case{"q_b", 1536, {24576}}, Case{"o_proj", 16384, {7168}},
                         Case{"gate_up", 7168, {18432, 18432}}, Case{"tiny_q_a+kv_a", 256, {192, 160}}}) {
    std::vector<WeightPart> parts;
    for (int64_t o : cs.outs) parts.push_back(random_fp8_part(o, cs.in, rng));
    LinearWeight wc = cpu().make_linear(parts, LinearUse::Projection);
    LinearWeight wg = sm80().make_linear(parts, LinearUse::Projection);
    const std::string layout = cuda::CudaBackend::describe(wg);
    RecordProperty(std::string("layout_") + cs.name, layout);
    EXPECT_EQ(layout.find("bf16"), std::string::npos) << cs.name << ": FP8 weights stay FP8 (" << layout << ")";
    for (int64_t T : {int64_t{1}, int64_t{7}, cuda::kFp8DecodeMaxTokens, cuda::kFp8DecodeMaxTokens + 1, int64_t{300}}) {
      Tensor x = randn({T, cs.in}, rng);
      Tensor c = cpu().linear(cpu().to_device(x), wc);
      Tensor g = sm80().linear(on_sm80(x), wg);
      EXPECT_EQ(sm80().last_fp8_linear(), T <= cuda::kFp8DecodeMaxTokens ? Path::W8A16Decode : Path::Widened)
          << cs.name << " T=" << T;
      const std::string tag = std::string(cs.name) + "_T" + std::to_string(T);
      expect_close("err_" + tag, rel_err(cpu(), c, sm80(), g), kW8A16);
      if (T <= cuda::kFp8DecodeMaxTokens) {  // the same call widened: both paths are the oracle's arithmetic
        sm80().set_w8a16_decode_max_tokens(0);
        Tensor w = sm80().linear(on_sm80(x), wg);
        EXPECT_EQ(sm80().last_fp8_linear(), Path::Widened);
        expect_close("widened_err_" + tag, rel_err(cpu(), c, sm80(), w), kW8A16);
        sm80().set_w8a16_decode_max_tokens(cuda::kFp8DecodeMaxTokens);
      }
    }
  }
}

// Widening is the oracle's dequantization bit for bit: rows 100..399 of a 400 x 384 weight (a
// partial last block of scale rows, a first row inside a block).
TEST_F(Sm80Kernels, WideningIsTheOraclesDequantization) {
  WeightPart part = random_fp8_part(400, 384, rng);
  Tensor ref = dequantize_to_f32(part);  // rounded to BF16
  Tensor w = sm80().to_device(part.weight), s = sm80().to_device(part.scale);
  Tensor out = sm80().alloc(DType::BF16, {300, 384});
  cuda::Fp8WidenParams p;
  p.w = static_cast<const uint8_t*>(w.data()), p.w_scale = s.ptr<float>(), p.scale_ld = s.size(1);
  p.row0 = 100, p.rows = 300, p.K = 384, p.out = out.data();
  ASSERT_EQ(cuda::launch_fp8_widen(p, sm80().stream()), cudaSuccess);
  Tensor got = sm80().to_host_f32(out);
  int64_t mismatches = 0;
  for (int64_t r = 0; r < 300; ++r)
    for (int64_t k = 0; k < 384; ++k)
      mismatches += got.ptr<float>()[r * 384 + k] != ref.ptr<float>()[(r + 100) * 384 + k];
  EXPECT_EQ(mismatches, 0);
  p.K = 200;  // not a multiple of 128
  EXPECT_EQ(cuda::launch_fp8_widen(p, sm80().stream()), cudaErrorInvalidValue);
}

// Routed experts beyond the grouped path's 2,048 pairs: per-expert BF16 products on widened weights.
TEST_F(Sm80Kernels, RoutedExpertsAtPrefillSizesOnWidenedWeights) {
  const int64_t H = 512, I = 256, T = 1024;
  const int E = 16, K = 4;
  std::vector<ExpertParts> parts;
  for (int e = 0; e < E; ++e)
    parts.push_back({random_fp8_part(I, H, rng), random_fp8_part(I, H, rng), random_fp8_part(H, I, rng)});
  ExpertWeights wc = cpu().make_experts(parts), wg = sm80().make_experts(parts);
  EXPECT_EQ(cuda::CudaBackend::describe(wg).rfind("fp8", 0), 0u) << cuda::CudaBackend::describe(wg);
  Tensor ids = Tensor::zeros_host(DType::I32, {T, K});
  for (int64_t t = 0; t < T; ++t) {
    std::vector<int32_t> e(E);
    std::iota(e.begin(), e.end(), 0);
    std::shuffle(e.begin(), e.end(), rng);
    for (int k = 0; k < K; ++k) ids.ptr<int32_t>()[t * K + k] = e[size_t(k)];
  }
  Tensor weights = uniform({T, K}, rng, 0.1f, 0.7f), x = randn({T, H}, rng);
  Tensor c = cpu().moe_experts(cpu().to_device(x), wc, {cpu().to_device(ids), cpu().to_device(weights)});
  Tensor g = sm80().moe_experts(on_sm80(x), wg, {sm80().to_device(ids), sm80().to_device(weights)});
  EXPECT_EQ(sm80().last_moe_path(), cuda::CudaBackend::MoePath::Cublaslt);
  expect_close("err_experts_T1024", rel_err(cpu(), c, sm80(), g), kW8A16);
}

// A widened product and a decode-kernel product recorded in one CUDA graph replay the eager bits.
TEST_F(Sm80Kernels, W8A16LinearsReplayFromACudaGraph) {
  std::vector<WeightPart> parts{random_fp8_part(2048, 1024, rng)};
  LinearWeight wg = sm80().make_linear(parts, LinearUse::Projection);
  Tensor small = on_sm80(randn({4, 1024}, rng)), large = on_sm80(randn({200, 1024}, rng));
  Tensor eager_small = sm80().linear(small, wg), eager_large = sm80().linear(large, wg);
  Tensor rs, rl;
  auto graph = sm80().capture([&] {
    rs = Tensor(), rl = Tensor();
    rs = sm80().linear(small, wg);
    rl = sm80().linear(large, wg);
  });
  ASSERT_NE(graph, nullptr);
  graph->replay();
  sm80().synchronize();
  EXPECT_EQ(rel_err(sm80(), rs, sm80(), eager_small), 0.0);
  EXPECT_EQ(rel_err(sm80(), rl, sm80(), eager_large), 0.0);
}

}  // namespace
}  // namespace dsserve::test
