// The W8A8 grouped MoE of the fused decode path (moe/moe_w8a8_grouped.h; CudaBackend::set_fused_decode,
// which the tests turn on) with the shared expert inside its launches, through moe_feed_forward: against an exact W8A8 emulation on the host at a small shape
// (tokens and SiLU-and-mul outputs quantized per row per 128 channels as the GPU does, weights
// e4m3 x block scale unrounded, expert outputs rounded to BF16 before the combine: per-token
// bound 2e-2, the residue of float32 summation order flipping an occasional e4m3 rounding), against
// the CPU oracle at the DeepSeek-V3 shape (256 experts, top-8, hidden 7168, intermediate 2048,
// T = 1 .. 256, hot experts; per-token bound 0.1, the activations' e4m3 rounding), under expert
// parallelism (a rank holding a slice of the experts), with the tokens quantized by the norm in
// front, and replayed from a CUDA graph (bit for bit).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>

#include "backend/cuda/cuda_backend.h"
#include "gpu/gpu_test_util.h"

namespace dsserve::test {
namespace {

using Path = cuda::CudaBackend::MoePath;
cuda::CudaBackend& cg() { return static_cast<cuda::CudaBackend&>(gpu()); }

// The largest ||a_t - b_t|| / ||b_t|| over the rows t of two host [T, H] tensors (infinity if a is not finite).
double max_row_err(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.shape(), b.shape());
  const int64_t T = b.size(0), H = b.size(1);
  double worst = 0;
  for (int64_t t = 0; t < T; ++t) {
    double d = 0, r = 0;
    for (int64_t h = 0; h < H; ++h) {
      const double x = a.ptr<float>()[t * H + h], y = b.ptr<float>()[t * H + h];
      if (!std::isfinite(x)) return INFINITY;
      d += (x - y) * (x - y), r += y * y;
    }
    worst = std::max(worst, std::sqrt(d / std::max(r, 1e-30)));
  }
  return worst;
}

float bf16_round(float v) { return bf16_to_f32(f32_to_bf16(v)); }

// Quantized then dequantized copy of v (per 128 values), as the GPU quantizes a row.
std::vector<float> quantized(const std::vector<float>& v) {
  std::vector<float> out(v.size());
  for (size_t b = 0; b < v.size(); b += 128) {
    float amax = 0;
    for (size_t i = b; i < b + 128; ++i) amax = std::max(amax, std::fabs(v[i]));
    const float s = std::max(amax, 1e-12f) / 448.0f;
    for (size_t i = b; i < b + 128; ++i) out[i] = e4m3_to_f32(f32_to_e4m3(v[i] / s)) * s;
  }
  return out;
}

// y = W x with W an FP8 part dequantized exactly (e4m3 x block scale in float32).
std::vector<float> times_fp8(const WeightPart& w, const std::vector<float>& x) {
  const int64_t rows = w.weight.size(0), cols = w.weight.size(1), bc = (cols + 127) / 128;
  std::vector<float> y(size_t(rows), 0.0f);
  for (int64_t r = 0; r < rows; ++r) {
    double acc = 0;
    for (int64_t c = 0; c < cols; ++c)
      acc += double(e4m3_to_f32(w.weight.ptr<uint8_t>()[r * cols + c])) * w.scale.ptr<float>()[(r / 128) * bc + c / 128] *
             x[size_t(c)];
    y[size_t(r)] = float(acc);
  }
  return y;
}

// One expert's output for quantized input xq, rounded to BF16 as the down kernel stores it.
std::vector<float> expert_out(const ExpertParts& e, const std::vector<float>& xq) {
  const std::vector<float> g = times_fp8(e.gate, xq), u = times_fp8(e.up, xq);
  std::vector<float> a(g.size());
  for (size_t i = 0; i < a.size(); ++i) a[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
  std::vector<float> y = times_fp8(e.down, quantized(a));
  for (float& v : y) v = bf16_round(v);
  return y;
}

class MoeW8A8 : public ::testing::Test {
 protected:
  void SetUp() override {
    DS_REQUIRE_GPU();
    if (sm80_forced()) GTEST_SKIP() << "the fused decode path (FP8 tensor cores) is not in the sm80 kernel set";
    gpu().begin_forward();
    cpu().begin_forward();
    cg().set_fused_decode(true);  // the default
  }
  void TearDown() override {
    if (gpu_available())  // the defaults (the fused path only where the Hopper set runs)
      cg().set_moe_path(Path::Auto), cg().set_pdl(true), cg().set_fused_decode(cg().hopper_kernels());
  }
  void record(const std::string& name, double err, double tol) {
    RecordProperty(name, std::to_string(err));
    EXPECT_LE(err, tol) << name;
  }
  // Routes of T tokens: K distinct experts of E per token; the `hot` experts taken by every token.
  RouterOutput route(int64_t T, int K, int E, const std::vector<int>& hot = {}) {
    Tensor ids = Tensor::zeros_host(DType::I32, {T, K});
    for (int64_t t = 0; t < T; ++t) {
      std::vector<int32_t> e(static_cast<size_t>(E));
      std::iota(e.begin(), e.end(), 0);
      std::shuffle(e.begin(), e.end(), rng);
      for (size_t h = 0; h < hot.size(); ++h) std::iter_swap(e.begin() + long(h), std::find(e.begin(), e.end(), hot[h]));
      for (int k = 0; k < K; ++k) ids.ptr<int32_t>()[t * K + k] = e[size_t(k)];
    }
    return {ids, uniform({T, K}, rng, 0.1f, 0.7f)};
  }
  Rng rng{std::random_device{}()};
};

TEST_F(MoeW8A8, MatchesExactEmulationWithSharedExpert) {
  const int E = 16, K = 4;
  const int64_t H = 512, I = 256;
  std::vector<ExpertParts> parts;
  for (int e = 0; e < E; ++e) parts.push_back({random_fp8_part(I, H, rng), random_fp8_part(I, H, rng), random_fp8_part(H, I, rng)});
  const ExpertParts shared{random_fp8_part(I, H, rng), random_fp8_part(I, H, rng), random_fp8_part(H, I, rng)};
  ExpertWeights ew = gpu().make_experts(parts);
  std::vector<WeightPart> sgu{shared.gate, shared.up}, sdn{shared.down};
  LinearWeight sg = gpu().make_linear(sgu, LinearUse::Projection), sd = gpu().make_linear(sdn, LinearUse::Projection);
  for (int64_t T : {1, 2, 7, 16, 40}) {
    for (bool with_shared : {true, false}) {
      const std::string tag = "_T" + std::to_string(T) + (with_shared ? "_shared" : "");
      Tensor x = randn({T, H}, rng);
      RouterOutput r = route(T, K, E, T >= 16 ? std::vector<int>{3} : std::vector<int>{});
      cg().set_moe_path(Path::GroupedW8A8);
      gpu().begin_forward();
      RouterOutput rg{gpu().to_device(r.topk_ids), gpu().to_device(r.topk_weights)};
      Tensor g = gpu().to_host_f32(gpu().moe_feed_forward(to_backend(gpu(), x), ew, rg, with_shared ? &sg : nullptr,
                                                          with_shared ? &sd : nullptr));
      Tensor want = Tensor::zeros_host(DType::F32, {T, H});
      for (int64_t t = 0; t < T; ++t) {
        const std::vector<float> xq = quantized(std::vector<float>(x.ptr<float>() + t * H, x.ptr<float>() + (t + 1) * H));
        std::vector<float> acc(size_t(H), 0.0f);
        for (int k = 0; k < K; ++k) {
          const std::vector<float> y = expert_out(parts[size_t(r.topk_ids.ptr<int32_t>()[t * K + k])], xq);
          for (int64_t h = 0; h < H; ++h) acc[size_t(h)] += r.topk_weights.ptr<float>()[t * K + k] * y[size_t(h)];
        }
        if (with_shared) {
          const std::vector<float> y = expert_out(shared, xq);
          for (int64_t h = 0; h < H; ++h) acc[size_t(h)] += y[size_t(h)];
        }
        for (int64_t h = 0; h < H; ++h) want.ptr<float>()[t * H + h] = bf16_round(acc[size_t(h)]);
      }
      record("w8a8_vs_emulation" + tag, max_row_err(g, want), 2e-2);
    }
  }
}

TEST_F(MoeW8A8, MatchesOracleAtDeepSeekV3Shape) {
  // 256 experts whose weights repeat 7 distinct ones (GPU expert e holds CPU expert e % 7: a wrong
  // 64-bit expert offset reads weights the oracle does not use), one shared expert.
  const int E = 256, distinct = 7, K = 8;
  const int64_t H = 7168, I = 2048;
  std::vector<ExpertParts> parts;
  for (int d = 0; d < distinct; ++d)
    parts.push_back({random_fp8_part(I, H, rng), random_fp8_part(I, H, rng), random_fp8_part(H, I, rng)});
  std::vector<ExpertParts> all;
  for (int e = 0; e < E; ++e) all.push_back(parts[size_t(e % distinct)]);
  ExpertWeights eg = gpu().make_experts(all), ec = cpu().make_experts(parts);
  all.clear();
  std::vector<WeightPart> sgu{random_fp8_part(I, H, rng), random_fp8_part(I, H, rng)}, sdn{random_fp8_part(H, I, rng)};
  LinearWeight sgg = gpu().make_linear(sgu, LinearUse::Projection), sdg = gpu().make_linear(sdn, LinearUse::Projection);
  LinearWeight sgc = cpu().make_linear(sgu, LinearUse::Projection), sdc = cpu().make_linear(sdn, LinearUse::Projection);
  Tensor norm_w = uniform({H}, rng, 0.5f, 1.5f);
  Tensor nwg = gpu().make_vector(norm_w);
  for (int64_t T : {1, 3, 16, 64, 256}) {
    const std::string tag = "_T" + std::to_string(T);
    RouterOutput r = route(T, K, E, T >= 16 ? std::vector<int>{0, E - 1, 100} : std::vector<int>{});
    // The tokens as the norm hands them over (BF16 rows and their quantization); the oracle reads the rows.
    gpu().begin_forward();
    cpu().begin_forward();
    Activation a = gpu().rms_norm_quant(to_backend(gpu(), randn({T, H}, rng, 2.0f)), nwg, 1e-6f);
    const Tensor rows = gpu().to_host_f32(a.x);
    RouterOutput rg{gpu().to_device(r.topk_ids), gpu().to_device(r.topk_weights)};
    Tensor cids = Tensor::zeros_host(DType::I32, r.topk_ids.shape());
    for (int64_t i = 0; i < cids.numel(); ++i) cids.ptr<int32_t>()[i] = r.topk_ids.ptr<int32_t>()[i] % distinct;
    RouterOutput rc{cpu().to_device(cids), cpu().to_device(r.topk_weights)};
    cg().set_moe_path(Path::Auto);
    const int64_t before = gpu().experts_run();
    Tensor g = gpu().to_host_f32(gpu().moe_feed_forward(a, eg, rg, &sgg, &sdg));
    std::set<int32_t> used(r.topk_ids.ptr<int32_t>(), r.topk_ids.ptr<int32_t>() + r.topk_ids.numel());
    EXPECT_EQ(gpu().experts_run() - before, int64_t(used.size())) << tag;
    Tensor c = cpu().to_host_f32(cpu().moe_feed_forward(cpu().to_device(rows), ec, rc, &sgc, &sdc));
    record("v3_vs_oracle" + tag, max_row_err(g, c), 0.1);
  }
}

TEST_F(MoeW8A8, ExpertParallelSliceAndGraphReplay) {
  // A rank holding experts [8, 24) of 32: pairs routed elsewhere add nothing; the shared expert is
  // added on this rank. Then the same forward recorded in a CUDA graph, replayed on new tokens and
  // routes: the bits of eager calls, with and without programmatic dependent launch.
  const int E = 32, K = 6, first = 8, local = 16;
  const int64_t H = 1024, I = 256;
  std::vector<ExpertParts> parts;
  for (int e = 0; e < E; ++e) parts.push_back({random_fp8_part(I, H, rng), random_fp8_part(I, H, rng), random_fp8_part(H, I, rng)});
  std::vector<ExpertParts> mine(parts.begin() + first, parts.begin() + first + local);
  ExpertWeights eg = gpu().make_experts(mine);
  eg.first_expert = first, eg.total_experts = E;
  ExpertWeights ec = cpu().make_experts(mine);
  ec.first_expert = first, ec.total_experts = E;
  std::vector<WeightPart> sgu{random_fp8_part(I, H, rng), random_fp8_part(I, H, rng)}, sdn{random_fp8_part(H, I, rng)};
  LinearWeight sgg = gpu().make_linear(sgu, LinearUse::Projection), sdg = gpu().make_linear(sdn, LinearUse::Projection);
  LinearWeight sgc = cpu().make_linear(sgu, LinearUse::Projection), sdc = cpu().make_linear(sdn, LinearUse::Projection);
  for (int64_t T : {1, 5, 33}) {
    const std::string tag = "_T" + std::to_string(T);
    Tensor x = randn({T, H}, rng);
    RouterOutput r = route(T, K, E);
    gpu().begin_forward();
    cpu().begin_forward();
    Tensor g = gpu().to_host_f32(gpu().moe_feed_forward(to_backend(gpu(), x), eg,
                                                        {gpu().to_device(r.topk_ids), gpu().to_device(r.topk_weights)},
                                                        &sgg, &sdg));
    Tensor c = cpu().to_host_f32(cpu().moe_feed_forward(cpu().to_device(x), ec,
                                                        {cpu().to_device(r.topk_ids), cpu().to_device(r.topk_weights)},
                                                        &sgc, &sdc));
    record("ep_vs_oracle" + tag, max_row_err(g, c), 0.1);

    Tensor xd = gpu().alloc(DType::BF16, {T, H});
    Tensor ids = gpu().alloc(DType::I32, {T, K}), wts = gpu().alloc(DType::F32, {T, K});
    for (bool pdl : {true, false}) {
      cg().set_pdl(pdl);
      Tensor graph_out;
      auto graph = gpu().capture([&] {
        graph_out = Tensor();
        graph_out = gpu().moe_feed_forward(xd, eg, {ids, wts}, &sgg, &sdg);
      });
      ASSERT_NE(graph, nullptr);
      for (int round = 0; round < 2; ++round) {
        RouterOutput rr = route(T, K, E);
        gpu().copy_into(xd, to_backend(gpu(), randn({T, H}, rng)));
        gpu().copy_into(ids, rr.topk_ids);
        gpu().copy_into(wts, rr.topk_weights);
        graph->replay();
        gpu().synchronize();
        Tensor replayed = gpu().to_host_f32(graph_out);
        gpu().begin_forward();
        Tensor eager = gpu().to_host_f32(gpu().moe_feed_forward(xd, eg, {ids, wts}, &sgg, &sdg));
        EXPECT_EQ(rel_err(replayed, eager), 0.0) << "replay" << tag << (pdl ? " pdl" : "") << " round " << round;
        EXPECT_GT(rel_err(replayed, Tensor::zeros_host(DType::F32, replayed.shape())), 0.5) << "output not written";
      }
    }
  }
}

TEST_F(MoeW8A8, FusedRouterGroupingFeedsTheExperts) {
  // The decode router (T <= 16) groups the pairs by expert in its own launch; the experts of the
  // layer then skip their alignment. Same bits as with the grouping dropped (the experts align
  // themselves), the same experts_run count, and the same through a CUDA graph.
  const int E = 64, K = 6;
  const int64_t H = 1024, I = 256;
  std::vector<ExpertParts> parts;
  for (int e = 0; e < E; ++e) parts.push_back({random_fp8_part(I, H, rng), random_fp8_part(I, H, rng), random_fp8_part(H, I, rng)});
  ExpertWeights eg = gpu().make_experts(parts);
  std::vector<WeightPart> gate{WeightPart{randn({E, H}, rng, 1.0f / std::sqrt(float(H))), {}}};
  LinearWeight router = gpu().make_linear(gate, LinearUse::Router);
  Tensor bias = gpu().make_vector(uniform({E}, rng, 0.0f, 0.1f));
  const RouterParams rp{E, K, 8, 3, true, true, 2.5f};
  for (int64_t T : {1, 7, 16}) {
    const std::string tag = "_T" + std::to_string(T);
    Tensor x = gpu().alloc(DType::BF16, {T, H});
    gpu().copy_into(x, to_backend(gpu(), randn({T, H}, rng)));
    gpu().begin_forward();
    RouterOutput r = gpu().moe_route(x, router, bias, rp);
    ASSERT_NE(r.grouping, nullptr) << tag;
    int64_t before = gpu().experts_run();
    Tensor grouped = gpu().to_host_f32(gpu().moe_feed_forward(x, eg, r, nullptr, nullptr));
    const int64_t counted_grouped = gpu().experts_run() - before;
    RouterOutput plain{r.topk_ids, r.topk_weights, nullptr};
    before = gpu().experts_run();
    Tensor aligned = gpu().to_host_f32(gpu().moe_feed_forward(x, eg, plain, nullptr, nullptr));
    const int64_t counted_aligned = gpu().experts_run() - before;
    EXPECT_EQ(rel_err(grouped, aligned), 0.0) << tag;
    Tensor ids = gpu().to_host_f32(r.topk_ids);
    std::set<int32_t> used(ids.ptr<int32_t>(), ids.ptr<int32_t>() + ids.numel());
    EXPECT_EQ(counted_grouped, int64_t(used.size())) << tag;
    EXPECT_EQ(counted_aligned, int64_t(used.size())) << tag;

    Tensor graph_out;
    auto graph = gpu().capture([&] {
      graph_out = Tensor();
      graph_out = gpu().moe_feed_forward(x, eg, gpu().moe_route(x, router, bias, rp), nullptr, nullptr);
    });
    ASSERT_NE(graph, nullptr);
    for (int round = 0; round < 2; ++round) {
      gpu().copy_into(x, to_backend(gpu(), randn({T, H}, rng)));
      graph->replay();
      gpu().synchronize();
      Tensor replayed = gpu().to_host_f32(graph_out);
      gpu().begin_forward();
      Tensor eager = gpu().to_host_f32(gpu().moe_feed_forward(x, eg, gpu().moe_route(x, router, bias, rp), nullptr, nullptr));
      EXPECT_EQ(rel_err(replayed, eager), 0.0) << "replay" << tag << " round " << round;
    }
  }
}

}  // namespace
}  // namespace dsserve::test
