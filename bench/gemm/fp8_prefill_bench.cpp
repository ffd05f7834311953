// bench_fp8_prefill: the block-FP8 products of DeepSeek-V3 at prefill sizes on the sm90 kernel
// (gemm/sm90) beside cuBLASLt's W8A8 block-scaled product on the same inputs in the same run, and
// the FP8 ceiling measured in the same run (cuBLASLt FP8 8192^3, Backend::measure_ceilings).
// - dense: every V3 FP8 linear shape (N x K) at M tokens (default 4096): the launcher's tile
//   shape, every instantiated tile shape (forced), and cuBLASLt; activations already quantized.
// - grouped: the routed experts' two products (gate_up 7168 -> 2 x 2048, down 2048 -> 7168) as
//   one expert-grouped launch each, for 4096 tokens x top-8 of 256 experts and for 32 experts of
//   about 1024 tokens (expert parallelism's per-GPU shape); then moe_experts end to end
//   (grouping, quantization, both products, SiLU, un-permute) on the sm90 path and on the
//   per-expert cuBLASLt path (host read-back of the counts).
// - head: the absorbed-MLA per-head products (W_UK^T: 128 -> 512, W_UV: 512 -> 128, 128 heads) at
//   batch 64 and 256: FP8 strided batch on the sm90 kernel (with its quantization kernel) against
//   the BF16 strided-batched cuBLASLt product (head_linear with BF16 weights) in the same run, as
//   CUDA-graph replays over 8 weight copies (decode's case: no host cost, weights not in L2) and as
//   eager calls.
// Each point: median of CUDA-event timings after warm-up. Random data everywhere (never zeros).
// - moe: moe_experts end to end on both paths at 264 to 8192 tokens x top-8 of 256 experts.
// Usage: bench_fp8_prefill [dense|grouped|head|moe|all] [M], or one M N K VARIANT (a single dense
// problem on one variant of the sweep, e.g. P128x128, for profilers).
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/gemm/cublaslt_gemm.h"
#include "backend/cuda/gemm/sm90/fp8_gemm_layout.h"
#include "backend/cuda/gemm/sm90/fp8_gemm_sm90.h"
#include "core/error.h"

using namespace dsserve;

namespace {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) fail("bench_fp8_prefill: {}: {}", what, cudaGetErrorString(e));
}

