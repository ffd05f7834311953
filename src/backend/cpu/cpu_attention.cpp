// CPU backend: the paged latent cache (store, gather) and MLA attention in both forms:
// expanded (per-head keys/values up-projected from the latent) and absorbed (multi-query attention
// over the 576-wide latent itself). Both are causal within each sequence: query i of a sequence
// with `prefix` cached tokens sees keys [0, prefix + i]. The cache is float32, or FP8 (e4m3 / e5m2,
// scale 1.0): stored values are rounded to FP8 (saturating) and widened back to float32 when read.
#include <cmath>
#include <cstring>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "core/error.h"

namespace dsserve {

namespace {
void check_cache_dtype(const Tensor& cache, const char* op) {
  const DType t = cache.dtype();
  DS_CHECK(t == DType::F32 || t == DType::F8_E4M3 || t == DType::F8_E5M2,
           "{}: cache of {} on the CPU (expected F32, F8_E4M3 or F8_E5M2)", op, dtype_name(t));
}

// Row `slot` of a [slots, L] cache as float32 (a view of a float32 cache, or widened into buf).
const float* read_row(const Tensor& cache, int64_t slot, int64_t L, float* buf) {
  if (cache.dtype() == DType::F32) return cache.ptr<float>() + slot * L;
  convert_to_f32(cache.dtype(), static_cast<const uint8_t*>(cache.data()) + slot * L, buf, size_t(L));
  return buf;
}

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
  check_cache_dtype(cache, "store_latent");
  const size_t esize = dtype_size(cache.dtype());
  for (int64_t t = 0; t < b.num_tokens; ++t) {
    int32_t slot = b.out_slots.ptr<int32_t>()[t];
    DS_CHECK(slot >= 0 && slot < slots, "store_latent: slot {} outside the cache's {} slots", slot, slots);
    uint8_t* dst = static_cast<uint8_t*>(cache.data()) + int64_t(slot) * L * esize;
    convert_from_f32(cache.dtype(), c_kv.ptr<float>() + t * c_kv.stride(0), dst, size_t(kr));
    convert_from_f32(cache.dtype(), k_pe.ptr<float>() + t * k_pe.stride(0), dst + kr * esize, size_t(dr));
  }
}

Tensor CpuBackend::gather_latent(const Tensor& cache, const AttentionBatch& b) {
  int64_t L = cache.size(1);
  check_cache_dtype(cache, "gather_latent");
  Tensor out = alloc(DType::F32, {b.h_key_start[b.num_seqs], L});
  for (int s = 0; s < b.num_seqs; ++s)
    for (int64_t j = 0; j < b.h_seq_lens[s]; ++j) {
      float* dst = out.ptr<float>() + (b.h_key_start[s] + j) * L;
      const float* row = read_row(cache, slot_of(b, s, j), L, dst);
      if (row != dst) std::memcpy(dst, row, size_t(L) * 4);
    }
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
  std::vector<double> s, acc(static_cast<size_t>(dv));
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
        // Each output column sums over the keys in key order; the keys go outer so rows are read in order.
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int64_t j = 0; j < nk; ++j) {
          const float* v = kv.ptr<float>() + (k0 + j) * kv.stride(0) + h * kv.stride(1) + dn;
          for (int64_t d = 0; d < dv; ++d) acc[d] += s[j] * v[d];
        }
        float* o = out.ptr<float>() + (t * n + h) * dv;
        for (int64_t d = 0; d < dv; ++d) o[d] = float(acc[d]);
      }
      progress_.fetch_add(1, std::memory_order_relaxed);
    }
  }
  return out;
}

Tensor CpuBackend::mla_attention_absorbed(const Tensor& q, const Tensor& cache, const AttentionBatch& b,
                                          int64_t kv_lora_rank, float scale) {
  int64_t T = q.size(0), n = q.size(1), L = q.size(2), kr = kv_lora_rank;
  DS_CHECK(cache.size(1) == L && kr < L, "mla_attention_absorbed: query width {} vs cache width {} (kv_lora_rank {})",
           L, cache.size(1), kr);
  check_cache_dtype(cache, "mla_attention_absorbed");
  Tensor out = alloc(DType::F32, {T, n, kr});
  std::vector<double> s, acc(static_cast<size_t>(kr));
  std::vector<const float*> keys;
  std::vector<float> widened;  // an FP8 cache's keys of one sequence, as float32
  for (int seq = 0; seq < b.num_seqs; ++seq) {
    int64_t q0 = b.h_query_start[seq], qlen = b.h_query_start[seq + 1] - q0;
    int64_t klen = b.h_seq_lens[seq], prefix = klen - qlen;
    keys.resize(size_t(klen));
    if (cache.dtype() != DType::F32) widened.resize(size_t(klen * L));
    for (int64_t j = 0; j < klen; ++j)
      keys[j] = read_row(cache, slot_of(b, seq, j), L, widened.empty() ? nullptr : widened.data() + j * L);
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
      progress_.fetch_add(1, std::memory_order_relaxed);
    }
  }
  return out;
}

void CpuBackend::move_cache_slots(Tensor& cache, const Tensor& src, const Tensor& dst) {
  const int64_t layers = cache.size(0), slots = cache.size(1), n = src.numel();
  const int64_t row_bytes = cache.size(2) * int64_t(dtype_size(cache.dtype()));
  DS_CHECK(dst.numel() == n, "move_cache_slots: {} sources, {} destinations", n, dst.numel());
  for (int64_t i = 0; i < n; ++i) {
    int32_t a = src.ptr<int32_t>()[i], b = dst.ptr<int32_t>()[i];
    DS_CHECK(a >= 0 && a < slots && b >= 0 && b < slots, "move_cache_slots: slot {} -> {} of {}", a, b, slots);
    uint8_t* base = static_cast<uint8_t*>(cache.data());
    for (int64_t l = 0; l < layers; ++l)
      std::memmove(base + (l * slots + b) * row_bytes, base + (l * slots + a) * row_bytes, size_t(row_bytes));
  }
}

}  // namespace dsserve
