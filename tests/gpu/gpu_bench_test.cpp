// Timings of the CUDA backend's main ops at DeepSeek-V3 shapes, each beside the ceiling it is
// bound by (measured in the same run by Backend::measure_ceilings: device-to-device copy bandwidth,
// and cuBLASLt's BF16 rate on a large square product). Prints one table row per op; asserts
// nothing but that the ops run. Run: build/tests/gpu/test_gpu --gtest_filter='GpuBench.*'.
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/mla_decode/mla_absorbed.h"
#include "gpu/gpu_test_util.h"

namespace dsserve::test {
namespace {

cuda::CudaBackend& cg() { return static_cast<cuda::CudaBackend&>(gpu()); }

// A device BF16 tensor of uniform values in [-scale, scale) from a fast generator (large inputs).
Tensor fast_random(Shape s, uint64_t seed, float scale = 1.0f) {
  Tensor h = Tensor::zeros_host(DType::BF16, s);
  uint16_t* p = h.ptr<uint16_t>();
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (int64_t i = 0; i < h.numel(); ++i) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    p[i] = f32_to_bf16(scale * (float(x >> 40) / float(1 << 24) * 2.0f - 1.0f));
  }
  return gpu().to_device(h);
}

// Median milliseconds of fn over `iters` runs after 3 warm-ups, timed with events on the backend's stream.
double time_ms(const std::function<void()>& fn, int iters = 10) {
  cudaStream_t s = cg().stream();
  for (int i = 0; i < 3; ++i) fn();
  std::vector<double> t;
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  for (int i = 0; i < iters; ++i) {
    cudaEventRecord(a, s);
    fn();
    cudaEventRecord(b, s);
    cudaEventSynchronize(b);
    float ms = 0;
    cudaEventElapsedTime(&ms, a, b);
    t.push_back(ms);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

struct Ceil {
  double gbs = 0, tflops = 0;
};
Ceil g_ceil;

void row(const char* op, const char* shape, double ms, double flops, double bytes) {
  double tf = flops / ms / 1e9, gb = bytes / ms / 1e6;
  std::printf("[ bench    ] %-28s %-34s %9.3f ms  %7.1f TFLOP/s (%4.0f%% of %.0f)  %7.0f GB/s (%4.0f%% of %.0f)\n", op,
              shape, ms, tf, 100 * tf / g_ceil.tflops, g_ceil.tflops, gb, 100 * gb / g_ceil.gbs, g_ceil.gbs);
  ::testing::Test::RecordProperty(std::string(op) + " " + shape, std::to_string(ms) + " ms");
}

class GpuBench : public ::testing::Test {
 protected:
  void SetUp() override {
    DS_REQUIRE_GPU();
    gpu().begin_forward();
    if (g_ceil.gbs == 0) measure_ceilings();
  }
  static void measure_ceilings() {
    const DeviceCeilings c = gpu().measure_ceilings();
    g_ceil.gbs = c.copy_gbs;
    g_ceil.tflops = c.bf16_tflops;
    std::printf("[ bench    ] ceilings: copy %.0f GB/s (read + write), bf16 cuBLASLt 8192^3 %.0f TFLOP/s\n", g_ceil.gbs,
                g_ceil.tflops);
  }
  Rng rng{7};
};

TEST_F(GpuBench, Linear) {
  for (bool fp8 : {false, true}) {
    for (auto [T, N, K] : {std::tuple<int64_t, int64_t, int64_t>{4096, 2112, 7168}, {4096, 36864, 7168},
                           {64, 2112, 7168}, {64, 7168, 16384}, {1, 24576, 1536}}) {
      std::vector<WeightPart> parts{fp8 ? random_fp8_part(N, K, rng) : random_bf16_part(N, K, rng)};
      LinearWeight w = gpu().make_linear(parts, LinearUse::Projection);
      Tensor x = fast_random({T, K}, 8);
      double ms = time_ms([&] {
        gpu().begin_forward();
        gpu().linear(x, w);
      });
      char shape[64];
      std::snprintf(shape, sizeof(shape), "T=%ld %ldx%ld", long(T), long(N), long(K));
      const bool decode = fp8 && cg().last_fp8_linear() == cuda::CudaBackend::Fp8LinearPath::Decode;
      row(!fp8 ? "linear bf16" : decode ? "linear fp8 w8a16 (decode)" : "linear fp8 w8a8", shape, ms, 2.0 * T * N * K,
          double(N * K) * (fp8 ? 1 : 2) + double(T * (K + N)) * 2);
    }
  }
}

// The FP8 linears of DeepSeek-V3 at decode sizes: the decode kernel (gemm/fp8_decode_gemm.h)
// beside cuBLASLt's W8A8 product (activation quantization included, tokens padded to 8) in the
// same run. GB/s counts the weight bytes once (e4m3; scales, inputs and outputs are < 1% at
// T <= 64); each call is one replay of a recorded CUDA graph, rotating over enough weight copies
// (>= 256 MB) that they do not stay in L2. Filter: --gtest_filter=GpuBench.Fp8DecodeLinear.
TEST_F(GpuBench, Fp8DecodeLinear) {
  struct Case {
    const char* name;
    int64_t in;
    std::vector<int64_t> outs;
  };
  const Case cases[] = {{"q_a+kv_a", 7168, {1536, 576}},
                        {"q_b", 1536, {24576}},
                        {"o_proj", 16384, {7168}},
                        {"gate_up", 7168, {18432, 18432}},
                        {"down", 18432, {7168}}};
  for (const Case& cs : cases) {
    int64_t N = 0;
    for (int64_t o : cs.outs) N += o;
    const double weight_bytes = double(N) * double(cs.in);
    const int copies = int(std::clamp(std::ceil(256e6 / weight_bytes), 2.0, 16.0));
    std::vector<LinearWeight> ws;
    for (int c = 0; c < copies; ++c) {
      std::vector<WeightPart> parts;
      for (int64_t o : cs.outs) parts.push_back(random_fp8_part(o, cs.in, rng));
      ws.push_back(gpu().make_linear(parts, LinearUse::Projection));
    }
    const std::string layout = cuda::CudaBackend::describe(ws[0]);
    for (int64_t T : {1, 2, 4, 8, 16, 32, 64}) {
      Tensor x = fast_random({T, cs.in}, 300 + uint64_t(T));
      double gbs[2] = {0, 0};
      for (int path = 0; path < 2; ++path) {  // 0: decode kernel, 1: cuBLASLt
        cg().set_fp8_decode_max_tokens(path == 0 ? cuda::kFp8DecodeMaxTokens : 0);
        std::vector<std::unique_ptr<CapturedForward>> graphs;
        std::vector<Tensor> outs(static_cast<size_t>(copies));
        for (int c = 0; c < copies; ++c)
          graphs.push_back(gpu().capture([&] {
            outs[size_t(c)] = Tensor();
            outs[size_t(c)] = gpu().linear(x, ws[size_t(c)]);
          }));
        const int rounds = std::max(1, 64 / copies);
        const double ms = time_ms([&] {
          for (int r = 0; r < rounds; ++r)
            for (auto& g : graphs) g->replay();
        }, 7) / (rounds * copies);
        gbs[path] = weight_bytes / ms / 1e6;
      }
      cg().reset_fp8_decode_policy();
      cuda::Fp8DecodeGemmParams p;  // the plan (every V3 shape is one fp8 segment); only alignment matters
      p.w = reinterpret_cast<const uint8_t*>(uintptr_t(256));
      p.x = p.w;
      p.w_scale = reinterpret_cast<const float*>(uintptr_t(256));
      p.y = reinterpret_cast<void*>(uintptr_t(256));
      p.T = T, p.rows = N, p.K = cs.in;
      p.ldx = p.K, p.scale_ld = cuda::fp8_weight_scale_ld(p.K), p.ldy = N;
      const cuda::Fp8DecodePlan plan = cuda::fp8_decode_gemm_plan(p);
      char shape[96];
      std::snprintf(shape, sizeof(shape), "%s %ldx%ld T=%ld", cs.name, long(N), long(cs.in), long(T));
      std::printf("[ bench    ] fp8 decode linear %-30s %-14s decode %6.0f GB/s (%3.0f%% of copy %.0f) "
                  "[%ld blocks, %d x 32 rows, %d K parts]  cuBLASLt %6.0f GB/s (%3.0f%%)  %.2fx\n",
                  shape, layout.c_str(), gbs[0], 100 * gbs[0] / g_ceil.gbs, g_ceil.gbs, long(plan.blocks),
                  plan.row_warps, plan.k_parts(), gbs[1], 100 * gbs[1] / g_ceil.gbs, gbs[0] / gbs[1]);
      ::testing::Test::RecordProperty(std::string("fp8 decode linear ") + shape,
                                      std::to_string(gbs[0]) + " GB/s decode, " + std::to_string(gbs[1]) +
                                          " GB/s cuBLASLt, copy " + std::to_string(g_ceil.gbs));
    }
  }
}

TEST_F(GpuBench, NormRopeSilu) {
  const int64_t T = 4096, H = 7168;
  Tensor x = fast_random({T, H}, 9), w = gpu().make_vector(uniform({H}, rng, 0.5f, 1.5f));
  Tensor res = fast_random({T, H}, 10);
  double ms = time_ms([&] { gpu().rms_norm(x, w, 1e-6f); });
  row("rms_norm", "4096x7168", ms, 0, 2.0 * T * H * 2);
  ms = time_ms([&] { gpu().add_rms_norm(res, x, w, 1e-6f); });
  row("add_rms_norm", "4096x7168", ms, 0, 5.0 * T * H * 2);
  Tensor gu = fast_random({T, 2 * 18432}, 11);
  ms = time_ms([&] { gpu().silu_mul(gu); });
  row("silu_mul", "4096x2x18432", ms, 0, 3.0 * T * 18432 * 2);
}

// Absorbed MLA decode over a paged (64-slot pages) V3 latent cache: the wgmma kernel (default on
// Hopper where it applies) beside the mma.sync kernel in the same run, and at the shapes the
// FP8 (e4m3) cache in the same run. A call (attention + merge of splits) is timed as replays of a
// recorded CUDA graph, as decode runs, rotating over enough copies of the inputs that they do not
// stay in L2. Bandwidth counts each sequence's cached bytes once, as stored (576 x 2 bytes per key
// in BF16, 576 x 1 in FP8); FLOPs are 2 * ctx * heads * (576 + 512) per query token. `q` > 1: the
// speculative verify shape (q query tokens per sequence under a random tree mask). The last case is
// a graph sized for a 32k context replayed on short sequences (most splits empty).
// Filter: --gtest_filter=GpuBench.MlaDecode.
TEST_F(GpuBench, MlaDecode) {
  const int kr = 512, L = 576, page = 64;
  struct Case {
    int B, ctx, heads, max_seq_len;
    bool fp8;  // also time an FP8 cache
    int q = 1;
  };
  // A device FP8 e4m3 tensor of random values below 2 in magnitude (never NaN: exponent bit 3 clear).
  auto fast_random_fp8 = [](Shape s, uint64_t seed) {
    Tensor h = Tensor::zeros_host(DType::F8_E4M3, s);
    uint8_t* p = static_cast<uint8_t*>(h.data());
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (int64_t i = 0; i < h.numel(); ++i) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      p[i] = uint8_t((x >> 32) & 0xB7);
    }
    return gpu().to_device(h);
  };
  for (const Case cs : {Case{64, 4096, 128, 0, true}, Case{64, 4096, 16, 0, true}, Case{8, 4096, 16, 0, true},
                        Case{1, 32768, 128, 0, false}, Case{64, 4096, 16, 0, false, 4},
                        Case{32, 4096, 128, 0, false, 2}, Case{64, 100, 16, 32768, false}}) {
    const double keys_bytes = double(cs.B) * cs.ctx * L, flops = 2.0 * cs.B * cs.q * cs.ctx * cs.heads * (L + kr);
    const int copies = int(std::clamp(std::ceil(256e6 / (keys_bytes * 2)), 1.0, 8.0));
    std::vector<AttentionBatch> batches;
    std::vector<Tensor> caches, caches_fp8, qs;
    for (int c = 0; c < copies; ++c) {
      BatchSpec spec = make_batch_spec(std::vector<std::pair<int, int>>(size_t(cs.B), {cs.ctx - cs.q, cs.q}), page,
                                       rng, 0, cs.q > 1);
      batches.push_back(make_batch(gpu(), spec));
      batches.back().max_seq_len = cs.max_seq_len;
      caches.push_back(fast_random({spec.num_pages * page, L}, 100 + uint64_t(c)));
      if (cs.fp8) caches_fp8.push_back(fast_random_fp8({spec.num_pages * page, L}, 300 + uint64_t(c)));
      qs.push_back(
          fast_random({int64_t(cs.B) * cs.q, int64_t(cs.heads) * L}, 200 + uint64_t(c), 0.3f).unflatten(1, cs.heads, L));
    }
    char shape[64];
    std::snprintf(shape, sizeof(shape), "B=%d ctx=%d h=%d%s%s", cs.B, cs.ctx, cs.heads,
                  cs.q > 1 ? (" q=" + std::to_string(cs.q) + " tree").c_str() : "", cs.max_seq_len ? " graph@32k" : "");
    // Times the kernel over the given caches; returns milliseconds per call.
    auto bench = [&](cuda::MlaDecodeKernel k, const std::vector<Tensor>& over, const char* cache_name) {
      cg().set_mla_decode_kernel(k);
      const double cache_bytes = keys_bytes * double(dtype_size(over[0].dtype()));
      std::vector<std::unique_ptr<CapturedForward>> graphs;
      Tensor out;
      for (int c = 0; c < copies; ++c)
        graphs.push_back(gpu().capture([&] {
          out = Tensor();
          out = gpu().mla_attention_absorbed(qs[size_t(c)], over[size_t(c)], batches[size_t(c)], kr, 0.07f);
        }));
      const auto ran = cg().last_mla_decode();
      const int rounds = std::max(1, 40 / copies);
      const double ms = time_ms([&] {
        for (int r = 0; r < rounds; ++r)
          for (auto& g : graphs) g->replay();
      }, 7) / (rounds * copies);
      const double gbs = cache_bytes / ms / 1e6, tf = flops / ms / 1e9;
      std::printf("[ bench    ] mla decode %-6s %-4s %-34s splits %2d %9.4f ms  %6.0f GB/s (%3.0f%% of copy %.0f)  "
                  "%6.1f TFLOP/s (%3.0f%% of bf16 %.0f)\n",
                  cuda::mla_decode_kernel_name(ran.kernel), cache_name, shape, ran.num_splits, ms, gbs,
                  100 * gbs / g_ceil.gbs, g_ceil.gbs, tf, 100 * tf / g_ceil.tflops, g_ceil.tflops);
      const std::string name =
          std::string("mla decode ") + cuda::mla_decode_kernel_name(ran.kernel) + " " + cache_name + " " + shape;
      ::testing::Test::RecordProperty(name, std::to_string(ms) + " ms, " + std::to_string(100 * gbs / g_ceil.gbs) +
                                                "% of copy, " + std::to_string(100 * tf / g_ceil.tflops) + "% of bf16");
      return ms;
    };
    const double best = bench(cuda::MlaDecodeKernel::Sm90, caches, "bf16");
    const double mma = bench(cuda::MlaDecodeKernel::Mma, caches, "bf16");
    std::printf("[ bench    ] mla decode %-35s default is %.2fx the speed of mma.sync\n", shape, mma / best);
    if (cs.fp8) {
      const double fp8 = bench(cuda::MlaDecodeKernel::Sm90, caches_fp8, "fp8");
      std::printf("[ bench    ] mla decode %-35s fp8 cache is %.2fx the speed of bf16 (half the bytes)\n", shape,
                  best / fp8);
    }
    cg().set_mla_decode_kernel(cuda::MlaDecodeKernel::Sm90);
  }
}

// The merge of split partial results alone (mla_combine_kernel), at the splits the decode shapes
// above use: its share of their times. Bytes: partial outputs and (m, l) read, BF16 output written.
TEST_F(GpuBench, MlaCombine) {
  const int kr = 512;
  struct Case {
    int tokens, heads, splits;
    const char* of;
  };
  for (const Case cs : {Case{64, 16, 2, "B=64 h=16"}, Case{8, 16, 16, "B=8 h=16"}, Case{1, 128, 64, "B=1 h=128"},
                        Case{64, 16, 64, "B=64 h=16 graph@32k"}}) {
    const int64_t rows = int64_t(cs.tokens) * cs.heads, parts = rows * cs.splits;
    std::vector<float> ml(size_t(parts) * 2);
    for (int64_t i = 0; i < parts; ++i) ml[size_t(2 * i)] = float(i % 7) * 0.25f, ml[size_t(2 * i + 1)] = 1.0f;
    float *part_out = nullptr, *part_ml = nullptr;
    void* out = nullptr;
    ASSERT_EQ(cudaMalloc(&part_out, size_t(parts) * kr * 4), cudaSuccess);
    ASSERT_EQ(cudaMalloc(&part_ml, size_t(parts) * 8), cudaSuccess);
    ASSERT_EQ(cudaMalloc(&out, size_t(rows) * kr * 2), cudaSuccess);
    ASSERT_EQ(cudaMemset(part_out, 0, size_t(parts) * kr * 4), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(part_ml, ml.data(), ml.size() * 4, cudaMemcpyHostToDevice), cudaSuccess);
    cuda::MlaAbsorbedParams p{};
    p.num_tokens = cs.tokens, p.heads = cs.heads, p.kv_rank = kr, p.latent = kr + 64, p.num_splits = cs.splits;
    p.out = out, p.part_out = part_out, p.part_ml = part_ml;
    auto graph = gpu().capture([&] {
      for (int r = 0; r < 10; ++r) EXPECT_EQ(cuda::launch_mla_combine(p, cg().stream()), cudaSuccess);
    });
    ASSERT_NE(graph, nullptr);
    const double ms = time_ms([&] { graph->replay(); }, 7) / 10;
    const double gbs = double(parts) * (kr * 4 + 8) + double(rows) * kr * 2;
    std::printf("[ bench    ] mla combine %-20s splits %2d %9.4f ms  %6.0f GB/s (%3.0f%% of copy %.0f)\n", cs.of,
                cs.splits, ms, gbs / ms / 1e6, 100 * gbs / ms / 1e6 / g_ceil.gbs, g_ceil.gbs);
    ::testing::Test::RecordProperty(std::string("mla combine ") + cs.of + " splits " + std::to_string(cs.splits),
                                    std::to_string(ms) + " ms");
    graph.reset();
    cudaFree(part_out);
    cudaFree(part_ml);
    cudaFree(out);
  }
}

// Expanded (prefill) MLA attention, 128 heads, q/k 192, v 128, causal: one sequence of 4,096 and
// of 16,384 tokens, and a 4,096-token chunk over a 12,288-token cached prefix (keys up-projected for
// the whole 16,384), the wgmma kernel beside the mma.sync kernel. FLOPs count the visible (query,
// key) pairs only. Filter: --gtest_filter=GpuBench.MlaAttention.
TEST_F(GpuBench, MlaAttention) {
  const int n = 128, dn = 128, dr = 64, dv = 128, kr = 512, L = kr + dr;
  struct Case {
    int prefix, tokens;
    const char* name;
  };
  for (const Case cs : {Case{0, 4096, "T=4096 causal h=128"}, Case{0, 16384, "T=16384 causal h=128"},
                        Case{12288, 4096, "chunk 4096 after 12288 h=128"}}) {
    const int T = cs.tokens, K = cs.prefix + cs.tokens;
    BatchSpec spec = make_batch_spec({{cs.prefix, T}}, 64, rng);
    AttentionBatch b = make_batch(gpu(), spec);
    Tensor q = fast_random({T, n * (dn + dr)}, 4).unflatten(1, n, dn + dr);
    Tensor kv = fast_random({K, n * (dn + dv)}, 5).unflatten(1, n, dn + dv);
    Tensor keys = fast_random({K, L}, 6);
    const double pairs = double(T) * cs.prefix + double(T) * (T + 1) / 2;
    double ms_of[2] = {0, 0};
    for (auto k : {cuda::MlaPrefillKernel::Sm90, cuda::MlaPrefillKernel::Mma}) {
      cg().set_mla_prefill_kernel(k);
      const double ms = time_ms([&] {
        gpu().begin_forward();
        gpu().mla_attention_expanded(q, kv, keys.slice(1, kr, L), b, 0.07f);
      }, T > 8192 ? 5 : 10);
      ms_of[int(k)] = ms;
      const std::string name = std::string("mla expanded ") + cuda::mla_prefill_kernel_name(cg().last_mla_prefill());
      row(name.c_str(), cs.name, ms, 2.0 * n * pairs * (dn + dr + dv), double(T) * n * (dn + dr + dv) * 2 +
                                                                          double(K) * n * (dn + dv) * 2);
    }
    std::printf("[ bench    ] mla expanded %s: wgmma is %.2fx the speed of mma.sync\n", cs.name, ms_of[1] / ms_of[0]);
  }
  cg().set_mla_prefill_kernel(cuda::MlaPrefillKernel::Sm90);
}

TEST_F(GpuBench, Moe) {
  const int E = 16, H = 7168, I = 2048, K = 8;
  const int64_t T = 2048;
  std::vector<ExpertParts> parts;
  for (int e = 0; e < E; ++e)
    parts.push_back({random_fp8_part(I, H, rng), random_fp8_part(I, H, rng), random_fp8_part(H, I, rng)});
  ExpertWeights w = gpu().make_experts(parts);
  std::vector<WeightPart> gate{WeightPart{randn({E, H}, rng, 0.01f), {}}};
  LinearWeight g = gpu().make_linear(gate, LinearUse::Router);
  Tensor bias = gpu().make_vector(uniform({E}, rng, 0.0f, 0.1f));
  Tensor x = fast_random({T, H}, 12);
  RouterParams p{E, K, 4, 2, true, true, 2.5f};
  RouterOutput r = gpu().moe_route(x, g, bias, p);
  double ms = time_ms([&] { gpu().moe_route(x, g, bias, p); });
  row("moe_route", "T=2048 E=16", ms, 2.0 * T * E * H, double(T) * H * 2);
  ms = time_ms([&] { gpu().moe_experts(x, w, r); }, 5);
  row("moe_experts fp8", "T=2048 E=16 top8 7168/2048", ms, 2.0 * T * K * 3.0 * H * I,
      double(E) * 3 * H * I + double(T) * H * 4);
}

}  // namespace
}  // namespace dsserve::test
