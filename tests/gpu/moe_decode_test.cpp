// The decode path of the CUDA backend's routed experts (device-side alignment and grouped expert
// products, no host synchronisation) against the CPU backend on fresh random inputs: the
// DeepSeek-V3 shape (hidden 7168, intermediate 2048, 256 experts, top-8) at T = 1 .. 256, hot
// experts that need several work items, and small odd shapes (partial tiles and chunks); FP8
// block-scaled and BF16 weights. Also: agreement with the cuBLASLt path, the experts_run() count,
// and moe_route + moe_experts captured in a CUDA graph and replayed on new inputs.
// Bounds: the grouped path multiplies the oracle's own weights (FP8 dequantized and rounded to BF16
// exactly as the oracle does) with the same BF16 inputs, accumulates in float32, and rounds to BF16
// three times (the SiLU-and-mul output, each expert's output, the weighted sum): about 2e-3 relative
// (3 roundings of relative rms 2^-9 / sqrt(3)), bounded at 1e-2. The cuBLASLt path quantizes
// activations to e4m3 for FP8 weights (W8A8: ~0.1, as in ops_test).
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <set>

#include "backend/cuda/cuda_backend.h"
#include "gpu/gpu_test_util.h"

namespace dsserve::test {
namespace {

constexpr double kGrouped = 1e-2;    // three BF16 roundings, float32 accumulation
constexpr double kW8A8 = 0.1;        // the cuBLASLt path with FP8 weights (activations in e4m3)
constexpr double kBf16Paths = 1.5e-2;

using Path = cuda::CudaBackend::MoePath;
cuda::CudaBackend& cg() { return static_cast<cuda::CudaBackend&>(gpu()); }

class MoeDecode : public ::testing::Test {
 protected:
  void SetUp() override {
    DS_REQUIRE_GPU();
    gpu().begin_forward();
    cpu().begin_forward();
    cg().set_fused_decode(false);  // the unfused path's router and W8A16 grouped kernels
  }
  void TearDown() override {
    if (gpu_available()) cg().set_moe_path(Path::Auto), cg().set_fused_decode(!sm80_forced());  // the default
  }
  void expect_close(const std::string& what, double err, double tol) {
    RecordProperty(what, std::to_string(err));
    EXPECT_LE(err, tol) << what;
  }
  Rng rng{std::random_device{}()};
};

// Experts on both backends. The GPU holds `experts` of them; to keep the oracle affordable at the
// V3 shape, the CPU holds only `distinct` and GPU expert e has the weights of CPU expert
// e % distinct (a prime, so that a wrong 64-bit expert offset reads weights the oracle does not).
struct Experts {
  ExpertWeights cpu, gpu;
  int experts = 0, distinct = 0;
};

Experts make_experts(int experts, int distinct, int64_t H, int64_t I, bool fp8, Rng& rng) {
  std::vector<ExpertParts> parts;
  for (int d = 0; d < distinct; ++d) {
    if (fp8)
      parts.push_back({random_fp8_part(I, H, rng), random_fp8_part(I, H, rng), random_fp8_part(H, I, rng)});
    else
      parts.push_back({random_bf16_part(I, H, rng), random_bf16_part(I, H, rng), random_bf16_part(H, I, rng)});
  }
  std::vector<ExpertParts> all;
  for (int e = 0; e < experts; ++e) all.push_back(parts[size_t(e % distinct)]);
  return {cpu().make_experts(parts), gpu().make_experts(all), experts, distinct};
}

// Routes of T tokens: top_k experts per token, distinct unless with_replacement; every token takes
// the `hot` experts first. Weights like a normalised router's.
RouterOutput random_route_host(int64_t T, int K, int E, Rng& rng, const std::vector<int>& hot = {},
                               bool with_replacement = false) {
  Tensor ids = Tensor::zeros_host(DType::I32, {T, K});
  for (int64_t t = 0; t < T; ++t) {
    std::vector<int32_t> e(static_cast<size_t>(E));
    std::iota(e.begin(), e.end(), 0);
    std::shuffle(e.begin(), e.end(), rng);
    for (size_t h = 0; h < hot.size(); ++h) std::iter_swap(e.begin() + long(h), std::find(e.begin(), e.end(), hot[h]));
    for (int k = 0; k < K; ++k)
      ids.ptr<int32_t>()[t * K + k] = with_replacement ? int32_t(rng() % uint64_t(E)) : e[size_t(k)];
  }
  return {ids, uniform({T, K}, rng, 0.1f, 0.7f)};
}

int distinct_experts(const Tensor& host_ids) {
  std::set<int32_t> s(host_ids.ptr<int32_t>(), host_ids.ptr<int32_t>() + host_ids.numel());
  return int(s.size());
}

// moe_experts on the GPU (on `path`) and on the CPU oracle for the same tokens and routes.
struct Outputs {
  Tensor cpu, gpu;  // host F32
};
Outputs run_both(const Experts& ex, const Tensor& x, const RouterOutput& host_route, Path path) {
  Tensor cpu_ids = Tensor::zeros_host(DType::I32, host_route.topk_ids.shape());
  for (int64_t i = 0; i < cpu_ids.numel(); ++i) cpu_ids.ptr<int32_t>()[i] = host_route.topk_ids.ptr<int32_t>()[i] % ex.distinct;
  RouterOutput rc{cpu().to_device(cpu_ids), cpu().to_device(host_route.topk_weights)};
  RouterOutput rg{gpu().to_device(host_route.topk_ids), gpu().to_device(host_route.topk_weights)};
  gpu().begin_forward();
  cpu().begin_forward();
  cg().set_moe_path(path);
  Tensor g = gpu().to_host_f32(gpu().moe_experts(to_backend(gpu(), x), ex.gpu, rg));
  Tensor c = cpu().to_host_f32(cpu().moe_experts(cpu().to_device(x), ex.cpu, rc));
  return {c, g};
}

std::string tag_of(bool fp8, int64_t H, int64_t I, int E, int K, int64_t T) {
  return std::string(fp8 ? "fp8" : "bf16") + "_H" + std::to_string(H) + "_I" + std::to_string(I) + "_E" +
         std::to_string(E) + "_top" + std::to_string(K) + "_T" + std::to_string(T);
}

TEST_F(MoeDecode, GroupedMatchesCpuAtDeepSeekV3Shape) {
  const int64_t H = 7168, I = 2048;
  const int K = 8;
  // FP8 (the checkpoint's format) with all 256 experts; BF16 with 64 (its stack is already 3.8 GB,
  // past 2^31 bytes, and preparing BF16 experts dequantizes each one on the host).
  for (auto [fp8, E] : {std::pair{true, 256}, std::pair{false, 64}}) {
    Experts ex = make_experts(E, 13, H, I, fp8, rng);
    RecordProperty("layout_" + std::string(fp8 ? "fp8" : "bf16"), cuda::CudaBackend::describe(ex.gpu));
    ASSERT_EQ(cuda::CudaBackend::describe(ex.gpu).substr(0, 3), fp8 ? "fp8" : "bf1");
    for (int64_t T : {1, 2, 7, 64, 256}) {
      Outputs o = run_both(ex, randn({T, H}, rng), random_route_host(T, K, E, rng), Path::Grouped);
      expect_close("err_" + tag_of(fp8, H, I, E, K, T), rel_err(o.gpu, o.cpu), kGrouped);
    }
    // Hot experts (the first, the last, one between): 256 rows each, several work items of one expert.
    const int64_t T = 256;
    Outputs o = run_both(ex, randn({T, H}, rng), random_route_host(T, K, E, rng, {0, E - 1, E / 3}), Path::Grouped);
    expect_close("hot_err_" + tag_of(fp8, H, I, E, K, T), rel_err(o.gpu, o.cpu), kGrouped);
  }
}

TEST_F(MoeDecode, GroupedMatchesCpuAtSmallOddShapes) {
  struct Case {
    int E, K;
    int64_t H, I;
    bool fp8, with_replacement;
  };
  // 200 / 72 and 136 / 264: partial K chunks, partial 128-row down tiles and 64-column gate_up tiles
  // (BF16 only: FP8 experts need multiples of 128). Drawing with replacement routes a token to the
  // same expert twice.
  for (const Case& cs : {Case{16, 3, 256, 128, true, false}, Case{16, 4, 256, 384, true, false},
                         Case{16, 3, 256, 384, false, false}, Case{13, 3, 200, 72, false, false},
                         Case{16, 2, 136, 264, false, true}, Case{16, 3, 256, 128, true, true}}) {
    Experts ex = make_experts(cs.E, cs.E, cs.H, cs.I, cs.fp8, rng);
    ASSERT_EQ(cuda::CudaBackend::describe(ex.gpu).substr(0, 3), cs.fp8 ? "fp8" : "bf1");
    for (int64_t T : {1, 5, 33, 100, 256}) {  // 8-, 16- and 32-row work items, hot experts at 256
      Outputs o = run_both(ex, randn({T, cs.H}, rng, 2.0f), random_route_host(T, cs.K, cs.E, rng, {}, cs.with_replacement),
                           Path::Grouped);
      expect_close("err_" + tag_of(cs.fp8, cs.H, cs.I, cs.E, cs.K, T) + (cs.with_replacement ? "_dup" : ""),
                   rel_err(o.gpu, o.cpu), kGrouped);
    }
  }
}

TEST_F(MoeDecode, GroupedAndCublasltPathsAgree) {
  struct Case {
    int E, K;
    int64_t H, I;
    bool fp8;
  };
  for (const Case& cs : {Case{32, 8, 7168, 2048, true}, Case{32, 8, 1024, 512, false}}) {
    Experts ex = make_experts(cs.E, cs.E, cs.H, cs.I, cs.fp8, rng);
    for (int64_t T : {8, 64}) {
      Tensor x = randn({T, cs.H}, rng);
      RouterOutput route = random_route_host(T, cs.K, cs.E, rng);
      Outputs grouped = run_both(ex, x, route, Path::Grouped);
      Outputs lt = run_both(ex, x, route, Path::Cublaslt);
      const std::string tag = tag_of(cs.fp8, cs.H, cs.I, cs.E, cs.K, T);
      expect_close("grouped_vs_cpu_" + tag, rel_err(grouped.gpu, grouped.cpu), kGrouped);
      expect_close("cublaslt_vs_cpu_" + tag, rel_err(lt.gpu, lt.cpu), cs.fp8 ? kW8A8 : kBf16Paths);
      expect_close("grouped_vs_cublaslt_" + tag, rel_err(grouped.gpu, lt.gpu), cs.fp8 ? kW8A8 : kBf16Paths);
    }
  }
}

TEST_F(MoeDecode, ExpertsRunCountsDistinctExperts) {
  const int E = 16, K = 3;
  Experts ex = make_experts(E, E, 256, 128, true, rng);
  for (Path path : {Path::GroupedW8A8, Path::Grouped, Path::Cublaslt}) {
    if (path == Path::GroupedW8A8 && sm80_forced()) continue;  // FP8 tensor cores: not in the sm80 kernel set
    for (int64_t T : {1, 4, 40}) {
      RouterOutput route = random_route_host(T, K, E, rng);
      const int64_t before = gpu().experts_run();
      run_both(ex, randn({T, 256}, rng), route, path);
      run_both(ex, randn({T, 256}, rng), route, path);
      EXPECT_EQ(gpu().experts_run() - before, 2 * distinct_experts(route.topk_ids))
          << int(path) << " T=" << T;
    }
  }
}

TEST_F(MoeDecode, RouteAndExpertsReplayInCudaGraph) {
  // A V3-like router (sigmoid scores, 8 groups, top-3 groups) over 64 FP8 experts; T * top_k is
  // under the threshold, so the automatic choice must take the grouped path (capture would fail
  // on the cuBLASLt path's host synchronisation).
  const int E = 64, K = 6;
  const int64_t H = 1024, I = 512, T = 24;
  auto& be = cg();
  be.set_moe_path(Path::Auto);
  Experts ex = make_experts(E, E, H, I, true, rng);
  std::vector<WeightPart> gate_parts{WeightPart{randn({E, H}, rng, 1.0f / std::sqrt(float(H))), {}}};
  LinearWeight gate = be.make_linear(gate_parts, LinearUse::Router);
  Tensor bias = be.make_vector(uniform({E}, rng, 0.0f, 0.1f));
  const RouterParams rp{E, K, 8, 3, true, true, 2.5f};

  Tensor x = be.alloc(DType::BF16, {T, H});  // the graph's input buffer
  auto write_x = [&](const Tensor& host_f32) {
    Tensor src = to_backend(be, host_f32);
    ASSERT_EQ(cudaMemcpyAsync(x.data(), src.data(), x.nbytes(), cudaMemcpyDeviceToDevice, be.stream()), cudaSuccess);
    be.synchronize();
  };
  RouterOutput route;  // of the last forward (scratch)
  auto forward = [&] {
    route = be.moe_route(x, gate, bias, rp);
    return be.moe_experts(x, ex.gpu, route);
  };

  write_x(randn({T, H}, rng));
  {  // Warm-up: the scratch arena and the cuBLASLt plan of the router exist afterwards.
    be.begin_forward();
    Tensor warm = forward();
    be.synchronize();
    route = {};
  }
  be.begin_forward();
  ASSERT_EQ(cudaStreamBeginCapture(be.stream(), cudaStreamCaptureModeThreadLocal), cudaSuccess);
  Tensor captured;
  RouterOutput captured_route;
  try {
    captured = forward();
    captured_route = route;
  } catch (const std::exception& e) {
    cudaGraph_t broken = nullptr;
    cudaStreamEndCapture(be.stream(), &broken);
    if (broken) cudaGraphDestroy(broken);
    cudaGetLastError();
    FAIL() << "moe_route + moe_experts could not be captured: " << e.what();
  }
  cudaGraph_t graph = nullptr;
  ASSERT_EQ(cudaStreamEndCapture(be.stream(), &graph), cudaSuccess);
  cudaGraphExec_t exec = nullptr;
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);

