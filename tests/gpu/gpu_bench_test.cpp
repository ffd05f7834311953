// Timings of the CUDA backend's main ops at DeepSeek-V3 shapes, each beside the ceiling it is
// bound by (measured in the same run by Backend::measure_ceilings: device-to-device copy bandwidth,
// and cuBLASLt's BF16 rate on a large square product). Prints one table row per op; asserts
// nothing but that the ops run. Run: build/tests/gpu/test_gpu --gtest_filter='GpuBench.*'.
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>
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
double time_ms(const std::function<void()>& fn, int iters = 10) { return median_ms(cg().stream(), fn, 3, iters); }

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
    if (sm80_forced()) GTEST_SKIP() << "timings of the Hopper set's kernels by name; the sm80 set's: Sm80Bench.*";
    gpu().begin_forward();
    if (g_ceil.gbs == 0) measure_ceilings();
  }
  void TearDown() override {
    if (gpu_available()) cg().set_fused_decode(cg().hopper_kernels());  // the default, after the benches that turn it off
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
      const bool decode = fp8 && cg().last_fp8_linear() == cuda::CudaBackend::Fp8LinearPath::W8A8Decode;
      row(!fp8 ? "linear bf16" : decode ? "linear fp8 w8a8 (decode)" : "linear fp8 w8a8", shape, ms, 2.0 * T * N * K,
          double(N * K) * (fp8 ? 1 : 2) + double(T * (K + N)) * 2);
    }
  }
}

