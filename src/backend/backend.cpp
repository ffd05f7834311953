// What every backend shares: the checks of op arguments (sampling rows) and the default of the ops a
// backend may lack.
#include "backend/backend.h"

#include <cmath>

#include "backend/sampling_math.h"
#include "core/error.h"

namespace dsserve {

void Backend::move_cache_slots(Tensor&, const Tensor&, const Tensor&) {
  fail("the {} backend cannot move cache slots (needed by speculative tree drafting, --speculative-eagle-topk > 1)",
       name());
}

Activation Backend::mla_prologue(const Tensor& qkv_a, int64_t q_part, const Tensor* q_a_norm, const Tensor& kv_a_norm,
                                 float eps, const Tensor& rope_table, Tensor& layer_cache, const AttentionBatch& batch) {
  const int64_t kr = kv_a_norm.numel(), dr = rope_table.size(1);
  DS_CHECK(qkv_a.ndim() == 2 && qkv_a.size(1) == q_part + kr + dr, "mla_prologue: qkv_a {} for {} + {} + {} columns",
           qkv_a.shape().str(), q_part, kr, dr);
  Tensor c_kv = rms_norm(qkv_a.slice(1, q_part, q_part + kr), kv_a_norm, eps);
  Tensor k_pe = contiguous(qkv_a.slice(1, q_part + kr, q_part + kr + dr));  // rotated apart from qkv_a
  Tensor k_pe_heads = k_pe.unflatten(1, 1, dr);
  rope_inplace(k_pe_heads, batch.positions, rope_table);
  store_latent(layer_cache, c_kv, k_pe, batch);
  if (!q_a_norm) return {};
  return rms_norm_quant(qkv_a.slice(1, 0, q_part), *q_a_norm, eps);
}

Tensor Backend::mla_absorb_q(const Tensor& q_heads, const HeadWeight& w_uk_t, const Tensor& positions,
                             const Tensor& rope_table) {
  const int64_t T = q_heads.size(0), n = q_heads.size(1), dr = rope_table.size(1), dn = q_heads.size(2) - dr;
  DS_CHECK(q_heads.ndim() == 3 && w_uk_t.heads == n && w_uk_t.in_features == dn,
           "mla_absorb_q: queries {} for W_UK^T [{}, {}, {}] and RoPE width {}", q_heads.shape().str(), w_uk_t.heads,
           w_uk_t.out_features, w_uk_t.in_features, dr);
  Tensor q_pe = q_heads.slice(2, dn, dn + dr);
  rope_inplace(q_pe, positions, rope_table);
  Tensor q_latent = head_linear(q_heads.slice(2, 0, dn), w_uk_t);  // [T, n, kv_lora_rank]
  return concat_cols(q_latent.merge_leading(), q_pe.merge_leading()).unflatten(0, T, n);
}

void check_sampling_rows(std::span<const SamplingRow> rows, int64_t vocab) {
  auto check_token = [&](size_t i, const char* list, int32_t t) {
    DS_CHECK(t >= 0 && t < vocab, "sample: row {}: {} holds token {}, outside the vocabulary [0, {})", i, list, t, vocab);
  };
  for (size_t i = 0; i < rows.size(); ++i) {
    const SamplingRow& r = rows[i];
    // The ranges of SamplingParams::validate (sampling_math.h), which every request passed.
    DS_CHECK(sampling::valid_temperature(r.temperature) && sampling::valid_top_p(r.top_p) &&
                 sampling::valid_top_k(r.top_k) && sampling::valid_min_p(r.min_p) &&
                 sampling::valid_penalty(r.frequency_penalty) && sampling::valid_penalty(r.presence_penalty) &&
                 sampling::valid_repetition_penalty(r.repetition_penalty),
             "sample: row {}: a sampling parameter is out of range (temperature {}, top_p {}, top_k {}, min_p {}, "
             "frequency_penalty {}, presence_penalty {}, repetition_penalty {})",
             i, r.temperature, r.top_p, r.top_k, r.min_p, r.frequency_penalty, r.presence_penalty,
             r.repetition_penalty);
    DS_CHECK(r.top_logprobs >= 0 && r.top_logprobs <= sampling::kMaxTopLogprobs,
             "sample: row {}: top_logprobs {} (expected 0 to {})", i, r.top_logprobs, sampling::kMaxTopLogprobs);
    for (auto& [t, b] : r.logit_bias) check_token(i, "logit_bias", t);
    for (auto& [t, n] : r.output_counts) check_token(i, "output_counts", t);
    for (int32_t t : r.seen) check_token(i, "seen", t);
    for (int32_t t : r.suppressed) check_token(i, "suppressed", t);
    if (!r.allowed.empty()) {
      DS_CHECK(int64_t(r.allowed.size()) == (vocab + 31) / 32, "sample: row {}: allowed mask of {} words (expected {})", i,
               r.allowed.size(), (vocab + 31) / 32);
      bool any = false;
      for (int64_t w = 0; w < int64_t(r.allowed.size()) && !any; ++w) {
        const uint32_t valid = w == vocab / 32 ? (uint32_t(1) << (vocab % 32)) - 1 : ~uint32_t(0);
        any = (r.allowed[size_t(w)] & valid) != 0;
      }
      DS_CHECK(any, "sample: row {}: the allowed mask allows no token", i);
    }
  }
}

}  // namespace dsserve
