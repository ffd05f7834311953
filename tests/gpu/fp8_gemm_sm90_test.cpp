// The sm90 block-FP8 GEMM (gemm/sm90) on fresh random inputs, called directly against a float64
// host reference computed from the same e4m3 values and scales: every instantiated tile shape,
// partial tiles in M and N, one K block and an odd number of K blocks (pipeline phases wrap),
// more tiles than SMs (persistent CTAs), weight-scale blocks met inside a tile, a strided batch,
// expert groups (empty experts, one hot expert taking every row, rows stored through a row map),
// float32 output. Outputs are poisoned first: every element must be written, and nothing outside
// the problem (the gap past N in a wider row, padding rows of a group). Errors are measured per
// (row, 64-column piece) so a wrong block cannot hide in a global norm; a failure prints where.
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "backend/cuda/gemm/sm90/fp8_gemm_layout.h"
#include "backend/cuda/gemm/sm90/fp8_gemm_sm90.h"
#include "core/dtype.h"
#include "gpu/gpu_test_util.h"

namespace dsserve::test {
namespace {

using cuda::Fp8GemmSm90Params;

template <typename T>
struct DevBuf {
  T* p = nullptr;
  size_t n = 0;
  explicit DevBuf(size_t count) : n(count) {
    EXPECT_EQ(cudaMalloc(&p, std::max<size_t>(n, 1) * sizeof(T)), cudaSuccess);
  }
  ~DevBuf() { cudaFree(p); }
  void upload(const std::vector<T>& h) { EXPECT_EQ(cudaMemcpy(p, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess); }
  std::vector<T> download() const {
    std::vector<T> h(n);
    EXPECT_EQ(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
    return h;
  }
};

// e4m3 codes of N(0, 1) samples scaled to use the format's range (no NaN codes).
std::vector<uint8_t> random_e4m3(size_t n, Rng& rng) {
  std::normal_distribution<float> nd(0.0f, 64.0f);
  std::vector<uint8_t> v(n);
  for (auto& x : v) x = f32_to_e4m3(nd(rng));
  return v;
}
// Scales that differ by powers of two between neighbours (a mixed-up block shows).
std::vector<float> random_scales(size_t n, Rng& rng) {
  std::uniform_real_distribution<float> ud(0.5f, 1.0f);
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = ud(rng) * float(1 << (i % 5)) / 1024.0f;
  return v;
}

// A host problem: [batch or experts] of B [N, K] with [ceil(N/128), sld] scales; A [rows, K] per batch.
struct Problem {
  int64_t M = 0, N = 0, K = 0, ldd = 0;
  int batch = 1;
  bool f32 = false;
  std::vector<int32_t> group_end, d_row;  // grouped only
  int64_t d_rows = 0;                     // rows of D (grouped with a row map: its own count)
  int bm = 0, bn = 0;                     // forced tile shape (0: the launcher's choice)
  int pairs = -1;                         // CTA pairs sharing an operand: 1 on, 0 off, -1 the launcher's choice
  int staged = 1;                         // 128 x 128: output staged for bulk stores (where D allows)
  int pipelined = -1;                     // consumers: 1 pipelined, 0 classic, -1 the launcher's choice
};

struct Result {
  double worst = 0;
  std::string where;
  int64_t unwritten = 0, overwritten = 0;
  // Elements off by more than 2% of their row's rms, bucketed by row % 64 and column % 128 (a
  // wrong fragment, swizzle or scale map shows as a pattern), and the first few of them.
  int64_t bad = 0;
  std::vector<int64_t> bad_by_row64 = std::vector<int64_t>(64), bad_by_col128 = std::vector<int64_t>(128);
  std::string samples;
  std::string pattern() const {
    if (bad == 0) return "no element off by more than 2% of its row's rms";
    std::string s = std::to_string(bad) + " elements off; rows % 64:";
    for (int i = 0; i < 64; ++i)
      if (bad_by_row64[size_t(i)]) s += " " + std::to_string(i) + ":" + std::to_string(bad_by_row64[size_t(i)]);
    s += "; columns % 128:";
    for (int i = 0; i < 128; ++i)
      if (bad_by_col128[size_t(i)]) s += " " + std::to_string(i) + ":" + std::to_string(bad_by_col128[size_t(i)]);
    return s + "; first: " + samples;
  }
};

Result run_problem(const Problem& pr, Rng& rng) {
  const int64_t kb = pr.K / 128, nb = (pr.N + 127) / 128, sld = (kb + 3) / 4 * 4;
  const bool grouped = !pr.group_end.empty();
  const int a_batch = grouped ? 1 : pr.batch;
  const int64_t a_scale_ld = (pr.M + 3) / 4 * 4;
  std::vector<uint8_t> A = random_e4m3(size_t(a_batch * pr.M * pr.K), rng);
  std::vector<uint8_t> B = random_e4m3(size_t(pr.batch * pr.N * pr.K), rng);
  std::vector<float> SA = random_scales(size_t(a_batch * kb * a_scale_ld), rng);
  std::vector<float> SB = random_scales(size_t(pr.batch * nb * sld), rng);
  const int64_t d_rows = grouped && !pr.d_row.empty() ? pr.d_rows : pr.M;
  const int64_t d_elems = int64_t(a_batch) * d_rows * pr.ldd;
  const size_t esz = pr.f32 ? 4 : 2;

  DevBuf<uint8_t> dA(A.size()), dB(B.size()), dD(size_t(d_elems) * esz);
  DevBuf<float> dSA(SA.size()), dSB(SB.size());
  dA.upload(A), dB.upload(B), dSA.upload(SA), dSB.upload(SB);
  EXPECT_EQ(cudaMemset(dD.p, 0xff, dD.n), cudaSuccess);  // NaN poison (BF16 and float32)
  DevBuf<int32_t> dEnd(pr.group_end.size()), dRow(pr.d_row.size());
  if (grouped) dEnd.upload(pr.group_end);
  if (!pr.d_row.empty()) dRow.upload(pr.d_row);

  Fp8GemmSm90Params p;
  p.a = dA.p, p.lda = pr.K, p.a_batch_stride = pr.M * pr.K;
  p.a_scale = dSA.p, p.a_scale_ld = a_scale_ld;
  p.b = dB.p, p.ldb = pr.K, p.b_batch_stride = pr.N * pr.K;
  p.b_scale = dSB.p, p.b_scale_ld = sld, p.b_scale_batch_stride = nb * sld;
  p.d = dD.p, p.d_f32 = pr.f32, p.ldd = pr.ldd, p.d_batch_stride = d_rows * pr.ldd;
  p.M = pr.M, p.N = pr.N, p.K = pr.K, p.batch = pr.batch;
  if (grouped) p.group_end = dEnd.p;
  if (!pr.d_row.empty()) p.d_row = dRow.p;
  p.force_bm = pr.bm, p.force_bn = pr.bn, p.pairs = pr.pairs, p.staged_store = pr.staged, p.pipelined = pr.pipelined;
  std::string why;
  EXPECT_TRUE(cuda::fp8_gemm_sm90_supported(p, &why)) << why;
  EXPECT_EQ(cuda::launch_fp8_gemm_sm90(p, nullptr), cudaSuccess);
  const cudaError_t sync = cudaDeviceSynchronize();
  EXPECT_EQ(sync, cudaSuccess) << cudaGetErrorString(sync);
  Result res;
  if (sync != cudaSuccess) {
    res.worst = INFINITY;
    res.where = "the kernel failed";
    return res;
  }
  std::vector<uint8_t> D = dD.download();
  auto got = [&](int64_t idx) -> double {
    if (pr.f32) {
      float f;
      std::memcpy(&f, D.data() + idx * 4, 4);
      return f;
    }
    uint16_t h;
    std::memcpy(&h, D.data() + idx * 2, 2);
    return bf16_to_f32(h);
  };
  std::vector<float> Af(A.size()), Bf(B.size());
  for (size_t i = 0; i < A.size(); ++i) Af[i] = e4m3_to_f32(A[i]);
  for (size_t i = 0; i < B.size(); ++i) Bf[i] = e4m3_to_f32(B[i]);
  std::vector<char> written(size_t(d_elems), 0);
  // Reference rows: (a batch, A row, B batch, D row).
  struct RowJob {
    int ab;
    int64_t m;
    int bb;
    int64_t drow;
  };
  std::vector<RowJob> jobs;
  if (grouped) {
    for (int e = 0; e < pr.batch; ++e) {
      const int64_t start = cuda::sm90::group_start(pr.group_end.data(), e);
      for (int64_t m = start; m < pr.group_end[size_t(e)]; ++m) {
        const int64_t dr = pr.d_row.empty() ? m : pr.d_row[size_t(m)];
        if (dr >= 0) jobs.push_back({0, m, e, dr});
      }
    }
  } else {
    for (int b = 0; b < pr.batch; ++b)
      for (int64_t m = 0; m < pr.M; ++m) jobs.push_back({b, m, b, m});
  }
  std::vector<double> ref(size_t(pr.N));
  for (const RowJob& j : jobs) {
    const float* a = Af.data() + (int64_t(j.ab) * pr.M + j.m) * pr.K;
    for (int64_t n = 0; n < pr.N; ++n) {
      const float* b = Bf.data() + (int64_t(j.bb) * pr.N + n) * pr.K;
      double s = 0;
      for (int64_t k0 = 0; k0 < pr.K; k0 += 128) {
        double blk = 0;
        for (int64_t k = k0; k < k0 + 128; ++k) blk += double(a[k]) * double(b[k]);
        const double sa = SA[size_t((int64_t(j.ab) * kb + k0 / 128) * a_scale_ld + j.m)];
        const double sb = SB[size_t((int64_t(j.bb) * nb + n / 128) * sld + k0 / 128)];
        s += blk * sa * sb;
      }
      ref[size_t(n)] = s;
    }
    const int64_t base = int64_t(j.ab) * d_rows * pr.ldd + j.drow * pr.ldd;
    double row_rms = 0;
    for (int64_t c = 0; c < pr.N; ++c) row_rms += ref[size_t(c)] * ref[size_t(c)];
    row_rms = std::sqrt(row_rms / double(pr.N));
    for (int64_t c = 0; c < pr.N; ++c) {
      const double g = got(base + c);
      if (std::isfinite(g) && std::fabs(g - ref[size_t(c)]) <= 0.02 * row_rms + 1e-30) continue;
      ++res.bad;
      ++res.bad_by_row64[size_t(j.m % 64)];
      ++res.bad_by_col128[size_t(c % 128)];
      if (res.bad <= 6)
        res.samples += "(row " + std::to_string(j.m) + ", col " + std::to_string(c) + ": got " + std::to_string(g) +
                       " want " + std::to_string(ref[size_t(c)]) + ") ";
    }
    for (int64_t c0 = 0; c0 < pr.N; c0 += 64) {
      double dd = 0, rr = 0;
      for (int64_t c = c0; c < std::min(pr.N, c0 + 64); ++c) {
        written[size_t(base + c)] = 1;
        const double g = got(base + c);
        if (!std::isfinite(g)) {
          ++res.unwritten;
          dd = INFINITY;
          continue;
        }
        dd += (g - ref[size_t(c)]) * (g - ref[size_t(c)]);
        rr += ref[size_t(c)] * ref[size_t(c)];
      }
      const double err = std::sqrt(dd / std::max(rr, 1e-30));
      if (!(err <= res.worst)) {
        res.worst = err;
        res.where = "batch/expert " + std::to_string(j.bb) + " A row " + std::to_string(j.m) + " D row " +
                    std::to_string(j.drow) + " columns " + std::to_string(c0) + "+64";
      }
    }
  }
  for (int64_t i = 0; i < d_elems; ++i)
    if (!written[size_t(i)] && std::isfinite(got(i))) ++res.overwritten;
  return res;
}

constexpr double kTol = 6e-3;  // BF16 output rounding (2^-9) and float32 sums, per 64-column piece

class Fp8GemmSm90 : public ::testing::Test {
 protected:
  void SetUp() override {
    DS_REQUIRE_GPU();
    if (!cuda::fp8_gemm_sm90_device_ok()) GTEST_SKIP() << "not an sm_90 device";
    if (sm80_forced()) GTEST_SKIP() << "a Hopper-set kernel (--sm80-kernels)";
  }
  void expect_ok(const Problem& pr, const std::string& name) {
    const Result r = run_problem(pr, rng);
    RecordProperty(name, std::to_string(r.worst));
    EXPECT_LE(r.worst, kTol) << name << ": worst piece at " << r.where << "; " << r.pattern();
    EXPECT_EQ(r.unwritten, 0) << name << ": outputs left unwritten";
    EXPECT_EQ(r.overwritten, 0) << name << ": outputs written outside the problem";
  }
  Rng rng{std::random_device{}()};
};

TEST_F(Fp8GemmSm90, EveryTileShapePartialTiles) {
  for (const auto& s : cuda::sm90::kDenseShapes) {
    Problem pr;
    pr.M = s.bm == 64 ? 50 : 300, pr.N = 520, pr.K = 1024, pr.ldd = 536;  // partial M and N tiles, a gap past N
    pr.bm = s.bm, pr.bn = s.bn;
    expect_ok(pr, "tile_" + std::to_string(s.bm) + "x" + std::to_string(s.bn));
  }
  // 128 x 128 with the output stored from registers instead of staged, and staged with rows that
  // are not 16-byte aligned (falls back to registers).
  Problem pr;
  pr.M = 300, pr.N = 520, pr.K = 512, pr.ldd = 536, pr.bm = 128, pr.bn = 128, pr.staged = 0;
  expect_ok(pr, "tile_128x128_register_stores");
  pr.ldd = 522, pr.staged = 1;
  expect_ok(pr, "tile_128x128_unaligned_rows");
}

TEST_F(Fp8GemmSm90, CtaPairsShareOperands) {
  // Pairs sharing B (even m-blocks), sharing A (odd m-blocks, even n-blocks), and a pair whose
  // second member idles on the last block (odd both ways); more pairs than resident at once.
  struct Case {
    int64_t M, N, K;
    int bm, bn;
  };
  for (const Case& c : {Case{512, 520, 512, 128, 128}, Case{300, 1024, 256, 128, 128}, Case{300, 648, 384, 128, 136},
                        Case{700, 520, 256, 128, 136}, Case{3000, 2304, 256, 128, 128}}) {
    Problem pr;
    pr.M = c.M, pr.N = c.N, pr.K = c.K, pr.ldd = c.N + 8, pr.bm = c.bm, pr.bn = c.bn, pr.pairs = 1;
    expect_ok(pr, "pairs_" + std::to_string(c.M) + "x" + std::to_string(c.N) + "_" + std::to_string(c.bm) + "x" +
                      std::to_string(c.bn));
  }
}

TEST_F(Fp8GemmSm90, OneKBlockAndOddKBlocks) {
  for (int64_t K : {128, 128 * 17}) {
    Problem pr;
    pr.M = 130, pr.N = 264, pr.K = K, pr.ldd = 264;
    expect_ok(pr, "K" + std::to_string(K));
  }
}

TEST_F(Fp8GemmSm90, TinyProblems) {
  Problem pr;
  pr.M = 1, pr.N = 2, pr.K = 128, pr.ldd = 2;
  expect_ok(pr, "1x2x128");
  pr.M = 7, pr.N = 30, pr.K = 256, pr.ldd = 30;
  expect_ok(pr, "7x30x256");
}

TEST_F(Fp8GemmSm90, PersistentManyTilesPerCta) {
  // 24 x 18 = 432 tiles of 128 x 128 on ~132 SMs; scale blocks met inside 136-wide tiles.
  Problem pr;
  pr.M = 3000, pr.N = 2304, pr.K = 256, pr.ldd = 2304;
  pr.bm = 128, pr.bn = 128;
  expect_ok(pr, "many_tiles_128x128");
  pr.bm = 128, pr.bn = 136;
  expect_ok(pr, "many_tiles_128x136");
  pr.bm = 256, pr.bn = 128;
  expect_ok(pr, "many_tiles_256x128");
}

TEST_F(Fp8GemmSm90, Float32Output) {
  Problem pr;
  pr.M = 200, pr.N = 384, pr.K = 512, pr.ldd = 392, pr.f32 = true;
  expect_ok(pr, "f32");
}

TEST_F(Fp8GemmSm90, StridedBatch) {
  Problem pr;
  pr.M = 70, pr.N = 512, pr.K = 128, pr.ldd = 512, pr.batch = 5;  // W_UK-like: one K block per head
  expect_ok(pr, "batch_k128");
  pr.M = 200, pr.N = 128, pr.K = 512, pr.batch = 3, pr.ldd = 128;  // W_UV-like
  expect_ok(pr, "batch_k512");
}

// Expert groups laid out as the MoE prefill path does: expert e's rows start at the previous
// end rounded up to 128.
Problem grouped(const std::vector<int>& counts, int64_t N, int64_t K, bool row_map, Rng& rng) {
  Problem pr;
  pr.N = N, pr.K = K, pr.ldd = N, pr.batch = int(counts.size());
  int64_t row = 0;
  for (int c : counts) {
    row = (row + 127) / 128 * 128;
    row += c;
    pr.group_end.push_back(int32_t(row));
  }
  pr.M = (row + 127) / 128 * 128 + 128;  // room past the last segment, as the MoE path allocates
  if (row_map) {
    // D rows: a random permutation of the real rows; padding rows map to -1.
    std::vector<int32_t> real;
    for (int e = 0; e < pr.batch; ++e)
      for (int64_t m = cuda::sm90::group_start(pr.group_end.data(), e); m < pr.group_end[size_t(e)]; ++m)
        real.push_back(int32_t(m));
    std::vector<int32_t> perm(real.size());
    for (size_t i = 0; i < perm.size(); ++i) perm[i] = int32_t(i);
    std::shuffle(perm.begin(), perm.end(), rng);
    pr.d_row.assign(size_t(pr.M), -1);
    for (size_t i = 0; i < real.size(); ++i) pr.d_row[size_t(real[i])] = perm[i];
    pr.d_rows = int64_t(real.size());
  }
  return pr;
}

TEST_F(Fp8GemmSm90, ExpertGroups) {
  for (int pairs : {0, 1}) {  // alone, and CTA pairs sharing the expert's A tile
    Problem pr = grouped({0, 1, 130, 0, 300, 128, 0, 257}, 640, 256, true, rng);
    pr.pairs = pairs;
    expect_ok(pr, "groups_pairs" + std::to_string(pairs));
    pr = grouped({0, 1, 130, 0, 300, 128, 0, 257}, 640, 256, false, rng);  // staged stores (no row map)
    pr.pairs = pairs;
    expect_ok(pr, "groups_staged_pairs" + std::to_string(pairs));
    pr = grouped({0, 1, 130, 0, 300, 128, 0, 257}, 384, 256, true, rng);  // 3 n-blocks: an idle member
    pr.pairs = pairs;
    expect_ok(pr, "groups_odd_n_pairs" + std::to_string(pairs));
  }
  expect_ok(grouped({0, 1, 130, 0, 300, 128, 0}, 512, 256, false, rng), "groups_with_empty");
  expect_ok(grouped({0, 1, 130, 0, 300, 128, 0}, 384, 512, true, rng), "groups_row_map");
  expect_ok(grouped({0, 0, 1000, 0}, 256, 384, true, rng), "one_hot_expert");
  expect_ok(grouped({0, 0, 0}, 256, 128, false, rng), "all_empty");
  std::vector<int> many(64);
  std::uniform_int_distribution<int> u(0, 40);
  for (int& c : many) c = u(rng);
  expect_ok(grouped(many, 256, 256, true, rng), "64_experts");
}

// The pipelined consumers (two accumulator sets per warpgroup, the next K block's wgmma in flight
// while one is promoted and a finished tile stored): every variant built (128 x 128 with staged and
// register stores, alone and in pairs; 128 x 112), partial tiles, one K block (every step ends a
// tile: the epilogue runs beside the next tile's first wgmma), odd K blocks, many tiles per CTA,
// float32 output, strided batches, tiny problems; and the expert-grouped products (pipelined, and
// classic 256-row tiles that hold a whole expert).
TEST_F(Fp8GemmSm90, PipelinedConsumers) {
  struct Case {
    int64_t M, N, K, ldd;
    int bn, pairs, staged, batch;
    bool f32;
  };
  for (const Case& c : {Case{300, 520, 1024, 536, 128, 0, 1, 1, false}, Case{300, 520, 1024, 536, 128, 0, 0, 1, false},
                        Case{300, 520, 1024, 536, 112, 0, 1, 1, false}, Case{300, 520, 128, 536, 128, 0, 1, 1, false},
                        Case{130, 264, 128 * 17, 264, 128, 0, 1, 1, false},
                        Case{3000, 2304, 256, 2304, 128, 0, 1, 1, false},
                        Case{3000, 2304, 384, 2304, 112, 0, 1, 1, false},
                        Case{3000, 2304, 256, 2312, 128, 1, 1, 1, false}, Case{300, 1024, 256, 1032, 128, 1, 1, 1, false},
                        Case{700, 520, 128, 528, 128, 1, 0, 1, false}, Case{200, 384, 512, 392, 128, 0, 1, 1, true},
                        Case{70, 512, 128, 512, 128, 0, 1, 5, false}, Case{200, 128, 512, 128, 112, 0, 1, 3, false},
                        Case{1, 2, 128, 2, 128, 0, 1, 1, false}, Case{7, 30, 256, 30, 112, 0, 1, 1, false}}) {
    Problem pr;
    pr.M = c.M, pr.N = c.N, pr.K = c.K, pr.ldd = c.ldd, pr.bm = 128, pr.bn = c.bn, pr.pairs = c.pairs;
    pr.staged = c.staged, pr.batch = c.batch, pr.f32 = c.f32, pr.pipelined = 1;
    expect_ok(pr, "pipelined_" + std::to_string(c.M) + "x" + std::to_string(c.N) + "x" + std::to_string(c.K) + "_bn" +
                      std::to_string(c.bn) + "_pairs" + std::to_string(c.pairs) + "_staged" + std::to_string(c.staged) +
                      "_batch" + std::to_string(c.batch) + (c.f32 ? "_f32" : ""));
  }
  for (int pairs : {0, 1}) {
    for (bool row_map : {true, false}) {
      Problem pr = grouped({0, 1, 130, 0, 300, 128, 0, 257}, 640, 256, row_map, rng);
      pr.pairs = pairs, pr.pipelined = 1;
      expect_ok(pr, "pipelined_groups_pairs" + std::to_string(pairs) + (row_map ? "_row_map" : "_staged"));
    }
    Problem pr = grouped({0, 0, 1000, 0}, 384, 384, true, rng);
    pr.pairs = pairs, pr.pipelined = 1;
    expect_ok(pr, "pipelined_one_hot_expert_pairs" + std::to_string(pairs));
  }
  std::vector<int> many(64);
  std::uniform_int_distribution<int> u(0, 300);
  for (int& c : many) c = u(rng);
  Problem pr = grouped(many, 256, 256, true, rng);
  pr.pipelined = 1;
  expect_ok(pr, "pipelined_64_experts");
  // Classic consumers on 256-row tiles: an expert of up to 256 rows in one tile.
  for (bool row_map : {true, false}) {
    pr = grouped(many, 384, 256, row_map, rng);
    pr.bm = 256, pr.bn = 128, pr.pipelined = 0;
    expect_ok(pr, std::string("groups_256_rows") + (row_map ? "_row_map" : ""));
  }
  pr = grouped({0, 1, 130, 0, 300, 128, 0, 257, 0}, 256, 384, false, rng);
  pr.bm = 256, pr.bn = 128, pr.pipelined = 0;
  expect_ok(pr, "groups_256_rows_small");
}

}  // namespace
}  // namespace dsserve::test
