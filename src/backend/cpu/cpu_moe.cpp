// CPU backend: the DeepSeekMoE router (noaux_tc grouped top-k on sigmoid scores, or softmax scores
// with group-limited greedy top-k) in float32, and the routed experts (tokens grouped by expert,
// one product per expert, weighted sum back into token order).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "core/error.h"

namespace dsserve {

RouterOutput CpuBackend::moe_route(const Tensor& x, const LinearWeight& gate, const Tensor& bias,
                                   const RouterParams& p) {
  int64_t T = x.size(0), E = p.num_experts, K = p.top_k, G = p.n_group, per = E / G;
  DS_CHECK(gate.out_features == E && E % G == 0 && K <= E && p.topk_group <= G,
           "moe_route: inconsistent router ({} experts, {} groups, top-{} of top-{} groups)", E, G, K, p.topk_group);
  Tensor logits = linear(x, gate);
  RouterOutput r{alloc(DType::I32, {T, K}), alloc(DType::F32, {T, K})};
  std::vector<float> score(E), choice(E), group_score(G);
  std::vector<int> order(E), gorder(G);
  std::vector<char> allowed(E);
  for (int64_t t = 0; t < T; ++t) {
    const float* l = logits.ptr<float>() + t * E;
    if (p.sigmoid) {
      for (int64_t e = 0; e < E; ++e) score[e] = 1.0f / (1.0f + std::exp(-l[e]));
    } else {
      float m = *std::max_element(l, l + E);
      double sum = 0;
      for (int64_t e = 0; e < E; ++e) sum += (score[e] = std::exp(l[e] - m));
      for (int64_t e = 0; e < E; ++e) score[e] = float(score[e] / sum);
    }
    for (int64_t e = 0; e < E; ++e) choice[e] = score[e] + (bias.data() ? bias.ptr<float>()[e] : 0.0f);
    // Group strength: sum of the two best biased scores (sigmoid/noaux_tc) or the best (softmax).
    for (int64_t g = 0; g < G; ++g) {
      std::vector<float> v(choice.begin() + g * per, choice.begin() + (g + 1) * per);
      std::sort(v.begin(), v.end(), std::greater<float>());
      group_score[g] = p.sigmoid && per >= 2 ? v[0] + v[1] : v[0];
    }
    std::iota(gorder.begin(), gorder.end(), 0);
    std::stable_sort(gorder.begin(), gorder.end(), [&](int a, int b) { return group_score[a] > group_score[b]; });
    std::fill(allowed.begin(), allowed.end(), 0);
    for (int64_t i = 0; i < p.topk_group; ++i)
      for (int64_t e = 0; e < per; ++e) allowed[gorder[i] * per + e] = 1;
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
      if (allowed[a] != allowed[b]) return allowed[a] > allowed[b];
      return choice[a] > choice[b];
    });
    double sum = 0;
    for (int64_t k = 0; k < K; ++k) sum += score[order[k]];
    for (int64_t k = 0; k < K; ++k) {
      float w = score[order[k]];
      if (p.norm_topk_prob) w = float(w / (sum + 1e-20));
      r.topk_ids.ptr<int32_t>()[t * K + k] = order[k];
      r.topk_weights.ptr<float>()[t * K + k] = w * p.routed_scaling_factor;
    }
  }
  return r;
}

Tensor CpuBackend::moe_experts(const Tensor& x, const ExpertWeights& w, const RouterOutput& route) {
  int64_t T = x.size(0), H = w.hidden, I = w.intermediate, K = route.topk_ids.size(1);
  DS_CHECK(x.size(1) == H, "moe_experts: input has {} features, experts expect {}", x.size(1), H);
  Tensor out = alloc(DType::F32, {T, H});
  // Group (token, slot) pairs by this rank's experts (all of them without expert parallelism).
  std::vector<std::vector<std::pair<int64_t, float>>> by_expert(size_t(w.num_experts));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t k = 0; k < K; ++k) {
      const int64_t id = route.topk_ids.ptr<int32_t>()[t * K + k], e = id - w.first_expert;
      DS_CHECK(id >= 0 && id < w.layer_experts(), "moe_experts: expert id {} of {}", id, w.layer_experts());
      if (e < 0 || e >= w.num_experts) continue;  // another rank's expert
      by_expert[size_t(e)].push_back({t, route.topk_weights.ptr<float>()[t * K + k]});
    }
  const float* gu = cpu_experts_gate_up(w).ptr<float>();
  const float* dn = cpu_experts_down(w).ptr<float>();
  for (int64_t e = 0; e < w.num_experts; ++e) {
    auto& toks = by_expert[e];
    if (toks.empty()) continue;
    int64_t n = int64_t(toks.size());
    Tensor xe = alloc(DType::F32, {n, H});
    for (int64_t i = 0; i < n; ++i)
      std::memcpy(xe.ptr<float>() + i * H, x.ptr<float>() + toks[i].first * x.stride(0), size_t(H) * 4);
    Tensor h = alloc(DType::F32, {n, 2 * I});
    cpu_matmul_nt(xe, gu + e * 2 * I * H, 2 * I, h.ptr<float>());
    Tensor a = silu_mul(h);
    Tensor y = alloc(DType::F32, {n, H});
    cpu_matmul_nt(a, dn + e * H * I, H, y.ptr<float>());
    for (int64_t i = 0; i < n; ++i) {
      float* o = out.ptr<float>() + toks[i].first * H;
      const float* yr = y.ptr<float>() + i * H;
      for (int64_t d = 0; d < H; ++d) o[d] += toks[i].second * yr[d];
    }
  }
  return out;
}

}  // namespace dsserve
