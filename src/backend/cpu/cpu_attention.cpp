// CPU backend: the paged latent cache (store, gather) and MLA attention in both forms:
// expanded (per-head keys/values up-projected from the latent) and absorbed (multi-query attention
// over the 576-wide latent itself). Both are causal within each sequence: query i of a sequence
// with `prefix` cached tokens sees keys [0, prefix + i].
#include <cmath>
#include <cstring>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "core/error.h"

namespace dsserve {

namespace {
int64_t slot_of(const AttentionBatch& b, int seq, int64_t key) {
  key += b.key_shift;
  int64_t page_idx = key / b.page_size;
  DS_CHECK(page_idx < b.max_pages, "sequence {} key {} needs page {} but the page table has {}", seq, key, page_idx,
           b.max_pages);
  int32_t page = b.page_table.ptr<int32_t>()[int64_t(seq) * b.max_pages + page_idx];
  return int64_t(page) * b.page_size + key % b.page_size;
}

// Softmax over scores[0..n) in place (float64 accumulation), returns nothing.
void softmax_inplace(std::vector<double>& s, int64_t n) {
  double m = -INFINITY;
  for (int64_t j = 0; j < n; ++j) m = std::max(m, s[j]);
  double sum = 0;
  for (int64_t j = 0; j < n; ++j) sum += (s[j] = std::exp(s[j] - m));
  for (int64_t j = 0; j < n; ++j) s[j] /= sum;
}
}  // namespace

void CpuBackend::store_latent(Tensor& cache, const Tensor& c_kv, const Tensor& k_pe, const AttentionBatch& b) {
  int64_t kr = c_kv.size(1), dr = k_pe.size(1), L = cache.size(1), slots = cache.size(0);
  DS_CHECK(kr + dr == L, "store_latent: {} + {} values for a cache of width {}", kr, dr, L);
  for (int64_t t = 0; t < b.num_tokens; ++t) {
    int32_t slot = b.out_slots.ptr<int32_t>()[t];
    DS_CHECK(slot >= 0 && slot < slots, "store_latent: slot {} outside the cache's {} slots", slot, slots);
    float* dst = cache.ptr<float>() + int64_t(slot) * L;
    std::memcpy(dst, c_kv.ptr<float>() + t * c_kv.stride(0), size_t(kr) * 4);
    std::memcpy(dst + kr, k_pe.ptr<float>() + t * k_pe.stride(0), size_t(dr) * 4);
  }
}

Tensor CpuBackend::gather_latent(const Tensor& cache, const AttentionBatch& b) {
  int64_t L = cache.size(1);
  Tensor out = alloc(DType::F32, {b.h_key_start[b.num_seqs], L});
  for (int s = 0; s < b.num_seqs; ++s)
    for (int64_t j = 0; j < b.h_seq_lens[s]; ++j)
      std::memcpy(out.ptr<float>() + (b.h_key_start[s] + j) * L, cache.ptr<float>() + slot_of(b, s, j) * L,
                  size_t(L) * 4);
  return out;
}

Tensor CpuBackend::mla_attention_expanded(const Tensor& q, const Tensor& kv, const Tensor& k_pe,
                                          const AttentionBatch& b, float scale) {
  int64_t T = q.size(0), n = q.size(1), dqk = q.size(2), dr = k_pe.size(1), dn = dqk - dr;
  int64_t dv = kv.size(2) - dn;
  DS_CHECK(kv.size(1) == n && dv > 0, "mla_attention_expanded: kv {} does not match q {}", kv.shape().str(),
           q.shape().str());
  DS_CHECK(b.h_tree_mask.empty(), "mla_attention_expanded: tree masks are for the absorbed (verify) path");
  Tensor out = alloc(DType::F32, {T, n, dv});
  std::vector<double> s;
  for (int seq = 0; seq < b.num_seqs; ++seq) {
    int64_t q0 = b.h_query_start[seq], qlen = b.h_query_start[seq + 1] - q0;
    int64_t klen = b.h_seq_lens[seq], k0 = b.h_key_start[seq], prefix = klen - qlen;
    for (int64_t i = 0; i < qlen; ++i) {
      int64_t t = q0 + i, nk = prefix + i + 1;
      s.assign(size_t(nk), 0.0);
      for (int64_t h = 0; h < n; ++h) {
        const float* qv = q.ptr<float>() + t * q.stride(0) + h * q.stride(1);
        for (int64_t j = 0; j < nk; ++j) {
          const float* kn = kv.ptr<float>() + (k0 + j) * kv.stride(0) + h * kv.stride(1);
          const float* kp = k_pe.ptr<float>() + (k0 + j) * k_pe.stride(0);
          double acc = 0;
          for (int64_t d = 0; d < dn; ++d) acc += double(qv[d]) * kn[d];
          for (int64_t d = 0; d < dr; ++d) acc += double(qv[dn + d]) * kp[d];
          s[j] = acc * scale;
        }
        softmax_inplace(s, nk);
        float* o = out.ptr<float>() + (t * n + h) * dv;
        for (int64_t d = 0; d < dv; ++d) {
          double acc = 0;
          for (int64_t j = 0; j < nk; ++j) acc += s[j] * kv.ptr<float>()[(k0 + j) * kv.stride(0) + h * kv.stride(1) + dn + d];
          o[d] = float(acc);
        }
      }
    }
  }
  return out;
}

Tensor CpuBackend::mla_attention_absorbed(const Tensor& q, const Tensor& cache, const AttentionBatch& b,
                                          int64_t kv_lora_rank, float scale) {
  int64_t T = q.size(0), n = q.size(1), L = q.size(2), kr = kv_lora_rank;
  DS_CHECK(cache.size(1) == L && kr < L, "mla_attention_absorbed: query width {} vs cache width {} (kv_lora_rank {})",
           L, cache.size(1), kr);
  Tensor out = alloc(DType::F32, {T, n, kr});
  std::vector<double> s, acc(static_cast<size_t>(kr));
  std::vector<const float*> keys;
  for (int seq = 0; seq < b.num_seqs; ++seq) {
    int64_t q0 = b.h_query_start[seq], qlen = b.h_query_start[seq + 1] - q0;
    int64_t klen = b.h_seq_lens[seq], prefix = klen - qlen;
    keys.resize(size_t(klen));
    for (int64_t j = 0; j < klen; ++j) keys[j] = cache.ptr<float>() + slot_of(b, seq, j) * L;
    const uint8_t* mask = b.h_tree_mask.empty() ? nullptr : b.h_tree_mask.data() + b.h_mask_start[seq];
    const int64_t cols = mask ? b.h_mask_cols[seq] : 0, masked_from = klen - cols;
    for (int64_t i = 0; i < qlen; ++i) {
      int64_t t = q0 + i, nk = mask ? klen : prefix + i + 1;
      s.assign(size_t(nk), 0.0);
      for (int64_t h = 0; h < n; ++h) {
        const float* qv = q.ptr<float>() + t * q.stride(0) + h * q.stride(1);
        for (int64_t j = 0; j < nk; ++j) {
          if (mask && j >= masked_from && !mask[i * cols + (j - masked_from)]) {
            s[j] = -INFINITY;
            continue;
          }
          double a = 0;
          for (int64_t d = 0; d < L; ++d) a += double(qv[d]) * keys[j][d];
          s[j] = a * scale;
        }
        softmax_inplace(s, nk);
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int64_t j = 0; j < nk; ++j)
          for (int64_t d = 0; d < kr; ++d) acc[d] += s[j] * keys[j][d];
        float* o = out.ptr<float>() + (t * n + h) * kr;
        for (int64_t d = 0; d < kr; ++d) o[d] = float(acc[d]);
      }
    }
  }
  return out;
}

void CpuBackend::move_cache_slots(Tensor& cache, const Tensor& src, const Tensor& dst) {
  const int64_t layers = cache.size(0), slots = cache.size(1), L = cache.size(2), n = src.numel();
  DS_CHECK(dst.numel() == n, "move_cache_slots: {} sources, {} destinations", n, dst.numel());
  for (int64_t i = 0; i < n; ++i) {
    int32_t a = src.ptr<int32_t>()[i], b = dst.ptr<int32_t>()[i];
    DS_CHECK(a >= 0 && a < slots && b >= 0 && b < slots, "move_cache_slots: slot {} -> {} of {}", a, b, slots);
    for (int64_t l = 0; l < layers; ++l)
      std::memmove(cache.ptr<float>() + (l * slots + b) * L, cache.ptr<float>() + (l * slots + a) * L, size_t(L) * 4);
  }
}

}  // namespace dsserve
