// bench_moe_decode: one DeepSeek-V3 MoE layer's router and routed experts at decode sizes on the
// CUDA backend (hidden 7168, intermediate 2048, 256 FP8 experts with 128x128 block scales, top-8 of
// 8 groups / top-4 groups), with random weights generated on the device. For each T it times
// moe_route + moe_experts (CUDA events, median of many runs after warm-up) replayed from a CUDA
// graph on the W8A8 grouped path of the fused decode path (fused router, tokens quantized
// beforehand, as the norm before the MoE hands them over) and on the measured W8A16 grouped path, eagerly on the cuBLASLt path, and prints the
// distinct experts used, the expert weight bytes they read (weights and scales; the float32 router
// weight, 7.3 MB, and the activations are not counted), the achieved rate, and its ratio to the copy
// bandwidth measured in the same run (bytes read + written per second, Backend::measure_ceilings).
// A last column adds the shared expert (one more expert's bytes) through moe_feed_forward, W8A8.
// Usage: bench_moe_decode [iterations (default 50)] [T ...]
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <random>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/gemm/cublaslt_gemm.h"
#include "core/error.h"

using namespace dsserve;

namespace {

constexpr int64_t kHidden = 7168, kInter = 2048;
constexpr int kExperts = 256, kTopK = 8, kGroups = 8, kTopGroups = 4;

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) fail("bench_moe_decode: {}: {}", what, cudaGetErrorString(e));
}

