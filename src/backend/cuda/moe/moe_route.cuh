// The router's per-token selection as a warp-level device function, shared by the routing kernel
// (moe_route.cu) and the fused router of the decode path (moe_router_fused.cu): sigmoid (noaux_tc)
// or softmax scores, group strengths, the best topk_group groups, then top_k experts on score + bias
// among them; ties to the lower index, as a stable sort. Kernel code only.
#pragma once
#include "backend/cuda/common/device_utils.cuh"
#include "backend/cuda/moe/moe_kernels.h"

namespace dsserve::cuda {

namespace moe_route_detail {

constexpr int kMaxExperts = 512, kPerLane = kMaxExperts / 32;

// Warp argmax of (key, index): larger key wins, ties to the lower index. Returns the winner's index.
__device__ __forceinline__ int warp_argmax(float key, int index) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    float k2 = __shfl_xor_sync(0xffffffffu, key, o);
    int i2 = __shfl_xor_sync(0xffffffffu, index, o);
    if (k2 > key || (k2 == key && i2 < index)) {
      key = k2;
      index = i2;
    }
  }
  return index;
}

}  // namespace moe_route_detail

// Routes token t of p (its E logits at `logit`) with one warp; s_choice [512] and s_group [32] are
// the warp's own shared memory. Writes p.topk_ids / p.topk_weights of the token.
__device__ __forceinline__ void moe_route_token(const MoeRouteParams& p, int t, const float* logit, float* s_choice,
                                                float* s_group) {
  using namespace moe_route_detail;

  const int lane = threadIdx.x & 31;
  const int E = p.experts, G = p.n_group, per = E / G;

  float score[kPerLane];
  float mx = -INFINITY;
#pragma unroll
  for (int j = 0; j < kPerLane; ++j) {
    int e = lane + 32 * j;
    score[j] = e < E ? logit[e] : -INFINITY;
    mx = fmaxf(mx, score[j]);
  }
  if (p.sigmoid) {
#pragma unroll
    for (int j = 0; j < kPerLane; ++j) score[j] = 1.0f / (1.0f + expf(-score[j]));
  } else {
    mx = warp_max(mx);
    float sum = 0.0f;
#pragma unroll
    for (int j = 0; j < kPerLane; ++j) {
      score[j] = lane + 32 * j < E ? expf(score[j] - mx) : 0.0f;
      sum += score[j];
    }
    sum = warp_sum(sum);
#pragma unroll
    for (int j = 0; j < kPerLane; ++j) score[j] /= sum;
  }
#pragma unroll
  for (int j = 0; j < kPerLane; ++j) {
    int e = lane + 32 * j;
    if (e < E) s_choice[e] = score[j] + (p.bias ? p.bias[e] : 0.0f);
  }
  __syncwarp();

  // Group strengths, one lane per group.
  float gscore = -INFINITY;
  if (lane < G) {
    float b1 = -INFINITY, b2 = -INFINITY;
    for (int i = 0; i < per; ++i) {
      float v = s_choice[lane * per + i];
      if (v > b1) {
        b2 = b1;
        b1 = v;
      } else if (v > b2) {
        b2 = v;
      }
    }
    gscore = p.sigmoid && per >= 2 ? b1 + b2 : b1;
  }
  // Best topk_group groups.
  bool group_on = false;
  for (int g = 0; g < p.topk_group; ++g) {
    int win = warp_argmax(lane < G && !group_on ? gscore : -INFINITY, lane < G && !group_on ? lane : 1 << 30);
    if (lane == win) group_on = true;
  }
  s_group[lane] = group_on ? 1.0f : 0.0f;
  __syncwarp();

  // Experts: allowed ones first (by biased score), ties to the lower index.
  float choice[kPerLane];
  bool taken[kPerLane];
#pragma unroll
  for (int j = 0; j < kPerLane; ++j) {
    int e = lane + 32 * j;
    choice[j] = e < E ? s_choice[e] : -INFINITY;
    taken[j] = e >= E;
  }
  float chosen_score = 0.0f, sum = 0.0f;
  int chosen_id = 0;
  for (int k = 0; k < p.top_k; ++k) {
    // Key: (allowed, choice) packed as choice shifted up for allowed experts: compare in two steps.
    float best = -INFINITY;
    int best_i = 1 << 30, best_allowed = -1;
#pragma unroll
    for (int j = 0; j < kPerLane; ++j) {
      if (taken[j]) continue;
      int e = lane + 32 * j;
      int allowed = s_group[e / per] > 0.0f ? 1 : 0;
      if (allowed > best_allowed || (allowed == best_allowed && (choice[j] > best || (choice[j] == best && e < best_i)))) {
        best_allowed = allowed;
        best = choice[j];
        best_i = e;
      }
    }
    // Reduce (allowed, choice, -index) across the warp.
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      int a2 = __shfl_xor_sync(0xffffffffu, best_allowed, o);
      float c2 = __shfl_xor_sync(0xffffffffu, best, o);
      int i2 = __shfl_xor_sync(0xffffffffu, best_i, o);
      if (a2 > best_allowed || (a2 == best_allowed && (c2 > best || (c2 == best && i2 < best_i)))) {
        best_allowed = a2;
        best = c2;
        best_i = i2;
      }
    }
    const int e = best_i;
    if ((e & 31) == lane) {
#pragma unroll
      for (int j = 0; j < kPerLane; ++j)
        if (lane + 32 * j == e) taken[j] = true;
    }
    // The unbiased score of the winner, from its owner lane.
    float sc = 0.0f;
#pragma unroll
    for (int j = 0; j < kPerLane; ++j)
      if (lane + 32 * j == e) sc = score[j];
    sc = __shfl_sync(0xffffffffu, sc, e & 31);
    sum += sc;
    if (lane == k) {
      chosen_id = e;
      chosen_score = sc;
    }
  }
  if (lane < p.top_k) {
    float w = chosen_score;
    if (p.norm_topk_prob) w = w / (sum + 1e-20f);
    p.topk_ids[int64_t(t) * p.top_k + lane] = chosen_id;
    p.topk_weights[int64_t(t) * p.top_k + lane] = w * p.routed_scaling_factor;
  }
}

}  // namespace dsserve::cuda
