// Timings of the quantized products (backend/cuda/quant/) at DeepSeek-V3 shapes, each beside the
// ceiling measured in the same run, the ratio, and the path it replaces measured in the same run:
// - W4A16 (AWQ) and W8A8 (INT8) linears at decode sizes, T = 1 .. 64: GB/s over the bytes the
//   kernel must read (AWQ: the packed 4-bit weights plus one 4-byte scale-and-zero word per group
//   and row; INT8: the int8 weights plus their scales) against the device-to-device copy bandwidth,
//   and cuBLASLt's BF16 product of the same shape (what a BF16 copy of the model would run).
//   Each call is one replay of a recorded CUDA graph, rotating over enough weight copies (>= 256 MB)
//   that they do not stay in L2.
// - W8A8 (INT8) and W4A16 linears at 128, 512 and 4096 tokens: TOP/s against cuBLASLt's int8 product (int8 x
//   int8 -> int32, no scales) of the same shape and of 8192^3, on the tiled kernel and expanded to
//   BF16 + cuBLASLt (quant_dequant.h), beside the backend's BF16 product of the same shape (BF16
//   weights: the dequantized default), measured in the same run.
// - A DeepSeek-V3 MoE layer's routed experts (256 experts, top-8) at decode sizes (graph replays)
//   and prefill sizes (expanded to BF16 and on the tiled kernel): GB/s over the active experts'
//   bytes, beside the same layer with BF16 experts (the dequantized default) in the same run.
// Asserts only that the products run. Filter: --gtest_filter='GpuQuantBench.*'.
#include <gtest/gtest.h>

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <numeric>
#include <set>

#include "backend/cuda/cuda_backend.h"
#include "gpu/gpu_test_util.h"

