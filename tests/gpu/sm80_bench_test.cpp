// What an A100 user gets, estimated on the Hopper GPU the tests run on: the Ampere (sm80) kernel set
// forced on one backend beside the Hopper set on another, timed in the same run at DeepSeek-V3
// shapes, each as a ratio to the ceiling it is bound by (measured in the same run: device copy,
// cuBLASLt BF16 and FP8 8192^3). The sm80 set has no FP8 products, so its matrix-bound rows are
// judged against the BF16 ceiling, the Hopper set's FP8 ones against the FP8 ceiling. An A100's
// ceilings are lower (about 1.9 TB/s copy, 312 TFLOP/s BF16); the ratio is the estimate that carries
// over, not the time. Asserts nothing but that the ops run. Filter: --gtest_filter='Sm80Bench.*'.
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <set>

#include "backend/cuda/cuda_backend.h"
#include "gpu/gpu_test_util.h"

namespace dsserve::test {
namespace {

struct Sets {
  std::unique_ptr<Backend> hopper_owner, ampere_owner;
  cuda::CudaBackend* hopper = nullptr;
  cuda::CudaBackend* ampere = nullptr;
  DeviceCeilings ceil;
};

Sets& sets() {
  static Sets s = [] {
    Sets t;
    t.hopper_owner = create_backend(DeviceKind::Cuda);
    t.ampere_owner = create_backend(DeviceKind::Cuda);
    t.ampere_owner->force_sm80_kernels();
    t.hopper = static_cast<cuda::CudaBackend*>(t.hopper_owner.get());
    t.ampere = static_cast<cuda::CudaBackend*>(t.ampere_owner.get());
    t.ceil = t.hopper->measure_ceilings();
    std::printf("[ bench    ] ceilings: copy %.0f GB/s, bf16 %.0f TFLOP/s, fp8 %.0f TFLOP/s (the sm80 rows use copy "
                "and bf16)\n", t.ceil.copy_gbs, t.ceil.bf16_tflops, t.ceil.fp8_tflops);
    return t;
  }();
  return s;
}

// Median milliseconds of fn over `iters` runs after 2 warm-ups, timed with events on the stream.
double time_ms(cudaStream_t s, const std::function<void()>& fn, int iters = 7) { return median_ms(s, fn, 2, iters); }

// Per-call milliseconds of `make_call` on backend b, recorded once per input copy in CUDA graphs
// and replayed in rotation (weights and caches larger than L2 together).
double graph_ms(cuda::CudaBackend& b, int copies, const std::function<void(int)>& call) {
  std::vector<std::unique_ptr<CapturedForward>> graphs;
  for (int c = 0; c < copies; ++c) graphs.push_back(b.capture([&] { call(c); }));
  const int rounds = std::max(1, 32 / copies);
  return time_ms(b.stream(), [&] {
           for (int r = 0; r < rounds; ++r)
             for (auto& g : graphs) g->replay();
         }) /
         (rounds * copies);
}

// A device BF16 tensor of N(0, scale^2)-like values generated on the device.
Tensor device_randn(cuda::CudaBackend& b, Shape s, uint64_t seed, float scale = 1.0f) {
  return b.random_weight(DType::BF16, s, {seed, true, scale, 0.0f});
}

// FP8 weight parts generated on the device (e4m3 of N(0, 64^2), scales about 1 / (64 sqrt(in))).
std::vector<WeightPart> device_fp8_parts(cuda::CudaBackend& b, int64_t in, const std::vector<int64_t>& outs,
                                         uint64_t seed) {
  std::vector<WeightPart> parts;
  for (int64_t o : outs) {
    WeightPart p;
    p.weight = b.random_weight(DType::F8_E4M3, {o, in}, {seed++, true, 64.0f, 0.0f});
    p.scale = Tensor::zeros_host(DType::F32, {(o + 127) / 128, (in + 127) / 128});
    for (int64_t i = 0; i < p.scale.numel(); ++i) p.scale.ptr<float>()[i] = 1.0f / (64.0f * std::sqrt(float(in)));
    parts.push_back(std::move(p));
  }
  return parts;
}

void print_pair(const std::string& what, double sm80_ms, double sm80_rate, const char* sm80_unit, double sm80_ceil,
                const char* sm80_ceil_name, double sm90_ms, double sm90_rate, double sm90_ceil,
                const char* sm90_ceil_name) {
  std::printf("[ bench    ] %-44s sm80 %9.4f ms %7.0f %s (%3.0f%% of %s)  sm90 %9.4f ms %7.0f (%3.0f%% of %s)  "
              "sm80 / sm90 time %.2fx\n",
              what.c_str(), sm80_ms, sm80_rate, sm80_unit, 100 * sm80_rate / sm80_ceil, sm80_ceil_name, sm90_ms,
              sm90_rate, 100 * sm90_rate / sm90_ceil, sm90_ceil_name, sm80_ms / sm90_ms);
  ::testing::Test::RecordProperty(what, std::to_string(sm80_ms) + " ms sm80, " + std::to_string(sm90_ms) + " ms sm90");
}

class Sm80Bench : public ::testing::Test {
 protected:
  void SetUp() override {
    DS_REQUIRE_GPU();
    sets();
  }
};

// V3's FP8 linears: decode sizes on the W8A16 decode kernel (sm80: no clusters) beside the Hopper
// set's default path, bytes of weights read per second against the copy ceiling; prefill sizes on
// widened weights + BF16 cuBLASLt (sm80, against the BF16 ceiling) beside W8A8 cuBLASLt (Hopper,
// against the FP8 ceiling). At 64 tokens the sm80 set's widened path is timed too (its crossover).
TEST_F(Sm80Bench, Fp8Linears) {
  Sets& s = sets();
  struct Case {
    const char* name;
    int64_t in;
    std::vector<int64_t> outs;
  };
  for (const Case& cs : {Case{"q_a+kv_a", 7168, {1536, 576}}, Case{"q_b", 1536, {24576}}, Case{"o_proj", 16384, {7168}},
                         Case{"gate_up", 7168, {18432, 18432}}}) {
    int64_t N = 0;
    for (int64_t o : cs.outs) N += o;
    const double weight_bytes = double(N) * double(cs.in);
    const int copies = int(std::clamp(std::ceil(256e6 / weight_bytes), 1.0, 16.0));
    std::vector<LinearWeight> w80, w90;
    for (int c = 0; c < copies; ++c) {
      std::vector<WeightPart> parts = device_fp8_parts(*s.hopper, cs.in, cs.outs, 1000 + 10 * uint64_t(c));
      w90.push_back(s.hopper->make_linear(parts, LinearUse::Projection));
      w80.push_back(s.ampere->make_linear(parts, LinearUse::Projection));
    }
    for (int64_t T : {1, 16, 64}) {
      Tensor x = device_randn(*s.hopper, {T, cs.in}, 7 + uint64_t(T));
      Tensor out;
      auto on = [&](cuda::CudaBackend& b, std::vector<LinearWeight>& ws) {
        return graph_ms(b, copies, [&](int c) {
          out = Tensor();
          out = b.linear(x, ws[size_t(c)]);
        });
      };
      const double ms80 = on(*s.ampere, w80), ms90 = on(*s.hopper, w90);
      char what[96];
      std::snprintf(what, sizeof(what), "fp8 linear %s %ldx%ld T=%ld", cs.name, long(N), long(cs.in), long(T));
      print_pair(what, ms80, weight_bytes / ms80 / 1e6, "GB/s", s.ceil.copy_gbs, "copy", ms90,
                 weight_bytes / ms90 / 1e6, s.ceil.copy_gbs, "copy");
      if (T == 64) {
        s.ampere->set_w8a16_decode_max_tokens(0);
        const double widened = on(*s.ampere, w80);
        s.ampere->set_w8a16_decode_max_tokens(cuda::kFp8DecodeMaxTokens);
        std::printf("[ bench    ] %-44s sm80 widened %9.4f ms: the decode kernel is %.2fx its speed\n", what, widened,
                    widened / ms80);
      }
    }
    const int64_t T = 4096;
    Tensor x = device_randn(*s.hopper, {T, cs.in}, 99);
    const double flops = 2.0 * double(T) * double(N) * double(cs.in);
    const double ms80 = time_ms(s.ampere->stream(), [&] {
      s.ampere->begin_forward();
      s.ampere->linear(x, w80[0]);
    });
    const double ms90 = time_ms(s.hopper->stream(), [&] {
      s.hopper->begin_forward();
      s.hopper->linear(x, w90[0]);
    });
    char what[96];
    std::snprintf(what, sizeof(what), "fp8 linear %s %ldx%ld T=%ld", cs.name, long(N), long(cs.in), long(T));
    print_pair(what, ms80, flops / ms80 / 1e9, "TFLOP/s", s.ceil.bf16_tflops, "bf16", ms90, flops / ms90 / 1e9,
               s.ceil.fp8_tflops, "fp8");
  }
}

// Absorbed MLA decode over a paged BF16 / FP8 cache (64-slot pages): 16 heads (V3 at TP8, the A100
// layouts) and 128; cache bytes read per second against the copy ceiling.
TEST_F(Sm80Bench, MlaDecode) {
  Sets& s = sets();
  const int kr = 512, L = 576, page = 64;
  Rng rng(5);
  struct Case {
    int B, ctx, heads;
    bool fp8;
  };
  for (const Case cs : {Case{64, 4096, 16, false}, Case{64, 4096, 16, true}, Case{8, 4096, 16, false},
                        Case{64, 4096, 128, false}, Case{1, 32768, 16, false}}) {
    const double keys = double(cs.B) * cs.ctx * L;
    const int copies = int(std::clamp(std::ceil(256e6 / (keys * (cs.fp8 ? 1 : 2))), 1.0, 8.0));
    const DType cache_dtype = cs.fp8 ? DType::F8_E4M3 : DType::BF16;
    std::vector<BatchSpec> specs;
    std::vector<Tensor> caches, qs;
    for (int c = 0; c < copies; ++c) {
      specs.push_back(make_batch_spec(std::vector<std::pair<int, int>>(size_t(cs.B), {cs.ctx - 1, 1}), page, rng));
      caches.push_back(s.hopper->random_weight(cache_dtype, {specs.back().num_pages * page, L},
                                               {uint64_t(50 + c), false, 2.0f, -1.0f}));
      qs.push_back(device_randn(*s.hopper, {cs.B, int64_t(cs.heads) * L}, 60 + uint64_t(c), 0.3f)
                       .unflatten(1, cs.heads, L));
    }
    auto on = [&](cuda::CudaBackend& b) {
      std::vector<AttentionBatch> batches;
      for (const auto& sp : specs) batches.push_back(make_batch(b, sp));
      Tensor out;
      const double ms = graph_ms(b, copies, [&](int c) {
        out = Tensor();
        out = b.mla_attention_absorbed(qs[size_t(c)], caches[size_t(c)], batches[size_t(c)], kr, 0.07f);
      });
      return std::pair{ms, std::string(cuda::mla_decode_kernel_name(b.last_mla_decode().kernel))};
    };
    const auto [ms80, k80] = on(*s.ampere);
    const auto [ms90, k90] = on(*s.hopper);
    const double bytes = keys * double(dtype_size(cache_dtype));
    char what[96];
    std::snprintf(what, sizeof(what), "mla decode %s B=%d ctx=%d h=%d (%s / %s)", cs.fp8 ? "fp8" : "bf16", cs.B,
                  cs.ctx, cs.heads, k80.c_str(), k90.c_str());
    print_pair(what, ms80, bytes / ms80 / 1e6, "GB/s", s.ceil.copy_gbs, "copy", ms90, bytes / ms90 / 1e6,
               s.ceil.copy_gbs, "copy");
  }
}

// Expanded MLA attention (prefill, V3 head dims, 128 heads, causal): FLOP rate against BF16.
TEST_F(Sm80Bench, MlaPrefill) {
  Sets& s = sets();
  const int n = 128, dn = 128, dr = 64, dv = 128, kr = 512, L = kr + dr, T = 4096;
  Rng rng(6);
  BatchSpec spec = make_batch_spec({{0, T}}, 64, rng);
  Tensor q = device_randn(*s.hopper, {T, n * (dn + dr)}, 4).unflatten(1, n, dn + dr);
  Tensor kv = device_randn(*s.hopper, {T, n * (dn + dv)}, 5).unflatten(1, n, dn + dv);
  Tensor keys = device_randn(*s.hopper, {T, L}, 6);
  const double flops = 2.0 * n * (double(T) * (T + 1) / 2) * (dn + dr + dv);
  auto on = [&](cuda::CudaBackend& b) {
    AttentionBatch batch = make_batch(b, spec);
    return time_ms(b.stream(), [&] {
      b.begin_forward();
      b.mla_attention_expanded(q, kv, keys.slice(1, kr, L), batch, 0.07f);
    });
  };
  const double ms80 = on(*s.ampere), ms90 = on(*s.hopper);
  print_pair("mla prefill T=4096 causal h=128 (mma / wgmma)", ms80, flops / ms80 / 1e9, "TFLOP/s",
             s.ceil.bf16_tflops, "bf16", ms90, flops / ms90 / 1e9, s.ceil.bf16_tflops, "bf16");
}

// Routed experts of one V3 MoE layer (256 FP8 experts, top-8): decode sizes on the grouped mma.sync
// kernel (the same kernel in both sets; bytes of the active experts against copy), and 4,096 tokens
// (sm80: per-expert BF16 products on widened weights; Hopper: W8A8 cuBLASLt per expert).
TEST_F(Sm80Bench, MoeExperts) {
  Sets& s = sets();
  const int E = 256, K = 8;
  const int64_t H = 7168, I = 2048;
  std::vector<ExpertParts> parts;
  for (int e = 0; e < E; ++e) {
    auto gu = device_fp8_parts(*s.hopper, H, {I, I}, 5000 + 3 * uint64_t(e));
    auto dn = device_fp8_parts(*s.hopper, I, {H}, 5002 + 3 * uint64_t(e));
    parts.push_back({gu[0], gu[1], dn[0]});
  }
  ExpertWeights w80 = s.ampere->make_experts(parts), w90 = s.hopper->make_experts(parts);
  parts.clear();
  Rng rng(8);
  for (int64_t T : {int64_t{1}, int64_t{64}, int64_t{4096}}) {
    Tensor ids = Tensor::zeros_host(DType::I32, {T, K});
    for (int64_t i = 0; i < T * K; ++i) ids.ptr<int32_t>()[i] = int32_t((i % K) * (E / K) + int64_t(rng() % (E / K)));
    Tensor wts = Tensor::zeros_host(DType::F32, {T, K});
    for (int64_t i = 0; i < T * K; ++i) wts.ptr<float>()[i] = 0.125f;
    Tensor x = device_randn(*s.hopper, {T, H}, 77);
    std::set<int32_t> active(ids.ptr<int32_t>(), ids.ptr<int32_t>() + ids.numel());
    const double bytes = double(active.size()) * 3.0 * double(H * I), flops = 2.0 * double(T) * K * 3.0 * double(H * I);
    auto on = [&](cuda::CudaBackend& b, const ExpertWeights& w) {
      RouterOutput r{b.to_device(ids), b.to_device(wts)};
      return time_ms(b.stream(), [&] {
        b.begin_forward();
        b.moe_experts(x, w, r);
      });
    };
    const double ms80 = on(*s.ampere, w80), ms90 = on(*s.hopper, w90);
    char what[96];
    std::snprintf(what, sizeof(what), "moe experts fp8 T=%ld (%zu experts)", long(T), active.size());
    if (T * K <= cuda::CudaBackend::kMoeGroupedMaxPairs)
      print_pair(what, ms80, bytes / ms80 / 1e6, "GB/s", s.ceil.copy_gbs, "copy", ms90, bytes / ms90 / 1e6,
                 s.ceil.copy_gbs, "copy");
    else
      print_pair(what, ms80, flops / ms80 / 1e9, "TFLOP/s", s.ceil.bf16_tflops, "bf16", ms90, flops / ms90 / 1e9,
                 s.ceil.fp8_tflops, "fp8");
  }
}

}  // namespace
}  // namespace dsserve::test
