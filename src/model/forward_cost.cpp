// Floors of a forward from the config (see forward_cost.h).
#include "model/forward_cost.h"

#include <algorithm>
#include <cmath>

namespace dsserve {

namespace {

// A linear [out, in] as the CUDA backend keeps it: 8-bit values (block FP8 or INT8: 1 byte and a
// float32 scale per 128x128 block; channel INT8: 1 byte and a float32 scale per row) where the
// config quantizes and in % 128 == 0; AWQ 4-bit values with one packed scale-and-zero word (4
// bytes) per group of input channels and row where in % group == 0; else BF16.
struct Linear {
  enum Kind { Bf16, Block8, Channel8, Awq4 };
  double out, in;
  Kind kind = Bf16;
  double group = 128;
  bool eight_bit() const { return kind == Block8 || kind == Channel8; }
  double bytes() const {
    switch (kind) {
      case Block8: return out * in + std::ceil(out / 128) * std::ceil(in / 128) * 4;
      case Channel8: return out * in + out * 4;
      case Awq4: return out * in / 2 + out * (in / group) * 4;
      default: return out * in * 2;
    }
  }
};

Linear proj(const ModelConfig& c, double out, double in) {
  Linear l{out, in};
  if (!c.quantization) return l;
  const QuantMethod m = c.quantization->method;
  if (m == QuantMethod::Awq) {
    l.group = c.quantization->group_size;
    if (int64_t(in) % int64_t(l.group) == 0) l.kind = Linear::Awq4;
  } else if (int64_t(in) % 128 == 0) {
    l.kind = m == QuantMethod::ChannelInt8 ? Linear::Channel8 : Linear::Block8;
  }
  return l;
}

// The per-token linear layers of one decoder layer (expanded or absorbed attention aside).
struct LayerLinears {
  Linear qkv_a, q_b, kv_b, o_proj, ffn_gate_up, ffn_down;
  bool has_q_b = false, moe = false;
};

LayerLinears layer_linears(const ModelConfig& c, int layer) {
  const double H = c.hidden_size, n = c.num_attention_heads, kr = c.kv_lora_rank, dr = c.qk_rope_head_dim;
  const double q_out = c.q_lora_rank ? double(*c.q_lora_rank) : n * c.qk_head_dim();
  LayerLinears l;
  l.qkv_a = proj(c, q_out + kr + dr, H);
  l.has_q_b = c.q_lora_rank.has_value();
  if (l.has_q_b) l.q_b = proj(c, n * c.qk_head_dim(), double(*c.q_lora_rank));
  l.kv_b = proj(c, n * (c.qk_nope_head_dim + c.v_head_dim), kr);
  l.o_proj = proj(c, H, n * c.v_head_dim);
  l.moe = c.is_moe_layer(layer);
  const double inter = l.moe ? double(c.n_shared_experts) * c.moe_intermediate_size : double(c.intermediate_size);
  l.ffn_gate_up = proj(c, 2 * inter, H);
  l.ffn_down = proj(c, H, inter);
  return l;
}

void add_flops(ForwardCost& f, const Linear& l, double rows) {
  (l.eight_bit() ? f.fp8_flops : f.bf16_flops) += 2 * l.out * l.in * rows;
}

}  // namespace

double routed_expert_bytes(const ModelConfig& c) {
  const double H = c.hidden_size, I = c.moe_intermediate_size;
  return proj(c, 2 * I, H).bytes() + proj(c, H, I).bytes();
}

// One decode layer at batch B, all but its routed experts' weight bytes: norms, the attention
// projections and absorbed heads, the router, the routed experts' products, the dense or shared MLP.
// f: replicated on every GPU; s: split over the tp GPUs.
void add_decode_layer(ForwardCost& f, ForwardCost& s, const ModelConfig& c, const LayerLinears& l, double B) {
  const double H = c.hidden_size, n = c.num_attention_heads, kr = c.kv_lora_rank;
  f.weight_bytes += 2 * H * 4 + kr * 4 + (l.has_q_b ? double(*c.q_lora_rank) * 4 : 0);  // norms (float32)
  f.weight_bytes += l.qkv_a.bytes();
  s.weight_bytes += (l.has_q_b ? l.q_b.bytes() : 0) + l.o_proj.bytes();
  s.weight_bytes += 2 * n * kr * (c.qk_nope_head_dim + c.v_head_dim);  // W_UK^T and W_UV, BF16
  add_flops(f, l.qkv_a, B);
  if (l.has_q_b) add_flops(s, l.q_b, B);
  add_flops(s, l.o_proj, B);
  s.bf16_flops += 2 * B * n * kr * (c.qk_nope_head_dim + c.v_head_dim);
  if (l.moe) {
    const double E = c.n_routed_experts;
    f.weight_bytes += E * H * 4 + E * 4;  // router (float32) and its bias
    f.bf16_flops += 2 * B * E * H;
    const Linear gu = proj(c, 2.0 * c.moe_intermediate_size, H), dn = proj(c, H, c.moe_intermediate_size);
    add_flops(s, gu, B * c.num_experts_per_tok);
    add_flops(s, dn, B * c.num_experts_per_tok);
  }
  if (!l.moe || c.n_shared_experts > 0) {
    s.weight_bytes += l.ffn_gate_up.bytes() + l.ffn_down.bytes();
    add_flops(s, l.ffn_gate_up, B);
    add_flops(s, l.ffn_down, B);
  }
}

// Routed experts run by B tokens when nobody counted them: each expert unpicked by every token.
double expected_experts(const ModelConfig& c, double B) {
  const double E = c.n_routed_experts;
  return E * (1 - std::pow(1 - c.num_experts_per_tok / E, B));
}

ForwardCost decode_step_cost(const ModelConfig& c, std::span<const int64_t> keys, int64_t experts_run,
                             int kv_value_bytes, CostSplit split) {
  ForwardCost f, s;  // f: replicated on every GPU; s: split over the tp GPUs
  const double B = double(keys.size()), H = c.hidden_size, n = c.num_attention_heads, kr = c.kv_lora_rank;
  const double tp = std::max(1, split.tp);
  double experts = 0;
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    const LayerLinears l = layer_linears(c, i);
    add_decode_layer(f, s, c, l, B);
    if (l.moe) experts += expected_experts(c, B);
  }
  // Routed experts: this GPU's count of whole experts (expert parallel), else column slices of all.
  if (experts_run >= 0 && split.expert_parallel)
    f.weight_bytes += double(experts_run) * routed_expert_bytes(c);
  else
    s.weight_bytes += (experts_run >= 0 ? double(experts_run) : experts) * routed_expert_bytes(c);
  f.weight_bytes += H * 4 + B * H * 2;                // final norm, embedding rows
  s.weight_bytes += double(c.vocab_size) * H * 2;     // lm_head
  s.bf16_flops += 2 * B * double(c.vocab_size) * H;
  double total_keys = 0;
  for (int64_t k : keys) total_keys += double(k);
  f.kv_bytes = total_keys * c.num_hidden_layers * c.latent_dim() * kv_value_bytes;
  s.bf16_flops += 2 * total_keys * c.num_hidden_layers * n * (c.latent_dim() + kr);
  f.weight_bytes += s.weight_bytes / tp;
  f.fp8_flops += s.fp8_flops / tp;
  f.bf16_flops += s.bf16_flops / tp;
  return f;
}