namespace dsserve::test {
namespace {

cuda::CudaBackend& cg() { return static_cast<cuda::CudaBackend&>(gpu()); }

double time_ms(const std::function<void()>& fn, int iters = 7) { return median_ms(cg().stream(), fn, 2, iters); }

// Weight parts drawn fast (bench sizes): AWQ random nibbles and scales; INT8 uniform in [-127, 127].
WeightPart fast_awq_part(int64_t out, int64_t in, int64_t group, uint64_t seed) {
  WeightPart p;
  p.format = WeightFormat::Awq;
  p.group_size = group;
  p.weight = Tensor::zeros_host(DType::I32, {in, out / 8});
  p.zeros = Tensor::zeros_host(DType::I32, {in / group, out / 8});
  p.scale = Tensor::zeros_host(DType::F16, {in / group, out});
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  auto next = [&] { return x ^= x << 13, x ^= x >> 7, x ^= x << 17; };
  for (int64_t i = 0; i < p.weight.numel(); ++i) p.weight.ptr<uint32_t>()[i] = uint32_t(next());
  for (int64_t i = 0; i < p.zeros.numel(); ++i) p.zeros.ptr<uint32_t>()[i] = uint32_t(next());
  const uint16_t s = f32_to_f16(1.0f / (6.5f * std::sqrt(float(in))));
  for (int64_t i = 0; i < p.scale.numel(); ++i) p.scale.ptr<uint16_t>()[i] = s;
  return p;
}

WeightPart fast_int8_part(int64_t out, int64_t in, bool channel, uint64_t seed) {
  WeightPart p;
  p.format = channel ? WeightFormat::ChannelInt8 : WeightFormat::BlockInt8;
  p.weight = Tensor::zeros_host(DType::I8, {out, in});
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (int64_t i = 0; i < p.weight.numel(); ++i) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    p.weight.ptr<int8_t>()[i] = int8_t(int(x % 255) - 127);
  }
  p.scale = Tensor::zeros_host(DType::F32, channel ? Shape{out, 1} : Shape{(out + 127) / 128, (in + 127) / 128});
  for (int64_t i = 0; i < p.scale.numel(); ++i) p.scale.ptr<float>()[i] = 1.0f / (73.0f * std::sqrt(float(in)));
  return p;
}

enum class Fmt { Awq, Int8Block, Int8Channel, Bf16 };
const char* name_of(Fmt f) {
  return f == Fmt::Awq ? "awq w4a16" : f == Fmt::Int8Block ? "int8 block w8a8" : f == Fmt::Int8Channel ? "int8 channel w8a8"
                                                                                                     : "bf16 cuBLASLt";
}
WeightPart part_of(Fmt f, int64_t out, int64_t in, uint64_t seed, Rng& rng) {
  switch (f) {
    case Fmt::Awq: return fast_awq_part(out, in, 128, seed);
    case Fmt::Int8Block: return fast_int8_part(out, in, false, seed);
    case Fmt::Int8Channel: return fast_int8_part(out, in, true, seed);
    default: return random_bf16_part(out, in, rng);
  }
}
// Bytes a product of this format must read per weight matrix [N, K].
double weight_bytes(Fmt f, double N, double K) {
  switch (f) {
    case Fmt::Awq: return N * K / 2 + N * (K / 128) * 4;
    case Fmt::Int8Block: return N * K + std::ceil(N / 128) * std::ceil(K / 128) * 4;
    case Fmt::Int8Channel: return N * K + N * 4;
    default: return N * K * 2;
  }
}

struct Shape {
  const char* name;
  int64_t in;
  std::vector<int64_t> outs;
};
const Shape kV3Shapes[] = {{"q_a+kv_a", 7168, {1536, 576}}, {"q_b", 1536, {24576}},
                           {"kv_b", 512, {32768}},          {"o_proj", 16384, {7168}},
                           {"gate_up", 7168, {18432, 18432}}, {"down", 18432, {7168}},
                           {"expert gate_up", 7168, {2048, 2048}}, {"expert down", 2048, {7168}}};

class GpuQuantBench : public ::testing::Test {
 protected:
  void SetUp() override {
    DS_REQUIRE_GPU();
    cg().set_quantized_kernels(true);
    gpu().begin_forward();
    if (ceil_.copy_gbs == 0) {
      ceil_ = gpu().measure_ceilings();
      std::printf("[ bench    ] ceilings: copy %.0f GB/s (read + write), bf16 %.0f TFLOP/s, fp8 %.0f TFLOP/s (cuBLASLt "
                  "8192^3)\n", ceil_.copy_gbs, ceil_.bf16_tflops, ceil_.fp8_tflops);
    }
  }
  // GB/s of linear calls at T tokens, each a replay of a recorded graph over rotating weight copies.
  double decode_gbs(Fmt f, const Shape& s, int64_t T, std::vector<LinearWeight>& ws, double bytes) {
    Tensor x = to_backend(gpu(), randn({T, s.in}, rng));
    std::vector<std::unique_ptr<CapturedForward>> graphs;
    std::vector<Tensor> outs(ws.size());
    for (size_t c = 0; c < ws.size(); ++c)
      graphs.push_back(gpu().capture([&] {
        outs[c] = Tensor();
        outs[c] = gpu().linear(x, ws[c]);
      }));
    const int rounds = std::max(1, int(64 / ws.size()));
    const double ms = time_ms([&] {
      for (int r = 0; r < rounds; ++r)
        for (auto& g : graphs) g->replay();
    }) / double(rounds * int(ws.size()));
    (void)f;
    return bytes / ms / 1e6;
  }
  std::vector<LinearWeight> copies_of(Fmt f, const Shape& s, double bytes) {
    const int copies = int(std::clamp(std::ceil(256e6 / bytes), 2.0, 16.0));
    std::vector<LinearWeight> ws;
    for (int c = 0; c < copies; ++c) {
      std::vector<WeightPart> parts;
      for (int64_t o : s.outs) {
        const uint64_t seed = 1000 * uint64_t(c) + uint64_t(o);
        if (f == Fmt::Bf16) {  // drawn on the device (host draws of the dense shapes take seconds)
          WeightPart p;
          p.weight = gpu().random_weight(DType::BF16, {o, s.in}, {seed, true, 1.0f / std::sqrt(float(s.in)), 0.0f});
          parts.push_back(p);
        } else {
          parts.push_back(part_of(f, o, s.in, seed, rng));
        }
      }
      ws.push_back(gpu().make_linear(parts, LinearUse::Projection));
    }
    return ws;
  }
  void TearDown() override {
    if (gpu_available()) cg().set_quantized_kernels(true);  // the default
  }
  static DeviceCeilings ceil_;
  Rng rng{7};
};
DeviceCeilings GpuQuantBench::ceil_;

TEST_F(GpuQuantBench, DecodeLinears) {
  const std::vector<int64_t> tokens = {1, 2, 4, 8, 16, 32, 64};
  for (const Shape& s : kV3Shapes) {
    const int64_t N = std::accumulate(s.outs.begin(), s.outs.end(), int64_t(0));
    std::map<int64_t, double> bf16_ms;
    {  // the baseline: the same shape in BF16 through cuBLASLt
      const double bytes = weight_bytes(Fmt::Bf16, double(N), double(s.in));
      std::vector<LinearWeight> ws = copies_of(Fmt::Bf16, s, bytes);
      for (int64_t T : tokens) bf16_ms[T] = bytes / decode_gbs(Fmt::Bf16, s, T, ws, bytes) / 1e6;
    }
    for (Fmt f : {Fmt::Awq, Fmt::Int8Block, Fmt::Int8Channel}) {
      const double bytes = weight_bytes(f, double(N), double(s.in));
      std::vector<LinearWeight> ws = copies_of(f, s, bytes);
      const std::string layout = cuda::CudaBackend::describe(ws[0]);
      for (int64_t T : tokens) {
        const double gbs = decode_gbs(f, s, T, ws, bytes), ms = bytes / gbs / 1e6;
        const cuda::QuantGemmPlan plan = cuda::plan_quant_gemm(f == Fmt::Awq ? cuda::QuantKind::W4A16
                                                               : f == Fmt::Int8Block ? cuda::QuantKind::I8Block
                                                                                     : cuda::QuantKind::I8Channel,
                                                               T, N, s.in, 128, cg().multiprocessors());
        std::printf("[ bench    ] decode %-17s %-15s %5ldx%-5ld T=%-3ld %8.1f us %6.0f GB/s (%3.0f%% of copy %.0f) "
                    "[%ld row tiles x %d K parts] %-26s bf16 cuBLASLt %8.1f us: %.2fx\n",
                    name_of(f), s.name, long(N), long(s.in), long(T), 1e3 * ms, gbs, 100 * gbs / ceil_.copy_gbs,
                    ceil_.copy_gbs, long(plan.row_tiles), plan.splits, layout.c_str(), 1e3 * bf16_ms[T],
                    bf16_ms[T] / ms);
        ::testing::Test::RecordProperty(std::string("decode ") + name_of(f) + " " + s.name + " T=" + std::to_string(T),
                                        std::to_string(gbs) + " GB/s of copy " + std::to_string(ceil_.copy_gbs));
      }
    }
  }
}

// cuBLASLt's int8 product D[T, N] (int32) = X[T, K] W[N, K]^T ("TN"), on the backend's stream.
struct LtInt8 {
  cublasLtHandle_t h = nullptr;
  void* ws = nullptr;
  size_t ws_bytes = size_t(32) << 20;
  LtInt8() {
    cublasLtCreate(&h);
    cudaMalloc(&ws, ws_bytes);
  }
  ~LtInt8() {
    cudaFree(ws);
    cublasLtDestroy(h);
  }
  // Returns false when cuBLASLt has no algorithm.
  bool run(const void* w, const void* x, void* d, int64_t N, int64_t T, int64_t K, cudaStream_t stream) {
    cublasLtMatmulDesc_t desc;
    cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32I, CUDA_R_32I);
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta));
    cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb));
    cublasLtMatrixLayout_t a, b, c;
    cublasLtMatrixLayoutCreate(&a, CUDA_R_8I, uint64_t(K), uint64_t(N), K);
    cublasLtMatrixLayoutCreate(&b, CUDA_R_8I, uint64_t(K), uint64_t(T), K);
    cublasLtMatrixLayoutCreate(&c, CUDA_R_32I, uint64_t(N), uint64_t(T), N);
    cublasLtMatmulPreference_t pref;
    cublasLtMatmulPreferenceCreate(&pref);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_bytes, sizeof(ws_bytes));
    cublasLtMatmulHeuristicResult_t res{};
    int n = 0;
    bool ok = cublasLtMatmulAlgoGetHeuristic(h, desc, a, b, c, c, pref, 1, &res, &n) == CUBLAS_STATUS_SUCCESS && n > 0;
    if (ok) {
      const int32_t alpha = 1, beta = 0;
      ok = cublasLtMatmul(h, desc, &alpha, w, a, x, b, &beta, d, c, d, c, &res.algo, ws, ws_bytes, stream) ==
           CUBLAS_STATUS_SUCCESS;
    }
    cublasLtMatmulPreferenceDestroy(pref);
    cublasLtMatrixLayoutDestroy(a);
    cublasLtMatrixLayoutDestroy(b);
    cublasLtMatrixLayoutDestroy(c);
    cublasLtMatmulDescDestroy(desc);
    return ok;
  }
};