// The FP8 linears of DeepSeek-V3 at decode sizes on the three paths, in the same run: the W8A8
// decode kernel (gemm/w8a8_decode_gemm.h) on activations quantized beforehand (as the norms and
// SiLU-and-mul now hand them over), the W8A16 kernel it replaces (gemm/fp8_decode_gemm.h, BF16
// activations) and cuBLASLt's block-scaled product on the same quantized activations (tokens padded
// to 8). GB/s counts the weight bytes once (e4m3; scales, inputs and outputs are < 1% at T <= 64);
// each call is one replay of a recorded CUDA graph, rotating over enough weight copies (>= 256 MB)
// that they do not stay in L2. Filter: --gtest_filter=GpuBench.Fp8DecodeLinear.
TEST_F(GpuBench, Fp8DecodeLinear) {
  using Path = cuda::CudaBackend::Fp8LinearPath;
  struct Case {
    const char* name;
    int64_t in;
    std::vector<int64_t> outs;
  };
  const Case cases[] = {{"q_a+kv_a", 7168, {1536, 576}}, {"q_b", 1536, {24576}},
                        {"o_proj", 16384, {7168}},       {"gate_up", 7168, {18432, 18432}},
                        {"down", 18432, {7168}},         {"shared gate_up", 7168, {2048, 2048}},
                        {"shared down", 2048, {7168}}};
  std::printf("[ bench    ] fp8 decode linear: GB/s of weight bytes; ratio to the copy ceiling %.0f GB/s measured "
              "above; w8a16 and cuBLASLt are the baselines of the same run\n", g_ceil.gbs);
  cg().set_fused_decode(true);  // the norms hand over quantized rows
  // DSSERVE_BENCH_SHAPES (names, comma-separated) and DSSERVE_BENCH_TOKENS (one T) narrow the run
  // (scripts/gpu-profile.sh profiles one shape this way).
  const char* only_shapes = std::getenv("DSSERVE_BENCH_SHAPES");
  const char* only_tokens = std::getenv("DSSERVE_BENCH_TOKENS");
  for (const Case& cs : cases) {
    if (only_shapes && ("," + std::string(only_shapes) + ",").find("," + std::string(cs.name) + ",") == std::string::npos)
      continue;
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
    for (int64_t T : {1, 2, 4, 8, 16, 32, 64, 128}) {
      if (only_tokens && T != std::atoll(only_tokens)) continue;
      Tensor x = fast_random({T, cs.in}, 300 + uint64_t(T));
      // The quantized rows, as a norm hands them over (rows padded to 8 for every consumer).
      const Tensor nw = gpu().make_vector(uniform({cs.in}, rng, 0.5f, 1.5f));
      const Activation a = gpu().rms_norm_quant(x, nw, 1e-6f);
      double gbs[3] = {0, 0, 0};  // w8a8, w8a16, cuBLASLt
      const Path paths[3] = {Path::W8A8Decode, Path::W8A16Decode, Path::Cublaslt};
      for (int k = 0; k < 3; ++k) {
        if (k < 2 && T > cuda::kW8A8DecodeMaxTokens) continue;
        cg().set_fp8_linear_path(paths[k]);
        std::vector<std::unique_ptr<CapturedForward>> graphs;
        std::vector<Tensor> outs(static_cast<size_t>(copies));
        for (int c = 0; c < copies; ++c)
          graphs.push_back(gpu().capture([&] {
            outs[size_t(c)] = Tensor();
            outs[size_t(c)] = k == 1 ? gpu().linear(a.x, ws[size_t(c)]) : gpu().linear(a, ws[size_t(c)]);
          }));
        if (cg().last_fp8_linear() != paths[k]) {
          std::printf("[ bench    ] fp8 decode linear %s T=%ld: path %d did not run as asked\n", cs.name, long(T), k);
          ADD_FAILURE();
        }
        const int rounds = std::max(1, 64 / copies);
        const double ms = time_ms([&] {
          for (int r = 0; r < rounds; ++r)
            for (auto& g : graphs) g->replay();
        }, 7) / (rounds * copies);
        gbs[k] = weight_bytes / ms / 1e6;
      }
      cg().set_fp8_linear_path(Path::None);
      cuda::W8A8DecodeParams pp;  // the plan of the call (only shapes and alignment matter)
      pp.xq = pp.w = reinterpret_cast<const uint8_t*>(uintptr_t(256));
      pp.xs = pp.w_scale = reinterpret_cast<const float*>(uintptr_t(256));
      pp.y = reinterpret_cast<void*>(uintptr_t(256));
      pp.T = std::min<int64_t>(T, cuda::kW8A8DecodeMaxTokens), pp.rows = N, pp.K = cs.in;
      pp.ldxq = cs.in, pp.xs_ld = (pp.T + 7) / 8 * 8, pp.scale_ld = cuda::fp8_weight_scale_ld(cs.in), pp.ldy = N;
      const cuda::W8A8DecodePlan plan = cuda::w8a8_decode_plan(pp);
      char shape[96];
      std::snprintf(shape, sizeof(shape), "%s %ldx%ld T=%ld", cs.name, long(N), long(cs.in), long(T));
      const double best_base = std::max(gbs[1], gbs[2]);
      std::printf("[ bench    ] fp8 decode linear %-30s w8a8 %6.0f GB/s (%3.0f%% of copy) [split %d]  w8a16 %6.0f "
                  "(%3.0f%%)  cuBLASLt %6.0f (%3.0f%%)  w8a8 / best baseline %.2fx\n",
                  shape, gbs[0], 100 * gbs[0] / g_ceil.gbs, plan.split, gbs[1], 100 * gbs[1] / g_ceil.gbs, gbs[2],
                  100 * gbs[2] / g_ceil.gbs, best_base > 0 ? gbs[0] / best_base : 0.0);
      ::testing::Test::RecordProperty(std::string("fp8 decode linear ") + shape,
                                      std::to_string(gbs[0]) + " GB/s w8a8, " + std::to_string(gbs[1]) +
                                          " w8a16, " + std::to_string(gbs[2]) + " cuBLASLt, copy " +
                                          std::to_string(g_ceil.gbs));
    }
  }
}