ForwardCost decode_layer_cost(const ModelConfig& c, int layer, std::span<const int64_t> keys, double experts,
                              int kv_value_bytes, CostSplit split) {
  ForwardCost f, s;  // f: replicated on every GPU; s: split over the tp GPUs
  const double B = double(keys.size()), n = c.num_attention_heads, kr = c.kv_lora_rank;
  const double tp = std::max(1, split.tp);
  const LayerLinears l = layer_linears(c, layer);
  add_decode_layer(f, s, c, l, B);
  if (l.moe) {
    const double ran = experts >= 0 ? experts : expected_experts(c, B);
    (split.expert_parallel && experts >= 0 ? f : s).weight_bytes += ran * routed_expert_bytes(c);
  }
  double total_keys = 0;
  for (int64_t k : keys) total_keys += double(k);
  f.kv_bytes = total_keys * c.latent_dim() * kv_value_bytes;
  s.bf16_flops += 2 * total_keys * n * (c.latent_dim() + kr);
  f.weight_bytes += s.weight_bytes / tp;
  f.fp8_flops += s.fp8_flops / tp;
  f.bf16_flops += s.bf16_flops / tp;
  return f;
}

ForwardCost prefill_cost(const ModelConfig& c, std::span<const int64_t> lens, CostSplit split) {
  ForwardCost f, s;  // f: replicated on every GPU (q_a + kv_a, router); s: split over the tp GPUs
  double T = 0, pairs = 0;
  for (int64_t L : lens) {
    T += double(L);
    pairs += double(L) * double(L + 1) / 2;
  }
  const double H = c.hidden_size, n = c.num_attention_heads;
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    const LayerLinears l = layer_linears(c, i);
    add_flops(f, l.qkv_a, T);
    if (l.has_q_b) add_flops(s, l.q_b, T);
    add_flops(s, l.kv_b, T);  // every key is a new token
    add_flops(s, l.o_proj, T);
    s.bf16_flops += 2 * pairs * n * (c.qk_head_dim() + c.v_head_dim);
    if (l.moe) {
      f.bf16_flops += 2 * T * c.n_routed_experts * H;
      const Linear gu = proj(c, 2.0 * c.moe_intermediate_size, H), dn = proj(c, H, c.moe_intermediate_size);
      add_flops(s, gu, T * c.num_experts_per_tok);  // uniform routing: each GPU's share under EP too
      add_flops(s, dn, T * c.num_experts_per_tok);
    }
    if (!l.moe || c.n_shared_experts > 0) {
      add_flops(s, l.ffn_gate_up, T);
      add_flops(s, l.ffn_down, T);
    }
  }
  s.bf16_flops += 2 * double(lens.size()) * double(c.vocab_size) * H;
  const double tp = std::max(1, split.tp);
  f.fp8_flops += s.fp8_flops / tp;
  f.bf16_flops += s.bf16_flops / tp;
  return f;
}

}  // namespace dsserve