TEST_F(GpuQuantBench, PrefillLinears) {
  LtInt8 lt;
  const std::vector<int64_t> tokens = {128, 512, 4096};
  double square_tops = 0;
  {  // the int8 tensor rate: cuBLASLt's int8 product of 8192^3
    const int64_t n = 8192;
    Tensor w = gpu().random_weight(DType::I8, {n, n}, {1, true, 30.0f, 0.0f});
    Tensor x = gpu().random_weight(DType::I8, {n, n}, {2, true, 30.0f, 0.0f});
    Tensor d = gpu().alloc(DType::I32, {n, n});
    ASSERT_TRUE(lt.run(w.data(), x.data(), d.data(), n, n, n, cg().stream())) << "cuBLASLt has no int8 product";
    const double ms = time_ms([&] { lt.run(w.data(), x.data(), d.data(), n, n, n, cg().stream()); });
    square_tops = 2.0 * double(n) * n * n / ms / 1e9;
    std::printf("[ bench    ] int8 tensor rate: cuBLASLt int8 8192^3 %.0f TOP/s\n", square_tops);
  }
  auto timed = [&](const Tensor& x, const LinearWeight& w) {
    return time_ms([&] {
      gpu().begin_forward();
      gpu().linear(x, w);
    });
  };
  for (const Shape& s : kV3Shapes) {
    const int64_t N = std::accumulate(s.outs.begin(), s.outs.end(), int64_t(0)), K = s.in;
    Tensor w8 = gpu().random_weight(DType::I8, {N, K}, {3, true, 30.0f, 0.0f});
    std::vector<WeightPart> bf16_parts;  // the dequantized path: the backend's BF16 product of the same shape
    for (int64_t o : s.outs) {
      WeightPart p;
      p.weight = gpu().random_weight(DType::BF16, {o, K}, {uint64_t(o), true, 1.0f / std::sqrt(float(K)), 0.0f});
      bf16_parts.push_back(p);
    }
    const LinearWeight wb = gpu().make_linear(bf16_parts, LinearUse::Projection);
    std::map<Fmt, LinearWeight> wq;
    for (Fmt f : {Fmt::Int8Block, Fmt::Int8Channel, Fmt::Awq}) {
      std::vector<WeightPart> parts;
      for (int64_t o : s.outs) parts.push_back(part_of(f, o, K, uint64_t(o), rng));
      wq[f] = gpu().make_linear(parts, LinearUse::Projection);
    }
    for (int64_t T : tokens) {
      const double ops = 2.0 * double(T) * double(N) * double(K);
      Tensor x8 = gpu().random_weight(DType::I8, {T, K}, {4, true, 30.0f, 0.0f});
      Tensor d32 = gpu().alloc(DType::I32, {T, N});
      const bool lt_ok = lt.run(w8.data(), x8.data(), d32.data(), N, T, K, cg().stream());
      const double lt_tops =
          lt_ok ? ops / time_ms([&] { lt.run(w8.data(), x8.data(), d32.data(), N, T, K, cg().stream()); }) / 1e9 : 0.0;
      Tensor x = to_backend(gpu(), randn({T, K}, rng));
      const double bf16_ms = timed(x, wb);
      for (Fmt f : {Fmt::Int8Block, Fmt::Int8Channel, Fmt::Awq}) {
        cg().set_quant_expand_min_tokens(1);
        const double expand_ms = timed(x, wq[f]);
        cg().set_quant_expand_min_tokens(INT64_MAX);
        const double ms = timed(x, wq[f]);
        cg().set_quant_expand_min_tokens(cuda::CudaBackend::kQuantExpandDefaultTokens);
        const double tops = ops / ms / 1e9;
        const double ceiling = f == Fmt::Awq ? ceil_.bf16_tflops : lt_tops;
        // The default path at prefill sizes: channel INT8 on cuBLASLt's int8 product (then the
        // scales), the others expanded to BF16 + cuBLASLt.
        const double def_tops = ops / expand_ms / 1e9;
        std::printf("[ bench    ] prefill %-17s %-15s T=%-4ld %5ldx%-5ld tiled %8.3f ms %6.0f TOP/s  %s %6.0f TOP/s: "
                    "%3.0f%%  default (%s) %.3f ms %6.0f TOP/s: %3.0f%%  bf16 weights %.3f ms: tiled %.2fx, "
                    "default %.2fx\n",
                    name_of(f), s.name, long(T), long(N), long(K), ms, tops,
                    f == Fmt::Awq ? "vs bf16 cuBLASLt 8192^3" : "vs cuBLASLt int8 same shape", ceiling,
                    ceiling > 0 ? 100 * tops / ceiling : 0.0,
                    f == Fmt::Int8Channel ? "cuBLASLt int8 + scales" : "expanded to bf16 + cuBLASLt", expand_ms,
                    def_tops, ceiling > 0 ? 100 * def_tops / ceiling : 0.0, bf16_ms, bf16_ms / ms, bf16_ms / expand_ms);
        ::testing::Test::RecordProperty(std::string("prefill ") + name_of(f) + " " + s.name + " T=" + std::to_string(T),
                                        std::to_string(tops) + " TOP/s of " + std::to_string(ceiling));
      }
    }
  }
}