// The decode-sized MLP (dense layers 7168 -> 2 x 18432 -> 7168, the shared expert 7168 -> 2 x 2048
// -> 7168) on FP8 weights: gate_up with SiLU-and-mul and quantization fused into one kernel beside
// the unfused sequence (gate_up, SiLU-and-mul writing the quantized rows, down) of the same run;
// input rows quantized beforehand, as a norm hands them over. GB/s of the weight bytes, graph replays
// over >= 256 MB of weights. Filter: --gtest_filter=GpuBench.DecodeMlp.
TEST_F(GpuBench, DecodeMlp) {
  cg().set_fused_decode(true);  // both ways below run inside the fused decode path (set_fused_mlp)
  for (auto [name, H, I] : {std::tuple{"dense", int64_t{7168}, int64_t{18432}}, std::tuple{"shared", int64_t{7168}, int64_t{2048}}}) {
    const double weight_bytes = 3.0 * double(H) * double(I);
    const int copies = int(std::clamp(std::ceil(256e6 / weight_bytes), 1.0, 16.0));
    std::vector<LinearWeight> gu, dn;
    for (int c = 0; c < copies; ++c) {
      std::vector<WeightPart> g{random_fp8_part(I, H, rng), random_fp8_part(I, H, rng)}, d{random_fp8_part(H, I, rng)};
      gu.push_back(gpu().make_linear(g, LinearUse::Projection));
      dn.push_back(gpu().make_linear(d, LinearUse::Projection));
    }
    const Tensor nw = gpu().make_vector(uniform({H}, rng, 0.5f, 1.5f));
    for (int64_t T : {1, 4, 8, 16, 32, 64}) {
      const Activation a = gpu().rms_norm_quant(fast_random({T, H}, 500 + uint64_t(T)), nw, 1e-6f);
      double us[2] = {0, 0};
      for (int fused = 1; fused >= 0; --fused) {
        cg().set_fused_mlp(fused == 1);
        std::vector<std::unique_ptr<CapturedForward>> graphs;
        std::vector<Tensor> outs(static_cast<size_t>(copies));
        for (int c = 0; c < copies; ++c)
          graphs.push_back(gpu().capture([&] {
            outs[size_t(c)] = Tensor();
            outs[size_t(c)] = gpu().mlp(a, gu[size_t(c)], dn[size_t(c)]);
          }));
        const int rounds = std::max(1, 32 / copies);
        us[fused] = 1e3 * time_ms([&] {
          for (int r = 0; r < rounds; ++r)
            for (auto& g : graphs) g->replay();
        }, 7) / (rounds * copies);
      }
      cg().set_fused_mlp(true);
      const double gb_fused = weight_bytes / us[1] / 1e3, gb_unfused = weight_bytes / us[0] / 1e3;
      std::printf("[ bench    ] decode mlp %-7s T=%-3ld fused %8.1f us %6.0f GB/s (%3.0f%% of copy %.0f)  unfused %8.1f us "
                  "%6.0f GB/s (%3.0f%%)  %.2fx\n",
                  name, long(T), us[1], gb_fused, 100 * gb_fused / g_ceil.gbs, g_ceil.gbs, us[0], gb_unfused,
                  100 * gb_unfused / g_ceil.gbs, us[0] / us[1]);
      ::testing::Test::RecordProperty(std::string("decode mlp ") + name + " T=" + std::to_string(T),
                                      std::to_string(us[1]) + " us fused, " + std::to_string(us[0]) + " us unfused");
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
  cg().set_fused_decode(true);  // the vectorised norm with its quantization
  ms = time_ms([&] { gpu().add_rms_norm_quant(res, x, w, 1e-6f); });
  row("add_rms_norm + fp8 quant", "4096x7168", ms, 0, 5.0 * T * H * 2 + double(T) * H);
  for (int64_t t : {1, 8, 64}) {  // decode sizes: one block per row, the row in registers
    Tensor xs = fast_random({t, H}, 20 + uint64_t(t)), rs = fast_random({t, H}, 30 + uint64_t(t));
    auto graph = gpu().capture([&] {
      for (int r = 0; r < 20; ++r) gpu().add_rms_norm_quant(rs, xs, w, 1e-6f);
    });
    const double us = 1e3 * time_ms([&] { graph->replay(); }, 7) / 20;
    std::printf("[ bench    ] add_rms_norm + fp8 quant T=%-3ld x 7168: %.2f us per call (graph of 20)\n", long(t), us);
  }
  cg().set_fused_decode(false);
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
  // DSSERVE_BENCH_SHAPES (shape names as printed, comma-separated) narrows the run (for profiling).
  const char* only_shapes = std::getenv("DSSERVE_BENCH_SHAPES");
  for (const Case cs : {Case{64, 4096, 128, 0, true}, Case{64, 4096, 16, 0, true}, Case{8, 4096, 16, 0, true},
                        Case{1, 32768, 128, 0, false}, Case{64, 4096, 16, 0, false, 4},
                        Case{32, 4096, 128, 0, false, 2}, Case{64, 100, 16, 32768, false}}) {
    char shape[64];
    std::snprintf(shape, sizeof(shape), "B=%d ctx=%d h=%d%s%s", cs.B, cs.ctx, cs.heads,
                  cs.q > 1 ? (" q=" + std::to_string(cs.q) + " tree").c_str() : "", cs.max_seq_len ? " graph@32k" : "");
    if (only_shapes && ("," + std::string(only_shapes) + ",").find("," + std::string(shape) + ",") == std::string::npos)
      continue;
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
      const std::string kname = cuda::mla_decode_kernel_name(ran.kernel);
      const int rounds = std::max(1, 40 / copies);
      const double ms = time_ms([&] {
        for (int r = 0; r < rounds; ++r)
          for (auto& g : graphs) g->replay();
      }, 7) / (rounds * copies);
      const double gbs = cache_bytes / ms / 1e6, tf = flops / ms / 1e9;
      std::printf("[ bench    ] mla decode %-8s %-4s %-34s splits %2d %9.4f ms  %6.0f GB/s (%3.0f%% of copy %.0f)  "
                  "%6.1f TFLOP/s (%3.0f%% of bf16 %.0f)\n",
                  kname.c_str(), cache_name, shape, ran.num_splits, ms, gbs,
                  100 * gbs / g_ceil.gbs, g_ceil.gbs, tf, 100 * tf / g_ceil.tflops, g_ceil.tflops);
      const std::string name = "mla decode " + kname + " " + cache_name + " " + shape;
      ::testing::Test::RecordProperty(name, std::to_string(ms) + " ms, " + std::to_string(100 * gbs / g_ceil.gbs) +
                                                "% of copy, " + std::to_string(100 * tf / g_ceil.tflops) + "% of bf16");
      return ms;
    };
    // The shipped dispatch, then mma.sync; the FP8 cache the same way.
    const double best = bench(cuda::MlaDecodeKernel::Sm90, caches, "bf16");
    const bool sm90 = cg().last_mla_decode().kernel == cuda::MlaDecodeKernel::Sm90;
    const double mma = bench(cuda::MlaDecodeKernel::Mma, caches, "bf16");
    std::printf("[ bench    ] mla decode %-35s default is %.2fx the speed of mma.sync\n", shape, mma / best);
    if (cs.fp8) {
      const double fp8 = bench(cuda::MlaDecodeKernel::Sm90, caches_fp8, "fp8");
      std::printf("[ bench    ] mla decode %-35s fp8 cache is %.2fx the speed of bf16 (half the bytes)\n", shape,
                  best / fp8);
    }
    // Split counts beside the kernels' own choice where the batch alone does not fill the GPU (the
    // merge's traffic against idle SMs).
    if (cs.B == 1 && sm90) {
      for (int splits : {24, 32, 48}) {
        cg().set_mla_decode_splits(splits);
        bench(cuda::MlaDecodeKernel::Sm90, caches, "bf16");
      }
    } else if (cs.B == 8 && cs.q == 1) {
      for (int splits : {8, 24, 32}) {
        cg().set_mla_decode_splits(splits);
        bench(cuda::MlaDecodeKernel::Sm90, caches, "bf16");
      }
    }
    cg().set_mla_decode_splits(0);
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
  const char* only_shapes = std::getenv("DSSERVE_BENCH_SHAPES");  // names, comma-separated (profiling)
  for (const Case cs : {Case{0, 4096, "T=4096 causal h=128"}, Case{0, 16384, "T=16384 causal h=128"},
                        Case{12288, 4096, "chunk 4096 after 12288 h=128"}}) {
    if (only_shapes && ("," + std::string(only_shapes) + ",").find("," + std::string(cs.name) + ",") == std::string::npos)
      continue;
    const int T = cs.tokens, K = cs.prefix + cs.tokens;
    BatchSpec spec = make_batch_spec({{cs.prefix, T}}, 64, rng);
    AttentionBatch b = make_batch(gpu(), spec);
    Tensor q = fast_random({T, n * (dn + dr)}, 4).unflatten(1, n, dn + dr);
    Tensor kv = fast_random({K, n * (dn + dv)}, 5).unflatten(1, n, dn + dv);
    Tensor keys = fast_random({K, L}, 6);
    const double pairs = double(T) * cs.prefix + double(T) * (T + 1) / 2;
    double ms_of[2] = {0, 0};
    // The shipped dispatch (the wgmma kernel), then mma.sync.
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
