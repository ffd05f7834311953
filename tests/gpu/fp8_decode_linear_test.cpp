// The W8A16 decode-size FP8 linear (gemm/fp8_decode_gemm.h, the Ampere design; on Hopper the
// default for q_a + kv_a up to 16 tokens, forced here on every shape) against the CPU oracle on fresh random inputs: every DeepSeek-V3 FP8 linear
// shape (real sizes, or N scaled down where the oracle would be slow), T in {1, 3, 8, 17, 64}, fused
// parts with FP8 segments at row offsets beside a BF16 one, block scales that differ by up to 16x
// between neighbouring blocks; and the dispatch: forced (the kernel up to its token limit, cuBLASLt
// above it), the measured rule, the fused decode path's choice, and a CUDA-graph replay.
// The kernel's arithmetic is the oracle's (e4m3 times the block scale rounded to BF16, BF16 inputs,
// float32 sums), so the bound is one BF16 rounding of the output plus float32 summation order,
// checked per token and per 64-column block so that a wrong block cannot hide in a global norm.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "backend/cuda/cuda_backend.h"
#include "gpu/gpu_test_util.h"

namespace dsserve::test {
namespace {

constexpr double kTol = 1e-2;

cuda::CudaBackend& cg() { return static_cast<cuda::CudaBackend&>(gpu()); }

// A checkpoint-style FP8 part whose scales also step by powers of two from block to block.
WeightPart fp8_part(int64_t out, int64_t in, Rng& rng) {
  WeightPart p = random_fp8_part(out, in, rng);
  float* s = p.scale.ptr<float>();
  for (int64_t i = 0; i < p.scale.numel(); ++i) s[i] *= float(1 << (i % 5)) / 4.0f;
  return p;
}

// The largest ||a - b|| / ||b|| over (token, 64-column block) pieces of two [T, N] results.
double max_piece_err(const Tensor& a_dev, const Tensor& b_dev) {
  Tensor a = gpu().to_host_f32(a_dev), b = cpu().to_host_f32(b_dev);
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

class Fp8DecodeLinear : public ::testing::Test {
 protected:
  void SetUp() override {
    DS_REQUIRE_GPU();
    gpu().begin_forward();
    cpu().begin_forward();
    cg().set_fp8_linear_path(cuda::CudaBackend::Fp8LinearPath::W8A16Decode);  // the kernel on every shape it supports
    cg().set_fused_decode(false);  // the unfused path's rule (the W8A16 kernel on q_a + kv_a up to 16 tokens)
  }
  void TearDown() override {
    if (gpu_available()) cg().set_fp8_linear_path(cuda::CudaBackend::Fp8LinearPath::None), cg().set_fused_decode(!sm80_forced());
  }
  // Runs T tokens (taken from a wider tensor's column slice when `strided`) through both backends.
  void check(const std::string& name, const LinearWeight& wc, const LinearWeight& wg, int64_t T, bool strided) {
    const int64_t in = wg.in_features;
    Tensor wide = randn({T, in + (strided ? 40 : 0)}, rng);
    Tensor xc = cpu().to_device(wide), xg = to_backend(gpu(), wide);
    if (strided) xc = xc.slice(1, 40, 40 + in), xg = xg.slice(1, 40, 40 + in);
    Tensor g = gpu().linear(xg, wg);
    EXPECT_EQ(cg().last_fp8_linear(), cuda::CudaBackend::Fp8LinearPath::W8A16Decode) << name << " T=" << T;
    Tensor c = cpu().linear(xc, wc);
    const double err = max_piece_err(g, c);
    RecordProperty(name + "_T" + std::to_string(T), std::to_string(err));
    EXPECT_LE(err, kTol) << name << " T=" << T;
  }
  Rng rng{std::random_device{}()};
};

TEST_F(Fp8DecodeLinear, V3ShapesMatchOracle) {
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
      {"down/4", 18432, {1792}},          // N / 4, real K
      {"down", 18432, {7168}},            // real
  };
  for (const Case& cs : cases) {
    std::vector<WeightPart> parts;
    for (int64_t o : cs.outs) parts.push_back(fp8_part(o, cs.in, rng));
    LinearWeight wc = cpu().make_linear(parts, LinearUse::Projection);
    LinearWeight wg = gpu().make_linear(parts, LinearUse::Projection);
    const std::string layout = cuda::CudaBackend::describe(wg);
    RecordProperty(std::string("layout_") + cs.name, layout);
    EXPECT_EQ(layout.find("bf16"), std::string::npos) << cs.name << " runs as " << layout;
    for (int64_t T : {1, 3, 8, 17, 64}) check(cs.name, wc, wg, T, false);
  }
}

TEST_F(Fp8DecodeLinear, EveryKSplitAndOneChunk) {
  // Few rows over a long K: the planner splits K 32 ways (1 warp per 32 rows, 4 warp groups per block,
  // clusters of 8); 16 ways with 2 row warps; a single 128-wide chunk (no split possible); rows that
  // end inside an m16 tile and inside a scale block.
  struct Case {
    const char* name;
    int64_t in, out;
  };
  for (const Case& cs : {Case{"split32", 8192, 256}, Case{"split16", 18432, 1792}, Case{"one_chunk", 128, 200},
                         Case{"ragged_rows", 1024, 1000}}) {
    std::vector<WeightPart> parts{fp8_part(cs.out, cs.in, rng)};
    LinearWeight wc = cpu().make_linear(parts, LinearUse::Projection);
    LinearWeight wg = gpu().make_linear(parts, LinearUse::Projection);
    RecordProperty(std::string("layout_") + cs.name, cuda::CudaBackend::describe(wg));
    for (int64_t T : {1, 17, 64}) check(cs.name, wc, wg, T, false);
  }
}

TEST_F(Fp8DecodeLinear, FusedSegmentsAtRowOffsets) {
  // fp8 136 rows, then fp8 256 rows at row 136 (a new segment: 136 is not on a scale block), a BF16
  // part at row 392, fp8 520 rows at row 456; inputs as a strided column slice.
  const int64_t in = 512;
  std::vector<WeightPart> parts{fp8_part(136, in, rng), fp8_part(256, in, rng), random_bf16_part(64, in, rng),
                                fp8_part(520, in, rng)};
  LinearWeight wc = cpu().make_linear(parts, LinearUse::Projection);
  LinearWeight wg = gpu().make_linear(parts, LinearUse::Projection);
  const std::string layout = cuda::CudaBackend::describe(wg);
  RecordProperty("layout", layout);
  EXPECT_EQ(layout, "fp8 [136] + fp8 [256] + bf16 [64] + fp8 [520]");
  for (int64_t T : {1, 3, 8, 17, 64}) check("fused_offsets", wc, wg, T, true);
}

TEST_F(Fp8DecodeLinear, DispatchByTokenCount) {
  if (sm80_forced()) GTEST_SKIP() << "the Hopper set's dispatch (W8A8 on cuBLASLt); the sm80 set's: Sm80Kernels.*";
  std::vector<WeightPart> parts{fp8_part(1536, 7168, rng), fp8_part(576, 7168, rng)};
  LinearWeight wc = cpu().make_linear(parts, LinearUse::Projection);
  LinearWeight wg = gpu().make_linear(parts, LinearUse::Projection);
  using Path = cuda::CudaBackend::Fp8LinearPath;
  for (int64_t T : {int64_t{1}, int64_t{7}, cuda::kFp8DecodeMaxTokens, cuda::kFp8DecodeMaxTokens + 1}) {
    Tensor x = randn({T, 7168}, rng);
    Tensor g = gpu().linear(to_backend(gpu(), x), wg);
    EXPECT_EQ(cg().last_fp8_linear(), T <= cuda::kFp8DecodeMaxTokens ? Path::W8A16Decode : Path::Cublaslt) << "T=" << T;
    Tensor c = cpu().linear(cpu().to_device(x), wc);
    // cuBLASLt runs W8A8 (activations rounded to e4m3): the bound of LinearFp8BlockScaled.
    EXPECT_LE(rel_err(cpu(), c, gpu(), g), T <= cuda::kFp8DecodeMaxTokens ? kTol : 8e-2) << "T=" << T;
  }
  // Forced to cuBLASLt: every call there (one token padded to 8 rows); the two agree to W8A8's bound.
  Tensor x = randn({3, 7168}, rng);
  Tensor xg = to_backend(gpu(), x);
  Tensor decode = gpu().linear(xg, wg);
  cg().set_fp8_linear_path(Path::Cublaslt);
  Tensor lt = gpu().linear(xg, wg);
  EXPECT_EQ(cg().last_fp8_linear(), Path::Cublaslt);
  EXPECT_LE(rel_err(gpu(), lt, gpu(), decode), 8e-2);
  // Unforced: the measured rule (this kernel on linears of at most 2,560 rows up to 16 tokens,
  // cuBLASLt beyond and on wider linears); with the fused decode path, the W8A8 kernel.
  cg().set_fp8_linear_path(Path::None);
  for (int64_t T : {int64_t{1}, int64_t{16}, int64_t{17}}) {
    gpu().linear(to_backend(gpu(), randn({T, 7168}, rng)), wg);
    EXPECT_EQ(cg().last_fp8_linear(), T <= 16 ? Path::W8A16Decode : Path::Cublaslt) << "measured rule, T=" << T;
  }
  {
    std::vector<WeightPart> wide{fp8_part(4096, 1024, rng)};
    LinearWeight ww = gpu().make_linear(wide, LinearUse::Projection);
    gpu().linear(to_backend(gpu(), randn({1, 1024}, rng)), ww);
    EXPECT_EQ(cg().last_fp8_linear(), Path::Cublaslt) << "measured rule, 4096 rows";
  }
  cg().set_fused_decode(true);
  gpu().linear(xg, wg);
  EXPECT_EQ(cg().last_fp8_linear(), Path::W8A8Decode);
  cg().set_fused_decode(false);
  cg().set_fp8_linear_path(Path::W8A16Decode);

  // Captured in a CUDA graph and replayed: the same bits as the eager call (fixed summation order).
  Tensor replayed;
  auto graph = gpu().capture([&] {
    replayed = Tensor();
    replayed = gpu().linear(xg, wg);
  });
  ASSERT_NE(graph, nullptr);
  graph->replay();
  gpu().synchronize();
  EXPECT_EQ(rel_err(gpu(), replayed, gpu(), decode), 0.0);
}

// The planner is host code: checked without a GPU. Every plan covers K, uses clusters of at most 8,
// keeps all blocks resident whenever it splits K, and on an H200 (132 SMs, 2-3 blocks each) keeps
// every SM busy on each V3 shape.
TEST(Fp8DecodePlan, CoversKAndKeepsSplitsResident) {
  Rng rng(11);
  for (int i = 0; i < 2000; ++i) {
    const int64_t rows = 1 + int64_t(rng() % 40000), K = 128 * (1 + int64_t(rng() % 160));
    const int sms = 1 + int(rng() % 160), per_sm = 1 + int(rng() % 4);
    cuda::Fp8DecodeCapacity cap = cuda::Fp8DecodeCapacity::uniform(sms, per_sm);
    for (int c = 1; c < 4; ++c)  // clusters bound by the GPCs: fewer resident blocks
      cap.resident[c] = std::max<int64_t>(0, cap.resident[c] - int64_t(rng() % 3) * (1 << c) * 4);
    const cuda::Fp8DecodePlan pl = cuda::plan_fp8_decode_gemm(rows, K, cap);
    const int64_t resident = cap.resident[pl.cluster == 1 ? 0 : pl.cluster == 2 ? 1 : pl.cluster == 4 ? 2 : 3];
    const int64_t chunks = K / 128;
    const std::string at = std::to_string(rows) + "x" + std::to_string(K) + " on " + std::to_string(sms) + "x" +
                           std::to_string(per_sm);
    ASSERT_TRUE(pl.row_warps == 4 || pl.row_warps == 2 || pl.row_warps == 1) << at;
    ASSERT_TRUE(pl.cluster == 1 || pl.cluster == 2 || pl.cluster == 4 || pl.cluster == 8) << at;
    EXPECT_LE(pl.k_parts(), chunks) << at;  // parts are chunks / k_parts rounded down or up: none empty
    EXPECT_EQ(pl.chunks_per_part, (chunks + pl.k_parts() - 1) / pl.k_parts()) << at;
    EXPECT_EQ(pl.blocks, (rows + 32 * pl.row_warps - 1) / (32 * pl.row_warps) * pl.cluster) << at;
    if (pl.k_parts() > 1) {
      EXPECT_LE(pl.blocks, resident) << at;
    }
  }
  for (auto [rows, K] : {std::pair<int64_t, int64_t>{2112, 7168}, {24576, 1536}, {7168, 16384}, {36864, 7168},
                         {7168, 18432}})
    for (int per_sm : {2, 3}) {
      const cuda::Fp8DecodePlan pl = cuda::plan_fp8_decode_gemm(rows, K, cuda::Fp8DecodeCapacity::uniform(132, per_sm));
      EXPECT_GE(pl.blocks, 132) << rows << "x" << K << " at " << per_sm << " blocks per SM";
    }
}

}  // namespace
}  // namespace dsserve::test