  Tensor previous;
  for (int rep = 0; rep < 3; ++rep) {
    write_x(randn({T, H}, rng, rep == 2 ? 3.0f : 1.0f));  // new tokens, so new routes
    ASSERT_EQ(cudaGraphLaunch(exec, be.stream()), cudaSuccess);
    Tensor replayed = be.to_host_f32(captured);
    Tensor replay_ids = be.to_host_f32(captured_route.topk_ids), replay_w = be.to_host_f32(captured_route.topk_weights);
    be.begin_forward();  // another arena: `captured` keeps the graph's
    Tensor eager = be.to_host_f32(forward());
    Tensor eager_ids = be.to_host_f32(route.topk_ids);
    route = {};
    const std::string r = std::to_string(rep);
    // The same kernels on the same inputs: identical bits (rows are computed independently of
    // their place in an expert's work item; the un-permute sums in k order).
    EXPECT_EQ(std::memcmp(replay_ids.data(), eager_ids.data(), replay_ids.nbytes()), 0) << "routes, replay " << r;
    expect_close("replay_vs_eager_" + r, rel_err(replayed, eager), 0.0);
    if (previous.defined()) {
      EXPECT_GT(rel_err(replayed, previous), 0.1) << "the replay read new inputs";
    }
    previous = replayed;
    // And the oracle on the routes the graph chose.
    Tensor xh = be.to_host_f32(x);
    RouterOutput rc{cpu().to_device(replay_ids), cpu().to_device(replay_w)};
    cpu().begin_forward();
    Tensor oracle = cpu().to_host_f32(cpu().moe_experts(cpu().to_device(xh), ex.cpu, rc));
    expect_close("replay_vs_cpu_" + r, rel_err(replayed, oracle), kGrouped);
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
}

}  // namespace
}  // namespace dsserve::test
