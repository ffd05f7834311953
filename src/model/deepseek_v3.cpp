// DeepSeek-V3 forward (see deepseek_v3.h). Reads top to bottom like the architecture:
// embedding -> [RMSNorm -> MLA -> residual -> RMSNorm -> MLP or MoE -> residual] x L -> norm -> lm_head.
#include "model/deepseek_v3.h"

#include "core/error.h"
#include "model/rope.h"

namespace dsserve {

DeepseekV3Model::DeepseekV3Model(ModelConfig cfg, Backend& backend, WeightSource& weights, int64_t context_len,
                                 const LoadOptions& opt)
    : cfg_(std::move(cfg)), be_(backend), context_len_(context_len), shard_(opt.shard) {
  DS_CHECK(cfg_.num_attention_heads % shard_.attention_world() == 0, "{} GPUs per attention group: {} attention heads "
           "do not divide", shard_.attention_world(), cfg_.num_attention_heads);
  local_heads_ = cfg_.num_attention_heads / shard_.attention_world();
  w_ = load_model_weights(cfg_, weights, be_, opt);
  rope_table_ = be_.make_rope_table(build_rope_table(cfg_, context_len_));
  router_ = RouterParams{cfg_.n_routed_experts,
                         cfg_.num_experts_per_tok,
                         cfg_.topk_method == "greedy" ? 1 : cfg_.n_group,
                         cfg_.topk_method == "greedy" ? 1 : cfg_.topk_group,
                         cfg_.scoring_func == "sigmoid",
                         cfg_.norm_topk_prob,
                         float(cfg_.routed_scaling_factor)};
  softmax_scale_ = float(cfg_.softmax_scale());
}

DeepseekV3Model::~DeepseekV3Model() = default;

LatentCache DeepseekV3Model::allocate_cache(int64_t num_pages, int page_size, bool mtp, std::optional<DType> dtype) {
  int layers = mtp ? std::max<int>(1, int(w_.mtp.size())) : cfg_.num_hidden_layers;
  LatentCache c;
  c.page_size = page_size;
  c.num_pages = num_pages;
  c.data = be_.alloc(dtype.value_or(be_.activation_dtype()), {layers, num_pages * page_size, cfg_.latent_dim()});
  return c;
}

void DeepseekV3Model::check_batch(const ForwardBatch& b, int page_size) const {
  const int B = b.num_seqs(), T = b.num_tokens();
  DS_CHECK(B >= 1 && int(b.prefix_lens.size()) == B && int(b.positions.size()) == T &&
               int(b.out_cache_slots.size()) == T && b.query_start.back() == T &&
               int(b.page_table.size()) == B * b.max_pages,
           "malformed ForwardBatch: {} sequences, {} tokens, {} positions, {} slots, {} page-table entries", B, T,
           b.positions.size(), b.out_cache_slots.size(), b.page_table.size());
  for (int s = 0; s < B; ++s) {
    const int64_t len = b.prefix_lens[s] + b.query_start[s + 1] - b.query_start[s];
    DS_CHECK(len <= int64_t(b.max_pages) * page_size, "sequence {} has {} tokens but only {} pages of {} in its page table",
             s, len, b.max_pages, page_size);
    DS_CHECK(len + b.key_shift <= int64_t(b.max_pages) * page_size,
             "sequence {} reads {} cache positions but has pages for {}", s, len + b.key_shift,
             int64_t(b.max_pages) * page_size);
  }
  if (!b.tree_mask.empty()) {
    DS_CHECK(int(b.mask_cols.size()) == B, "tree mask needs mask_cols for each of the {} sequences", B);
    int64_t entries = 0;
    for (int s = 0; s < B; ++s) {
      const int64_t q = b.query_start[s + 1] - b.query_start[s], len = b.prefix_lens[s] + q;
      DS_CHECK(b.mask_cols[s] >= q && b.mask_cols[s] <= len, "sequence {}: mask over {} keys for {} queries and {} keys",
               s, b.mask_cols[s], q, len);
      entries += q * b.mask_cols[s];
    }
    DS_CHECK(int64_t(b.tree_mask.size()) == entries, "tree mask has {} entries, the batch needs {}", b.tree_mask.size(),
             entries);
  }
  for (int t = 0; t < T; ++t)
    DS_CHECK(b.positions[t] >= 0 && b.positions[t] < context_len_, "token {} has position {} outside the context of {}",
             t, b.positions[t], context_len_);
}

AttentionBatch DeepseekV3Model::upload(const ForwardBatch& b, int page_size) {
  check_batch(b, page_size);
  const int B = b.num_seqs(), T = b.num_tokens();
  AttentionBatch ab;
  ab.num_seqs = B;
  ab.num_tokens = T;
  ab.page_size = page_size;
  ab.max_pages = b.max_pages;
  ab.h_query_start = b.query_start;
  ab.h_seq_lens.resize(B);
  ab.h_key_start.assign(B + 1, 0);
  for (int s = 0; s < B; ++s) {
    ab.h_seq_lens[s] = b.prefix_lens[s] + b.query_start[s + 1] - b.query_start[s];
    ab.h_key_start[s + 1] = ab.h_key_start[s] + ab.h_seq_lens[s];
  }
  ab.key_shift = b.key_shift;
  if (!b.tree_mask.empty()) {
    ab.h_mask_cols = b.mask_cols;
    ab.h_mask_start.assign(B + 1, 0);
    for (int s = 0; s < B; ++s)
      ab.h_mask_start[s + 1] = int32_t(ab.h_mask_start[s] + (b.query_start[s + 1] - b.query_start[s]) * b.mask_cols[s]);
    ab.mask_cols = be_.upload_i32(ab.h_mask_cols, {B});
    ab.h_tree_mask = b.tree_mask;
    ab.mask_start = be_.upload_i32(ab.h_mask_start, {B + 1});
    std::vector<int32_t> as_i32(b.tree_mask.begin(), b.tree_mask.end());
    ab.tree_mask = be_.upload_i32(as_i32, {int64_t(as_i32.size())});
  }
  ab.positions = be_.upload_i32(b.positions, {T});
  ab.out_slots = be_.upload_i32(b.out_cache_slots, {T});
  ab.query_start = be_.upload_i32(b.query_start, {B + 1});
  ab.seq_lens = be_.upload_i32(ab.h_seq_lens, {B});
  ab.key_start = be_.upload_i32(ab.h_key_start, {B + 1});
  ab.page_table = be_.upload_i32(b.page_table, {B, b.max_pages});
  return ab;
}

// Multi-head latent attention. The new tokens' latents (c_kv after its norm, k_pe after RoPE) go
// into the cache first; both forms then read every key of the sequence from the cache.
Tensor DeepseekV3Model::attention(const Activation& x, const MlaWeights& w, const AttentionBatch& ab, AttentionMode mode,
                                  Tensor layer_cache) {
  const int64_t T = x.tokens(), n = local_heads_, dn = cfg_.qk_nope_head_dim,
                dr = cfg_.qk_rope_head_dim, dv = cfg_.v_head_dim, kr = cfg_.kv_lora_rank, dqk = dn + dr;
  const float eps = float(cfg_.rms_norm_eps);
  const int64_t q_part = cfg_.q_lora_rank ? *cfg_.q_lora_rank : cfg_.num_attention_heads * dqk;

  Tensor qkv_a = be_.linear(x, w.qkv_a);  // [T, q_part + kr + dr]
  // The new tokens' latents (c_kv after its norm, k_pe after RoPE) go into the cache; the query
  // part after its norm feeds q_b.
  Activation q_a = be_.mla_prologue(qkv_a, q_part, w.q_b ? &*w.q_a_norm : nullptr, w.kv_a_norm, eps, rope_table_,
                                    layer_cache, ab);
  Tensor q = w.q_b ? be_.linear(q_a, *w.q_b) : be_.contiguous(qkv_a.slice(1, 0, q_part));
  Tensor q_heads = q.unflatten(1, n, dqk);  // [T, n, dn + dr]

  Tensor o;  // [T, n, dv]
  if (mode == AttentionMode::Absorbed) {
    Tensor q_full = be_.mla_absorb_q(q_heads, w.w_uk_t, ab.positions, rope_table_);  // [T, n, kr + dr]
    Tensor latent_out = be_.mla_attention_absorbed(q_full, layer_cache, ab, kr, softmax_scale_);  // [T, n, kr]
    o = be_.head_linear(latent_out, w.w_uv);
  } else {
    Tensor q_pe = q_heads.slice(2, dn, dqk);
    be_.rope_inplace(q_pe, ab.positions, rope_table_);
    Tensor keys = be_.gather_latent(layer_cache, ab);                          // [K, kr + dr]
    Tensor kv = be_.linear(keys.slice(1, 0, kr), w.kv_b).unflatten(1, n, dn + dv);  // [K, n, dn + dv]
    o = be_.mla_attention_expanded(q_heads, kv, keys.slice(1, kr, kr + dr), ab, softmax_scale_);
  }
  Tensor out = be_.linear(o.reshape({T, n * dv}), w.o_proj);
  be_.all_reduce_sum(out);  // each rank holds its heads' share of o_proj's product (within its attention group)
  return out;
}

Tensor DeepseekV3Model::mlp(const Activation& x, const MlpWeights& w) { return be_.mlp(x, w.gate_up, w.down); }

// On a tensor-parallel rank every MLP (dense, shared, each routed expert) holds a slice of the
// intermediate columns, so the outputs are partial sums, reduced once per layer.
Tensor DeepseekV3Model::feed_forward(const Activation& x, const DecoderLayerWeights& w) {
  if (shard_.attention_groups > 1) return feed_forward_all_groups(x, w);
  Tensor y = feed_forward_part(x, w);
  be_.all_reduce_sum(y);
  return y;
}

// Data-parallel attention: every rank holds a slice of every MLP, so the MLP runs over the tokens
// of all attention groups (gathered), its partial sums are reduced over all ranks, and each group
// keeps its own rows.
Tensor DeepseekV3Model::feed_forward_all_groups(const Activation& x, const DecoderLayerWeights& w) {
  const std::vector<int32_t>& counts = group_tokens_;
  const int g = shard_.attention_group();
  int64_t first = 0;
  for (int k = 0; k < g; ++k) first += counts[size_t(k)];
  Tensor all = be_.all_gather_rows_groups(x.x, counts);  // [tokens of every group, hidden]
  Tensor y = feed_forward_part(all, w);
  be_.all_reduce_sum_world(y);
  return y.slice(0, first, first + counts[size_t(g)]);
}

// This rank's share of the MLP or MoE output (a partial sum over the ranks).
Tensor DeepseekV3Model::feed_forward_part(const Activation& x, const DecoderLayerWeights& w) {
  Tensor y;
  if (w.mlp) {
    y = mlp(x, *w.mlp);
  } else {
    const MoeWeights& moe = *w.moe;
    RouterOutput route = be_.moe_route(x.x, moe.router, moe.score_bias, router_);
    y = be_.moe_feed_forward(x, moe.experts, route, moe.shared ? &moe.shared->gate_up : nullptr,
                             moe.shared ? &moe.shared->down : nullptr);  // routed experts + shared expert
  }
  return y;
}

Tensor DeepseekV3Model::lm_head(const Tensor& rows) {
  Tensor part = be_.linear(rows, w_.lm_head);
  // each rank holds a slice of the vocabulary (split within its attention group)
  return shard_.attention_world() > 1 ? be_.all_gather_cols(part) : part;
}

Tensor DeepseekV3Model::logits(const Tensor& normed, const ForwardBatch& b) {
  Tensor rows = be_.upload_i32(b.logit_rows, {int64_t(b.logit_rows.size())});
  return lm_head(be_.gather_rows(normed, rows));
}

Tensor DeepseekV3Model::decoder(const AttentionBatch& ab, const Tensor& ids, AttentionMode mode, LatentCache& cache) {
  const float eps = float(cfg_.rms_norm_eps);
  Tensor h = be_.embedding(w_.embed_tokens, ids);  // residual stream
  Activation x = be_.rms_norm_quant(h, w_.layers[0].input_norm, eps);  // the norms quantize for FP8 linears
  for (int i = 0;; ++i) {
    be_.layer_mark(i);  // profiling only
    const DecoderLayerWeights& layer = w_.layers[i];
    Tensor a = attention(x, layer.attn, ab, mode, cache.layer(i));
    x = be_.add_rms_norm_quant(h, a, layer.post_attention_norm, eps);
    Tensor f = feed_forward(x, layer);
    layers_run_.fetch_add(1, std::memory_order_relaxed);
    if (i + 1 == cfg_.num_hidden_layers) {
      Tensor out = be_.add_rms_norm(h, f, w_.final_norm, eps);  // lm_head reads BF16 rows
      be_.layer_mark(i + 1);
      return out;
    }
    x = be_.add_rms_norm_quant(h, f, w_.layers[i + 1].input_norm, eps);
  }
}

ForwardOutput DeepseekV3Model::forward(const ForwardBatch& b, LatentCache& cache) {
  be_.begin_forward();
  AttentionBatch ab = upload(b, cache.page_size);
  Tensor x = decoder(ab, be_.upload_i32(b.input_ids, {b.num_tokens()}), b.attention, cache);
  return {logits(x, b), x};
}

ForwardOutput DeepseekV3Model::forward_all_groups(const ForwardBatch& b, LatentCache& cache,
                                                  std::span<const int32_t> group_tokens) {
  DS_CHECK(int(group_tokens.size()) == shard_.attention_groups &&
               group_tokens[size_t(shard_.attention_group())] == b.num_tokens(),
           "data-parallel forward: {} token counts for {} attention groups, group {} has {} tokens",
           group_tokens.size(), shard_.attention_groups, shard_.attention_group(), b.num_tokens());
  group_tokens_.assign(group_tokens.begin(), group_tokens.end());
  if (b.num_tokens() > 0) return forward(b, cache);
  // No work here: join every layer's MLP over the other groups' tokens.
  be_.begin_forward();
  const Tensor none(nullptr, be_.activation_dtype(), {0, cfg_.hidden_size}, be_.device());
  for (int i = 0; i < cfg_.num_hidden_layers; ++i) feed_forward_all_groups(none, w_.layers[size_t(i)]);
  return {};
}

ForwardOutput DeepseekV3Model::decode_rows(const AttentionBatch& ab, const Tensor& ids, LatentCache& cache) {
  // Data-parallel attention: every group runs the same rows (a recorded size), so the MLP's gather is fixed.
  if (shard_.attention_groups > 1) group_tokens_.assign(size_t(shard_.attention_groups), ab.num_tokens);
  Tensor x = decoder(ab, ids, AttentionMode::Absorbed, cache);
  return {lm_head(x), x};
}

ForwardOutput DeepseekV3Model::draft_rows(const AttentionBatch& ab, const Tensor& ids, const Tensor& prev_hidden,
                                          LatentCache& mtp_cache) {
  Tensor x = mtp_layer(ab, ids, prev_hidden, AttentionMode::Absorbed, mtp_cache);
  return {lm_head(x), x};
}

ForwardOutput DeepseekV3Model::forward_mtp(const ForwardBatch& b, const Tensor& prev_hidden, LatentCache& cache) {
  DS_CHECK(has_mtp(), "the model has no multi-token-prediction layer loaded");
  DS_CHECK(prev_hidden.device() == be_.device() && prev_hidden.ndim() == 2 && prev_hidden.size(0) == b.num_tokens(),
           "forward_mtp: expected [{}, hidden] previous hidden states on the model's device, found {}", b.num_tokens(),
           prev_hidden.shape().str());
  be_.begin_forward();
  AttentionBatch ab = upload(b, cache.page_size);
  Tensor x = mtp_layer(ab, be_.upload_i32(b.input_ids, {b.num_tokens()}), prev_hidden, b.attention, cache);
  return {logits(x, b), x};
}

Tensor DeepseekV3Model::mtp_layer(const AttentionBatch& ab, const Tensor& ids, const Tensor& prev_hidden,
                                  AttentionMode mode, LatentCache& cache) {
  const MtpWeights& m = w_.mtp[0];
  const float eps = float(cfg_.rms_norm_eps);
  Tensor e = be_.rms_norm(be_.embedding(w_.embed_tokens, ids), m.enorm, eps);
  Tensor h = be_.linear(be_.concat_cols(e, be_.rms_norm(prev_hidden, m.hnorm, eps)), m.eh_proj);
  Activation x = be_.rms_norm_quant(h, m.layer.input_norm, eps);
  Tensor a = attention(x, m.layer.attn, ab, mode, cache.layer(0));
  x = be_.add_rms_norm_quant(h, a, m.layer.post_attention_norm, eps);
  return be_.add_rms_norm(h, feed_forward(x, m.layer), m.head_norm, eps);
}

}  // namespace dsserve