// Median milliseconds of `fn` over `iters` runs after `warmup` runs, timed with events on `stream`.
double median_ms(cudaStream_t stream, int warmup, int iters, const std::function<void()>& fn) {
  for (int i = 0; i < warmup; ++i) fn();
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

// One expert's bytes as the FP8 stack holds them: weights plus the padded block-scale rows.
double expert_bytes() {
  const double weights = 3.0 * double(kHidden) * double(kInter);
  const double scales = double(2 * kInter / 128) * double(cuda::fp8_weight_scale_ld(kHidden)) * 4.0 +
                        double((kHidden + 127) / 128) * double(cuda::fp8_weight_scale_ld(kInter)) * 4.0;
  return weights + scales;
}

// A checkpoint-style scale matrix [ceil(out/128), ceil(in/128)] for weights drawn as N(0, 64^2) e4m3 codes.
Tensor host_scales(int64_t out, int64_t in, std::mt19937_64& rng) {
  Tensor s = Tensor::zeros_host(DType::F32, {(out + 127) / 128, (in + 127) / 128});
  std::uniform_real_distribution<float> u(0.5f, 1.5f);
  for (int64_t i = 0; i < s.numel(); ++i) s.ptr<float>()[i] = u(rng) / (64.0f * std::sqrt(float(in)));
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const int iters = argc > 1 ? std::max(5, std::atoi(argv[1])) : 50;
    std::vector<int64_t> sizes;
    for (int i = 2; i < argc; ++i) sizes.push_back(std::atoll(argv[i]));
    if (sizes.empty()) sizes = {1, 8, 32, 64, 128, 256};

    std::unique_ptr<Backend> backend = create_backend(DeviceKind::Cuda);
    auto& be = static_cast<cuda::CudaBackend&>(*backend);
    const DeviceCeilings ceil = be.measure_ceilings();

    // Weights: e4m3 values generated on the device, scales from the host; the router in float32.
    std::mt19937_64 rng(2024);
    std::vector<ExpertParts> parts;
    uint64_t seed = 1;
    for (int e = 0; e < kExperts; ++e) {
      auto part = [&](int64_t out, int64_t in) {
        return WeightPart{be.random_weight(DType::F8_E4M3, {out, in}, {seed++, true, 64.0f, 0.0f}),
                          host_scales(out, in, rng)};
      };
      parts.push_back({part(kInter, kHidden), part(kInter, kHidden), part(kHidden, kInter)});
    }
    ExpertWeights experts = be.make_experts(parts);
    parts.clear();
    std::vector<WeightPart> gate_parts{
        WeightPart{be.random_weight(DType::F32, {kExperts, kHidden}, {seed++, true, 1.0f / std::sqrt(float(kHidden)), 0.0f}), {}}};
    LinearWeight gate = be.make_linear(gate_parts, LinearUse::Router);
    gate_parts.clear();
    Tensor bias_host = Tensor::zeros_host(DType::F32, {kExperts});
    std::uniform_real_distribution<float> ub(0.0f, 0.1f);
    for (int e = 0; e < kExperts; ++e) bias_host.ptr<float>()[e] = ub(rng);
    Tensor bias = be.make_vector(bias_host);
    const RouterParams rp{kExperts, kTopK, kGroups, kTopGroups, true, true, 2.5f};

    std::printf("moe decode: hidden %ld, intermediate %ld, %d fp8 experts, top-%d; %s; copy %.0f GB/s "
                "(read + write); median of %d runs\n",
                long(kHidden), long(kInter), kExperts, kTopK, cuda::CudaBackend::describe(experts).c_str(),
                ceil.copy_gbs, iters);
    // The shared expert (intermediate 2048, FP8) for the last column.
    auto shared_part = [&](int64_t out, int64_t in) {
      return WeightPart{be.random_weight(DType::F8_E4M3, {out, in}, {seed++, true, 64.0f, 0.0f}),
                        host_scales(out, in, rng)};
    };
    std::vector<WeightPart> sgu{shared_part(kInter, kHidden), shared_part(kInter, kHidden)};
    std::vector<WeightPart> sdn{shared_part(kHidden, kInter)};
    LinearWeight shared_gate_up = be.make_linear(sgu, LinearUse::Projection);
    LinearWeight shared_down = be.make_linear(sdn, LinearUse::Projection);
    sgu.clear(), sdn.clear();
    Tensor norm_w = be.make_vector([&] {
      Tensor h = Tensor::zeros_host(DType::F32, {kHidden});
      for (int64_t i = 0; i < kHidden; ++i) h.ptr<float>()[i] = 1.0f;
      return h;
    }());
    std::printf("%5s %7s %9s | %-26s | %-26s | %-26s | %-26s | %s\n", "T", "experts", "weight MB",
                "w8a8 grouped (graph)", "w8a16 grouped (graph)", "cuBLASLt (eager, sync)", "w8a8 + shared (graph)",
                "w8a8 / w8a16");
    for (int64_t T : sizes) {
      Tensor x0 = be.random_weight(DType::BF16, {T, kHidden}, {seed++, true, 1.0f, 0.0f});
      // The tokens as the norm before the MoE hands them over: BF16 rows and (fused decode path)
      // their e4m3 quantization.
      be.set_fused_decode(true);
      const Activation x = be.rms_norm_quant(x0, norm_w, 1e-6f);
      auto forward = [&](bool shared) {
        RouterOutput r = be.moe_route(x.x, gate, bias, rp);
        return shared ? be.moe_feed_forward(x, experts, r, &shared_gate_up, &shared_down)
                      : be.moe_feed_forward(x, experts, r, nullptr, nullptr);
      };
      auto eager = [&] {
        be.begin_forward();
        forward(false);
      };
      // One forward captured and replayed: milliseconds per replay.
      auto graph_ms = [&](bool shared) {
        be.begin_forward();
        forward(shared);  // warm-up: plans and scratch exist before capture
        be.synchronize();
        be.begin_forward();
        cudaGraph_t graph = nullptr;
        cudaGraphExec_t exec = nullptr;
        check(cudaStreamBeginCapture(be.stream(), cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
        Tensor captured = forward(shared);
        check(cudaStreamEndCapture(be.stream(), &graph), "cudaStreamEndCapture");
        check(cudaGraphInstantiate(&exec, graph, 0), "cudaGraphInstantiate");
        const double ms =
            median_ms(be.stream(), 5, iters, [&] { check(cudaGraphLaunch(exec, be.stream()), "cudaGraphLaunch"); });
        be.synchronize();
        cudaGraphExecDestroy(exec);
        cudaGraphDestroy(graph);
        return ms;
      };

      be.set_moe_path(cuda::CudaBackend::MoePath::GroupedW8A8);
      eager();
      const int64_t before = be.experts_run();
      eager();
      const int64_t used = be.experts_run() - before;
      const double bytes = double(used) * expert_bytes();
      const double w8a8_ms = graph_ms(false);
      const double shared_ms = graph_ms(true);
      be.set_fused_decode(false);  // the measured path: the four-kernel router, the W8A16 grouped kernels
      be.set_moe_path(cuda::CudaBackend::MoePath::Grouped);
      const double w8a16_ms = graph_ms(false);
      be.set_moe_path(cuda::CudaBackend::MoePath::Cublaslt);
      const double lt_ms = median_ms(be.stream(), 5, iters, eager);
      be.set_moe_path(cuda::CudaBackend::MoePath::Auto);

      auto cell = [&](double ms, double b) {
        const double gbs = b / ms / 1e6;
        std::printf(" %8.1f us %6.0f GB/s %4.0f%% |", ms * 1e3, gbs, 100.0 * gbs / ceil.copy_gbs);
      };
      std::printf("%5ld %7ld %9.1f |", long(T), long(used), bytes / 1e6);
      cell(w8a8_ms, bytes);
      cell(w8a16_ms, bytes);
      cell(lt_ms, bytes);
      cell(shared_ms, bytes + expert_bytes());
      std::printf(" %.2fx\n", w8a16_ms / w8a8_ms);
      std::fflush(stdout);
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_moe_decode: %s\n", e.what());
    return 1;
  }
}