TEST_F(GpuQuantBench, MoeExperts) {
  // One V3 MoE layer's routed experts (256 of 7168 x 2048, top-8): 16 distinct experts' data,
  // repeated over the 256 (each GPU expert still has its own memory). Decode sizes are timed as
  // graph replays (the grouped path), prefill sizes eagerly (per-expert segments).
  const int E = 256, K = 8, distinct = 16;
  const int64_t H = 7168, I = 2048;
  const std::vector<int64_t> tokens = {1, 8, 32, 64, 512, 4096};
  std::map<int64_t, std::vector<int32_t>> ids_of;  // the same routing for every format
  for (int64_t T : tokens) {
    std::vector<int32_t>& ids = ids_of[T];
    for (int64_t t = 0; t < T; ++t) {
      std::vector<int32_t> e(E);
      std::iota(e.begin(), e.end(), 0);
      std::shuffle(e.begin(), e.end(), rng);
      ids.insert(ids.end(), e.begin(), e.begin() + K);
    }
  }
  std::map<int64_t, double> bf16_ms;
  for (Fmt f : {Fmt::Bf16, Fmt::Awq, Fmt::Int8Block, Fmt::Int8Channel}) {
    std::vector<ExpertParts> unique;
    auto part = [&](int64_t out, int64_t in, uint64_t seed) {
      if (f != Fmt::Bf16) return part_of(f, out, in, seed, rng);
      WeightPart p;  // on the device: no host conversion of 256 BF16 experts
      p.weight = gpu().random_weight(DType::BF16, {out, in}, {seed, true, 1.0f / std::sqrt(float(in)), 0.0f});
      return p;
    };
    for (int d = 0; d < distinct; ++d)
      unique.push_back({part(I, H, 3 * uint64_t(d)), part(I, H, 3 * uint64_t(d) + 1), part(H, I, 3 * uint64_t(d) + 2)});
    std::vector<ExpertParts> all;
    for (int e = 0; e < E; ++e) all.push_back(unique[size_t(e % distinct)]);
    ExpertWeights ex = gpu().make_experts(all);
    const std::string layout = cuda::CudaBackend::describe(ex);
    const double expert_bytes = weight_bytes(f, 2.0 * I, double(H)) + weight_bytes(f, double(H), double(I));
    for (int64_t T : tokens) {
      const std::vector<int32_t>& ids_v = ids_of[T];
      Tensor ids = Tensor::zeros_host(DType::I32, {T, K});
      std::copy(ids_v.begin(), ids_v.end(), ids.ptr<int32_t>());
      const std::set<int32_t> active(ids_v.begin(), ids_v.end());
      RouterOutput route{gpu().to_device(ids), gpu().to_device(uniform({T, K}, rng, 0.1f, 0.7f))};
      Tensor x = to_backend(gpu(), randn({T, H}, rng));
      Tensor out;
      double ms = 0;
      if (T <= 64) {
        auto graph = gpu().capture([&] {
          out = Tensor();
          out = gpu().moe_experts(x, ex, route);
        });
        ms = time_ms([&] { graph->replay(); }, 20);
      } else {
        ms = time_ms([&] {
          gpu().begin_forward();
          out = gpu().moe_experts(x, ex, route);
        });
        if (f != Fmt::Bf16) {  // the experts on the tiled kernel instead of expanded to BF16
          cg().set_quant_expand_min_tokens(INT64_MAX);
          const double tiled_ms = time_ms([&] {
            gpu().begin_forward();
            out = gpu().moe_experts(x, ex, route);
          });
          cg().set_quant_expand_min_tokens(cuda::CudaBackend::kQuantExpandDefaultTokens);
          std::printf("[ bench    ] moe %-17s T=%-4ld tiled kernel %9.1f us (default, %s, %9.1f us): %.2fx\n",
                      name_of(f), long(T), 1e3 * tiled_ms,
                      f == Fmt::Int8Channel ? "cuBLASLt int8 + scales" : "expanded to bf16", 1e3 * ms, ms / tiled_ms);
        }
      }
      if (f == Fmt::Bf16) bf16_ms[T] = ms;
      const double bytes = double(active.size()) * expert_bytes, gbs = bytes / ms / 1e6;
      std::printf("[ bench    ] moe %-17s T=%-4ld %3zu experts %7.1f MB %9.1f us %6.0f GB/s (%3.0f%% of copy %.0f) "
                  "%s  bf16 experts %9.1f us: %.2fx\n",
                  name_of(f), long(T), active.size(), bytes / 1e6, 1e3 * ms, gbs, 100 * gbs / ceil_.copy_gbs,
                  ceil_.copy_gbs, layout.c_str(), 1e3 * bf16_ms[T], bf16_ms[T] / ms);
      ::testing::Test::RecordProperty(std::string("moe ") + name_of(f) + " T=" + std::to_string(T),
                                      std::to_string(gbs) + " GB/s");
    }
  }
}

}  // namespace
}  // namespace dsserve::test