double median_ms(cudaStream_t stream, int warmup, int iters, const std::function<void()>& fn) {
  for (int i = 0; i < warmup; ++i) fn();
  check(cudaStreamSynchronize(stream), "warm-up");
  cudaEvent_t a, b;
  check(cudaEventCreate(&a), "cudaEventCreate");
  check(cudaEventCreate(&b), "cudaEventCreate");
  std::vector<double> t;
  for (int i = 0; i < iters; ++i) {
    check(cudaEventRecord(a, stream), "cudaEventRecord");
    fn();
    check(cudaEventRecord(b, stream), "cudaEventRecord");
    check(cudaEventSynchronize(b), "a timed run failed");
    float ms = 0;
    check(cudaEventElapsedTime(&ms, a, b), "cudaEventElapsedTime");
    t.push_back(ms);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

struct Ctx {
  cuda::CudaBackend* be;
  DeviceCeilings ceil;
  uint64_t seed = 100;
  Tensor e4m3(Shape s) { return be->random_weight(DType::F8_E4M3, s, {seed++, true, 64.0f, 0.0f}); }
  Tensor scales(Shape s) { return be->random_weight(DType::F32, s, {seed++, false, 0.001f, 0.0005f}); }
};

// One kernel variant of the sweep: tile shape, CTA pairs, staged stores, pipelined consumers.
struct Variant {
  int bm, bn, pairs, staged, pipelined;
  std::string name() const {
    return (pipelined ? "P" : "C") + std::to_string(bm) + "x" + std::to_string(bn) + (pairs ? "p" : "") +
           (staged ? "" : "r");
  }
};
// C: classic consumers (issue, wait, promote); P: pipelined (two accumulator sets); p: CTA pairs
// sharing an operand through multicast; r: register stores instead of staged bulk stores (128 x 128).
const Variant kDenseVariants[] = {{128, 128, 0, 1, 0}, {256, 128, 0, 1, 0}, {128, 136, 0, 1, 0}, {128, 160, 0, 1, 0},
                                  {128, 128, 1, 1, 0}, {128, 128, 0, 1, 1}, {128, 128, 0, 0, 1}, {128, 112, 0, 1, 1},
                                  {128, 128, 1, 1, 1}};

void dense(Ctx& c, int64_t M) {
  struct Shape2 {
    const char* name;
    int64_t N, K;
  };
  const Shape2 shapes[] = {{"q_a+kv_a", 2112, 7168}, {"q_b", 24576, 1536},  {"o_proj", 7168, 16384},
                           {"shared gate_up", 4096, 7168}, {"shared down", 7168, 2048},
                           {"dense gate_up", 36864, 7168}, {"dense down", 7168, 18432}};
  std::printf("\n== dense block-FP8 GEMM, M = %ld tokens; FP8 ceiling (cuBLASLt 8192^3) %.0f TFLOP/s\n", long(M),
              c.ceil.fp8_tflops);
  std::printf("%-15s %-12s | %-8s %9s %8s %7s | %9s %6s | %s\n", "shape", "N x K", "tile", "ms", "TFLOP/s", "of ceil",
              "cuBLASLt", "ratio", "every tile shape (TFLOP/s)");
  for (const Shape2& s : shapes) {
    const int64_t Mp = (M + 7) / 8 * 8;
    Tensor a = c.e4m3({Mp, s.K}), sa = c.scales({s.K / 128, Mp});
    Tensor b = c.e4m3({s.N, s.K}), sb = c.scales({(s.N + 127) / 128, cuda::fp8_weight_scale_ld(s.K)});
    Tensor d = c.be->alloc(DType::BF16, {Mp, s.N});
    cuda::Fp8GemmSm90Params p;
    p.a = a.ptr<uint8_t>(), p.lda = s.K, p.a_scale = sa.ptr<float>(), p.a_scale_ld = Mp;
    p.b = b.ptr<uint8_t>(), p.ldb = s.K, p.b_scale = sb.ptr<float>(), p.b_scale_ld = sb.size(1);
    p.d = d.data(), p.ldd = s.N, p.M = M, p.N = s.N, p.K = s.K;
    const double flops = 2.0 * double(M) * double(s.N) * double(s.K);
    auto run = [&](const cuda::Fp8GemmSm90Params& q) { check(cuda::launch_fp8_gemm_sm90(q, c.be->stream()), "sm90"); };
    const double ms = median_ms(c.be->stream(), 3, 20, [&] { run(p); });
    std::string sweep;
    for (const Variant& v : kDenseVariants) {
      cuda::Fp8GemmSm90Params q = p;
      q.force_bm = v.bm, q.force_bn = v.bn, q.pairs = v.pairs, q.staged_store = v.staged, q.pipelined = v.pipelined;
      const double tms = median_ms(c.be->stream(), 2, 10, [&] { run(q); });
      char buf[64];
      std::snprintf(buf, sizeof(buf), " %s %.0f", v.name().c_str(), flops / tms / 1e9);
      sweep += buf;
      if (v.pairs == 1) {
        std::snprintf(buf, sizeof(buf), " (grid %d)", cuda::fp8_gemm_sm90_last_grid());
        sweep += buf;
      }
    }
    cuda::GemmArgs g;
    g.kind = cuda::GemmKind::Fp8BlockScaled;
    g.m = s.N, g.n = Mp, g.k = s.K;
    g.w = b.data(), g.ldw = s.K, g.x = a.data(), g.ldx = s.K, g.d = d.data(), g.ldd = s.N;
    g.d_type = CUDA_R_16BF, g.w_scale = sb.ptr<float>(), g.x_scale = sa.ptr<float>();
    const double lt_ms = median_ms(c.be->stream(), 3, 20, [&] { c.be->gemm().run(g); });
    const double tf = flops / ms / 1e9, lt = 2.0 * double(Mp) * s.N * s.K / lt_ms / 1e9;
    char nk[32];
    std::snprintf(nk, sizeof(nk), "%ldx%ld", long(s.N), long(s.K));
    std::printf("%-15s %-12s | %-8s %9.4f %8.0f %6.0f%% | %9.0f %5.2fx |%s\n", s.name, nk,
                cuda::fp8_gemm_sm90_tile(p).c_str(), ms, tf, 100 * tf / c.ceil.fp8_tflops, lt, tf / lt, sweep.c_str());
  }
}

// One dense problem on one variant (by name, e.g. P128x128), timed and printed: for profilers
// (ncu -k regex:fp8_gemm_sm90 -c 1) and quick checks.
void one(Ctx& c, int64_t M, int64_t N, int64_t K, const std::string& name) {
  const Variant* pick = nullptr;
  for (const Variant& v : kDenseVariants)
    if (v.name() == name) pick = &v;
  if (pick == nullptr) fail("bench_fp8_prefill one: no variant named {}", name);
  Tensor a = c.e4m3({M, K}), sa = c.scales({K / 128, M});
  Tensor b = c.e4m3({N, K}), sb = c.scales({(N + 127) / 128, cuda::fp8_weight_scale_ld(K)});
  Tensor d = c.be->alloc(DType::BF16, {M, N});
  cuda::Fp8GemmSm90Params p;
  p.a = a.ptr<uint8_t>(), p.lda = K, p.a_scale = sa.ptr<float>(), p.a_scale_ld = M;
  p.b = b.ptr<uint8_t>(), p.ldb = K, p.b_scale = sb.ptr<float>(), p.b_scale_ld = sb.size(1);
  p.d = d.data(), p.ldd = N, p.M = M, p.N = N, p.K = K;
  p.force_bm = pick->bm, p.force_bn = pick->bn, p.pairs = pick->pairs, p.staged_store = pick->staged;
  p.pipelined = pick->pipelined;
  const double ms = median_ms(c.be->stream(), 1, 5, [&] { check(cuda::launch_fp8_gemm_sm90(p, c.be->stream()), "sm90"); });
  std::printf("%s M %ld N %ld K %ld: %.4f ms %.0f TFLOP/s\n", name.c_str(), long(M), long(N), long(K), ms,
              2.0 * double(M) * double(N) * double(K) / ms / 1e9);
}

// Expert segments for `tokens` x top-k routed uniformly at random over E experts (distinct per token).
std::vector<int32_t> route_counts(int E, int64_t tokens, int K, std::mt19937_64& rng) {
  std::vector<int32_t> counts(static_cast<size_t>(E), 0), e(static_cast<size_t>(E));
  for (int64_t t = 0; t < tokens; ++t) {
    std::iota(e.begin(), e.end(), 0);
    for (int k = 0; k < K; ++k) {
      std::swap(e[size_t(k)], e[size_t(k) + rng() % size_t(E - k)]);
      ++counts[size_t(e[size_t(k)])];
    }
  }
  return counts;
}

// moe_experts end to end (grouping, quantization, both products, SiLU, un-permute) on the sm90
// grouped path and on the per-expert cuBLASLt path, tokens x top-K of E random experts.
void moe_end_to_end(Ctx& c, const char* name, int E, int64_t tokens, int K, std::mt19937_64& rng) {
  const int64_t H = 7168, I = 2048, pairs = tokens * K;
  std::vector<ExpertParts> parts;
  for (int e = 0; e < E; ++e) {
    auto part = [&](int64_t out, int64_t in) {
      const int64_t br = (out + 127) / 128, bc = (in + 127) / 128;
      Tensor s = Tensor::zeros_host(DType::F32, {br, bc});
      for (int64_t i = 0; i < s.numel(); ++i) s.ptr<float>()[i] = 0.0005f + 0.001f * float(rng() % 1000) / 1000.0f;
      return WeightPart{c.be->random_weight(DType::F8_E4M3, {out, in}, {c.seed++, true, 64.0f, 0.0f}), s};
    };
    parts.push_back({part(I, H), part(I, H), part(H, I)});
  }
  ExpertWeights ew = c.be->make_experts(parts);
  parts.clear();
  Tensor ids = Tensor::zeros_host(DType::I32, {tokens, K});
  std::vector<int32_t> e(static_cast<size_t>(E));
  std::vector<bool> live(static_cast<size_t>(E), false);
  for (int64_t t = 0; t < tokens; ++t) {
    std::iota(e.begin(), e.end(), 0);
    for (int k = 0; k < K; ++k) {
      std::swap(e[size_t(k)], e[size_t(k) + rng() % size_t(E - k)]);
      ids.ptr<int32_t>()[t * K + k] = e[size_t(k)];
      live[size_t(e[size_t(k)])] = true;
    }
  }
  Tensor wts = Tensor::zeros_host(DType::F32, {tokens, K});
  for (int64_t i = 0; i < wts.numel(); ++i) wts.ptr<float>()[i] = 0.1f + 0.01f * float(i % 7);
  RouterOutput r{c.be->to_device(ids), c.be->to_device(wts)};
  Tensor xin = c.be->random_weight(DType::BF16, {tokens, H}, {c.seed++, true, 1.0f, 0.0f});
  double ms[2];
  for (int path = 0; path < 2; ++path) {
    c.be->set_moe_path(path == 0 ? cuda::CudaBackend::MoePath::Sm90 : cuda::CudaBackend::MoePath::Cublaslt);
    ms[path] = median_ms(c.be->stream(), 2, 10, [&] {
      c.be->begin_forward();
      c.be->moe_experts(xin, ew, r);
    });
  }
  c.be->set_moe_path(cuda::CudaBackend::MoePath::Auto);
  const double flops = 2.0 * pairs * 3 * I * H;
  // Floor: the live experts' weights at the copy bandwidth, or the products at the FP8 rate.
  const double wbytes = double(std::count(live.begin(), live.end(), true)) * 3.0 * double(I) * double(H);
  const double floor_ms = std::max(flops / c.ceil.fp8_tflops / 1e9, wbytes / c.ceil.copy_gbs / 1e6);
  std::printf("%-36s moe_experts end to end: sm90 %.3f ms (%.0f TFLOP/s, %.0f%% of floor), cuBLASLt per expert %.3f ms "
              "(%.0f TFLOP/s, %.0f%% of floor), %.2fx; floor %.3f ms\n",
              name, ms[0], flops / ms[0] / 1e9, 100 * floor_ms / ms[0], ms[1], flops / ms[1] / 1e9,
              100 * floor_ms / ms[1], ms[1] / ms[0], floor_ms);
}

void grouped(Ctx& c) {
  const int64_t H = 7168, I = 2048;
  struct Case {
    const char* name;
    int E;
    int64_t tokens;
    int K;
  };
  std::mt19937_64 rng(7);
  std::printf("\n== expert-grouped FP8 GEMM (one launch for every expert); FP8 ceiling %.0f TFLOP/s\n",
              c.ceil.fp8_tflops);
  for (const Case& cs : {Case{"4096 tokens x top-8 of 256 experts", 256, 4096, 8},
                         Case{"32 experts x ~1024 tokens (EP)", 32, 4096, 8}}) {
    const std::vector<int32_t> counts = route_counts(cs.E, cs.tokens, cs.K, rng);
    std::vector<int32_t> ends;
    int64_t row = 0, pairs = 0;
    for (int32_t n : counts) {
      row = (row + 127) / 128 * 128 + n;
      ends.push_back(int32_t(row));
      pairs += n;
    }
    const int64_t R = (row + 127) / 128 * 128;
    Tensor end = c.be->upload_i32(ends, {int64_t(ends.size())});
    Tensor wgu = c.e4m3({cs.E, 2 * I, H}), wdn = c.e4m3({cs.E, H, I});
    Tensor sgu = c.scales({cs.E, 2 * I / 128, cuda::fp8_weight_scale_ld(H)});
    Tensor sdn = c.scales({cs.E, H / 128, cuda::fp8_weight_scale_ld(I)});
    Tensor x = c.e4m3({R, H}), xs = c.scales({H / 128, R}), act = c.e4m3({R, I}), as = c.scales({I / 128, R});
    Tensor gu = c.be->alloc(DType::BF16, {R, 2 * I}), y = c.be->alloc(DType::BF16, {R, H});
    cuda::Fp8GemmSm90Params p;
    p.a = x.ptr<uint8_t>(), p.lda = H, p.a_scale = xs.ptr<float>(), p.a_scale_ld = R;
    p.b = wgu.ptr<uint8_t>(), p.ldb = H, p.b_batch_stride = 2 * I * H;
    p.b_scale = sgu.ptr<float>(), p.b_scale_ld = sgu.size(2), p.b_scale_batch_stride = sgu.size(1) * sgu.size(2);
    p.d = gu.data(), p.ldd = 2 * I, p.M = R, p.N = 2 * I, p.K = H, p.batch = cs.E, p.group_end = end.ptr<int32_t>();
    cuda::Fp8GemmSm90Params q;
    q.a = act.ptr<uint8_t>(), q.lda = I, q.a_scale = as.ptr<float>(), q.a_scale_ld = R;
    q.b = wdn.ptr<uint8_t>(), q.ldb = I, q.b_batch_stride = H * I;
    q.b_scale = sdn.ptr<float>(), q.b_scale_ld = sdn.size(2), q.b_scale_batch_stride = sdn.size(1) * sdn.size(2);
    q.d = y.data(), q.ldd = H, q.M = R, q.N = H, q.K = I, q.batch = cs.E, q.group_end = end.ptr<int32_t>();
    // Expert weight bytes (non-empty experts): at ~128 rows per expert the products read each
    // weight once for ~256 FLOP per byte, so HBM, not the tensor cores, sets the floor.
    int64_t live_experts = 0;
    for (int32_t n : counts) live_experts += n > 0 ? 1 : 0;
    const double wbytes = double(live_experts) * 3.0 * double(I) * double(H);
    const double flops_all = 2.0 * double(pairs) * 3 * I * H;
    const double floor_ms = std::max(flops_all / c.ceil.fp8_tflops / 1e9, wbytes / c.ceil.copy_gbs / 1e6);
    std::printf("%-36s floor %.3f ms (%.0f TFLOP/s): %.2f GB of weights at %.0f GB/s, %.2f TFLOP at %.0f TFLOP/s\n",
                cs.name, floor_ms, flops_all / floor_ms / 1e9, wbytes / 1e9, c.ceil.copy_gbs, flops_all / 1e12,
                c.ceil.fp8_tflops);
    const Variant grouped_variants[] = {{128, 128, 0, 1, 0}, {128, 128, 1, 1, 0}, {256, 128, 0, 1, 0},
                                        {128, 128, 0, 1, 1}, {128, 128, 1, 1, 1}, {128, 128, 0, 0, 1}};
    for (const Variant& v : grouped_variants) {
      for (cuda::Fp8GemmSm90Params* x : {&p, &q})
        x->force_bm = v.bm, x->force_bn = v.bn, x->pairs = v.pairs, x->staged_store = v.staged,
        x->pipelined = v.pipelined;
      const double gu_ms =
          median_ms(c.be->stream(), 3, 20, [&] { check(cuda::launch_fp8_gemm_sm90(p, c.be->stream()), "gate_up"); });
      const double dn_ms =
          median_ms(c.be->stream(), 3, 20, [&] { check(cuda::launch_fp8_gemm_sm90(q, c.be->stream()), "down"); });
      const double gu_tf = 2.0 * pairs * 2 * I * H / gu_ms / 1e9, dn_tf = 2.0 * pairs * H * I / dn_ms / 1e9;
      const double all_tf = flops_all / (gu_ms + dn_ms) / 1e9;
      std::printf("%-36s %-9s pairs %ld rows %ld: gate_up %.3f ms %.0f TFLOP/s, down %.3f ms %.0f TFLOP/s, both %.0f "
                  "TFLOP/s (%.0f%% of FP8 ceiling), weights %.0f GB/s (%.0f%% of copy), %.0f%% of floor\n",
                  cs.name, v.name().c_str(), long(pairs), long(R), gu_ms, gu_tf, dn_ms, dn_tf, all_tf,
                  100 * all_tf / c.ceil.fp8_tflops, wbytes / (gu_ms + dn_ms) / 1e6,
                  100 * wbytes / (gu_ms + dn_ms) / 1e6 / c.ceil.copy_gbs, 100 * floor_ms / (gu_ms + dn_ms));
    }
    for (cuda::Fp8GemmSm90Params* x : {&p, &q})
      x->force_bm = x->force_bn = 0, x->staged_store = 1, x->pipelined = -1;
    p.pairs = q.pairs = -1;

    wgu = Tensor(), wdn = Tensor(), gu = Tensor(), y = Tensor(), x = Tensor(), act = Tensor();
    moe_end_to_end(c, cs.name, cs.E, cs.tokens, cs.K, rng);
  }
}

// The same routed experts at several token counts (top-8 of 256 experts) on both prefill paths:
// where the sm90 grouped path should take over from cuBLASLt per expert, from just past the decode
// kernel's 2048 pairs up.
void moe_sizes(Ctx& c) {
  std::mt19937_64 rng(13);
  std::printf("\n== moe_experts end to end by token count, top-8 of 256 experts (H 7168, I 2048)\n");
  for (int64_t tokens : {264, 512, 1024, 2048, 4096, 8192}) {
    const std::string name = std::to_string(tokens) + " tokens x top-8 of 256 experts";
    moe_end_to_end(c, name.c_str(), 256, tokens, 8, rng);
  }
}

void head(Ctx& c) {
  const int n = 128, dn = 128, kr = 512, copies = 8;
  std::printf("\n== absorbed-MLA per-head products, %d heads: FP8 on sm90 vs BF16 strided-batched cuBLASLt; graph "
              "replays over %d weight copies (as decode runs them; the FP8 path includes its quantization kernel), "
              "and eager calls (host launch cost included)\n",
              n, copies);
  std::mt19937_64 rng(11);
  for (int64_t T : {64, 256}) {
    for (int which = 0; which < 2; ++which) {  // 0: W_UK^T (dn -> kr), 1: W_UV (kr -> dv)
      const int64_t in = which == 0 ? dn : kr, out = which == 0 ? kr : dn;
      std::vector<HeadWeight> ws;
      for (int k = 0; k < copies; ++k) {
        Tensor host = Tensor::zeros_host(DType::F32, {n, out, in});
        std::normal_distribution<float> nd(0.0f, 0.05f);
        for (int64_t i = 0; i < host.numel(); ++i) host.ptr<float>()[i] = nd(rng);
        ws.push_back(c.be->make_head_weight(host, /*from_fp8_blocks=*/true));
      }
      Tensor x = c.be->random_weight(DType::BF16, {T, n, in}, {c.seed++, true, 1.0f, 0.0f});
      double ms[2], eager[2];
      bool ran_fp8[2] = {false, false};
      for (int fp8 = 0; fp8 < 2; ++fp8) {
        c.be->set_head_fp8(fp8 == 1);
        eager[fp8] = median_ms(c.be->stream(), 3, 30, [&] {
          c.be->begin_forward();
          c.be->head_linear(x, ws[0]);
        });
        ran_fp8[fp8] = c.be->last_head_fp8();
        std::vector<std::unique_ptr<CapturedForward>> graphs;
        std::vector<Tensor> outs(static_cast<size_t>(copies));
        for (int k = 0; k < copies; ++k)
          graphs.push_back(c.be->capture([&] {
            outs[size_t(k)] = Tensor();
            outs[size_t(k)] = c.be->head_linear(x, ws[size_t(k)]);
          }));
        const int rounds = 8;
        ms[fp8] = median_ms(c.be->stream(), 2, 15, [&] {
                    for (int r = 0; r < rounds; ++r)
                      for (auto& g : graphs) g->replay();
                  }) /
                  (rounds * copies);
      }
      if (ran_fp8[0] || !ran_fp8[1]) fail("bench_fp8_prefill: the head products did not take the paths asked for");
      c.be->set_head_fp8(true);
      const double flops = 2.0 * T * n * in * out, wbytes = double(n) * in * out;
      std::printf("%-6s T=%-4ld | graph: bf16 cuBLASLt %.4f ms (%.0f TFLOP/s, %.0f GB/s of BF16 weights) | fp8 sm90 "
                  "%.4f ms (%.0f TFLOP/s, %.0f GB/s of FP8 weights) | %.2fx | eager: bf16 %.4f ms, fp8 %.4f ms, %.2fx\n",
                  which == 0 ? "W_UK" : "W_UV", long(T), ms[0], flops / ms[0] / 1e9, 2 * wbytes / ms[0] / 1e6, ms[1],
                  flops / ms[1] / 1e9, wbytes / ms[1] / 1e6, ms[0] / ms[1], eager[0], eager[1], eager[0] / eager[1]);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const std::string what = argc > 1 ? argv[1] : "all";
    const int64_t M = argc > 2 ? std::atoll(argv[2]) : 4096;
    std::unique_ptr<Backend> backend = create_backend(DeviceKind::Cuda);
    Ctx c{static_cast<cuda::CudaBackend*>(backend.get()), {}};
    if (!cuda::fp8_gemm_sm90_device_ok()) fail("bench_fp8_prefill: needs an sm_90 device");
    c.be->set_sm90_fp8_gemm(true);  // opt-in; each section picks its paths explicitly
    c.ceil = c.be->measure_ceilings();
    std::printf("ceilings measured in this run: FP8 %.0f TFLOP/s, BF16 %.0f TFLOP/s (cuBLASLt 8192^3), copy %.0f GB/s\n",
                c.ceil.fp8_tflops, c.ceil.bf16_tflops, c.ceil.copy_gbs);
    if (what == "one") {
      if (argc < 6) fail("usage: bench_fp8_prefill one M N K VARIANT");
      one(c, M, std::atoll(argv[3]), std::atoll(argv[4]), argv[5]);
      return 0;
    }
    if (what == "dense" || what == "all") dense(c, M);
    if (what == "grouped" || what == "all") grouped(c);
    if (what == "head" || what == "all") head(c);
    if (what == "moe" || what == "all") moe_sizes(c);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
