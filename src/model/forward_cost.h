// The physical floor of a forward, from the config alone: the bytes a decode step must read (weights
// it touches, with only the routed experts actually run, plus the latent cache it attends over) and
// the FLOPs a prefill must do (linear layers, expanded attention, last-token logits). bench-one-batch
// divides them by the machine's measured copy bandwidth and matrix rates.
// Weight bytes follow the CUDA backend's layout: 8-bit linear weights (block FP8, block or channel
// INT8) at one byte per value plus their float32 scales, AWQ weights at half a byte plus a 4-byte
// scale-and-zero word per group and row (BF16 where the config is not quantized), the absorbed MLA
// per-head matrices in BF16, the router in float32, lm_head and the embedding rows in BF16.
#pragma once
#include <cstdint>
#include <span>

#include "io/model_config.h"

namespace dsserve {

struct ForwardCost {
  double weight_bytes = 0;  // weights read
  double kv_bytes = 0;      // latent cache read
  double fp8_flops = 0;     // in 8-bit products (W8A8 FP8 or INT8: the same tensor-core rate on Hopper)
  double bf16_flops = 0;    // everything else (attention, BF16 / float32 products)
  double bytes() const { return weight_bytes + kv_bytes; }
  double flops() const { return fp8_flops + bf16_flops; }
};

// Bytes of one routed expert's weights (gate, up, down).
double routed_expert_bytes(const ModelConfig& cfg);

// How the model is split over GPUs (tensor parallel, with whole experts per GPU when expert
// parallel): the costs are then those of one GPU, the busiest alike. Split by tp: q_b, kv_b (the
// heads' W_UK / W_UV), o_proj, the dense and shared-expert MLPs, the lm_head, and the attention and
// expert work; replicated: q_a + kv_a, norms, the router, the embedding rows, and the latent cache
// every GPU reads whole (MLA's latent is shared by all heads).
struct CostSplit {
  int tp = 1;
  bool expert_parallel = false;
};

// A decode step of len(keys) sequences, one new token each, sequence s attending over keys[s] cached
// tokens (its new one included). experts_run: distinct routed experts run on this GPU, summed over
// the MoE layers (under tensor parallelism each GPU runs a 1/tp column slice of every expert; under
// expert parallelism whole experts of its own); negative: the expectation under uniform routing,
// E (1 - (1 - k/E)^B) per layer over all GPUs. kv_value_bytes: bytes of one cached latent value (2
// BF16, 1 FP8).
ForwardCost decode_step_cost(const ModelConfig& cfg, std::span<const int64_t> keys, int64_t experts_run,
                             int kv_value_bytes = 2, CostSplit split = {});

// One decoder layer's share of that decode step: its norms, attention projections (W_UK / W_UV
// included), router, routed experts (`experts` distinct ones on this GPU; negative: the uniform-
// routing expectation), shared or dense MLP, and its latent cache. decode_step_cost is the sum over
// the layers plus the embedding rows, the final norm and the lm_head (with the experts as given).
ForwardCost decode_layer_cost(const ModelConfig& cfg, int layer, std::span<const int64_t> keys, double experts,
                              int kv_value_bytes = 2, CostSplit split = {});

// A prefill of sequences of the given lengths (no cached prefix), logits for each sequence's last token.
ForwardCost prefill_cost(const ModelConfig& cfg, std::span<const int64_t> lens, CostSplit split = {});

}  // namespace dsserve
