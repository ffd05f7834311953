// CUDA backend: the paged latent cache (store, gather, move; BF16, F32 or FP8 with scale 1.0) and
// MLA attention in both forms, expanded (prefill) and absorbed (decode: reads an FP8 cache as is).
// Kernels: kv_cache/, attention_prefill/, mla_decode/.
#include <algorithm>

#include "backend/cuda/attention_prefill/mla_expanded.h"
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/kv_cache/latent_cache.h"
#include "backend/cuda/kv_cache/latent_prologue.h"
#include "backend/cuda/mla_decode/mla_absorbed.h"
#include "core/error.h"

namespace dsserve::cuda {

namespace {
bool is_latent_cache_dtype(DType t) {
  return t == DType::F32 || t == DType::BF16 || t == DType::F8_E4M3 || t == DType::F8_E5M2;
}

void check_batch(const AttentionBatch& b, const char* op) {
  DS_CHECK(b.num_seqs >= 1 && int(b.h_query_start.size()) == b.num_seqs + 1 && int(b.h_seq_lens.size()) == b.num_seqs &&
               int(b.h_key_start.size()) == b.num_seqs + 1,
           "{}: malformed AttentionBatch ({} sequences)", op, b.num_seqs);
  DS_CHECK(b.page_size > 0, "{}: page size {}", op, b.page_size);
}
}  // namespace

void CudaBackend::store_latent(Tensor& cache, const Tensor& c_kv_in, const Tensor& k_pe_in, const AttentionBatch& b) {
  DS_CHECK(cache.ndim() == 2 && cache.is_contiguous() && cache.device() == Device::CUDA,
           "store_latent: cache must be a contiguous GPU [slots, latent]");
  DS_CHECK(c_kv_in.ndim() == 2 && k_pe_in.ndim() == 2 && c_kv_in.size(0) == b.num_tokens &&
               k_pe_in.size(0) == b.num_tokens,
           "store_latent: c_kv {} / k_pe {} for {} tokens", c_kv_in.shape().str(), k_pe_in.shape().str(),
           b.num_tokens);
  const int64_t kr = c_kv_in.size(1), dr = k_pe_in.size(1), L = cache.size(1);
  DS_CHECK(kr + dr == L, "store_latent: {} + {} values for a cache of width {}", kr, dr, L);
  DS_CHECK(is_latent_cache_dtype(cache.dtype()), "store_latent: cache of {} (expected F32, BF16, F8_E4M3 or F8_E5M2)",
           dtype_name(cache.dtype()));
  Tensor c_kv = c_kv_in, k_pe = k_pe_in;
  if (c_kv.dtype() != k_pe.dtype() || c_kv.stride(1) != 1 || k_pe.stride(1) != 1 ||
      (c_kv.dtype() != DType::BF16 && c_kv.dtype() != DType::F32)) {
    c_kv = as_dtype(c_kv_in, DType::BF16, false);
    k_pe = as_dtype(k_pe_in, DType::BF16, false);
  }
  StoreLatentParams p{c_kv.data(), c_kv.stride(0), k_pe.data(), k_pe.stride(0), c_kv.dtype(),
                      b.out_slots.ptr<int32_t>(), cache.data(), cache.dtype(), b.num_tokens, kr, dr, cache.size(0)};
  check(launch_store_latent(p, stream_), "store_latent");
}

Activation CudaBackend::mla_prologue(const Tensor& qkv_a, int64_t q_part, const Tensor* q_a_norm,
                                     const Tensor& kv_a_norm, float eps, const Tensor& rope_table, Tensor& cache,
                                     const AttentionBatch& b) {
  const int64_t T = qkv_a.size(0), kr = kv_a_norm.numel(), dr = rope_table.size(1);
  const bool fused = qkv_a.ndim() == 2 && qkv_a.size(1) == q_part + kr + dr && qkv_a.stride(1) == 1 &&
                     (qkv_a.dtype() == DType::BF16 || qkv_a.dtype() == DType::F32) && cache.ndim() == 2 &&
                     cache.is_contiguous() && cache.size(1) == kr + dr && is_latent_cache_dtype(cache.dtype()) &&
                     dr % 2 == 0 && q_part + kr <= 8192 && (!q_a_norm || q_part % 128 == 0) &&
                     b.num_tokens == T && rope_table.dtype() == DType::F32 && kv_a_norm.dtype() == DType::F32 &&
                     (!q_a_norm || (q_a_norm->dtype() == DType::F32 && q_a_norm->numel() == q_part));
  if (!fused || !fused_decode_) return Backend::mla_prologue(qkv_a, q_part, q_a_norm, kv_a_norm, eps, rope_table, cache, b);
  Activation q;
  const int64_t tq = (T + 7) / 8 * 8;
  LatentPrologueParams p{};
  p.qkv_a = qkv_a.data(), p.in_dtype = qkv_a.dtype(), p.qkv_stride = qkv_a.stride(0);
  p.tokens = T, p.q_part = q_part, p.kv_rank = kr, p.rope_dim = dr, p.eps = eps;
  p.kv_norm = kv_a_norm.ptr<float>();
  p.positions = b.positions.ptr<int32_t>(), p.rope_table = rope_table.ptr<float>(), p.table_positions = rope_table.size(0);
  p.out_slots = b.out_slots.ptr<int32_t>(), p.cache = cache.data(), p.cache_dtype = cache.dtype(), p.slots = cache.size(0);
  if (q_a_norm) {
    q.x = scratch(DType::BF16, {T, q_part});
    q.q = scratch(DType::F8_E4M3, {tq, q_part});
    q.q_scale = scratch(DType::F32, {q_part / 128, tq});
    p.q_norm = q_a_norm->ptr<float>(), p.q_out = q.x.data(), p.q = q.q.ptr<uint8_t>(), p.q_scale = q.q_scale.ptr<float>();
    p.q_rows = tq;
  }
  check(launch_latent_prologue(p, stream_), "mla_prologue (latent store and q_a norm)");
  return q;
}

Tensor CudaBackend::gather_latent(const Tensor& cache, const AttentionBatch& b) {
  check_batch(b, "gather_latent");
  DS_CHECK(cache.ndim() == 2 && cache.is_contiguous(), "gather_latent: cache must be a contiguous [slots, latent]");
  DS_CHECK(is_latent_cache_dtype(cache.dtype()), "gather_latent: cache of {} (expected F32, BF16, F8_E4M3 or F8_E5M2)",
           dtype_name(cache.dtype()));
  const int64_t total = b.h_key_start[b.num_seqs], L = cache.size(1);
  const bool fp8 = dtype_size(cache.dtype()) == 1;
  Tensor out = scratch(fp8 ? DType::BF16 : cache.dtype(), {total, L});  // FP8 keys come back as BF16
  GatherLatentParams p{cache.data(), cache.dtype(), out.dtype(), b.page_table.ptr<int32_t>(), b.seq_lens.ptr<int32_t>(),
                       b.key_start.ptr<int32_t>(), out.data(), b.num_seqs, b.max_pages, b.page_size, b.key_shift,
                       total, L};
  check(launch_gather_latent(p, stream_), "gather_latent");
  return out;
}

Tensor CudaBackend::mla_attention_expanded(const Tensor& q_in, const Tensor& kv_in, const Tensor& k_pe_in,
                                           const AttentionBatch& b, float scale) {
  check_batch(b, "mla_attention_expanded");
  DS_CHECK(q_in.ndim() == 3 && kv_in.ndim() == 3 && k_pe_in.ndim() == 2,
           "mla_attention_expanded: q {} kv {} k_pe {}", q_in.shape().str(), kv_in.shape().str(),
           k_pe_in.shape().str());
  DS_CHECK(b.h_tree_mask.empty(), "mla_attention_expanded: tree masks are for the absorbed (verify) path");
  const int64_t T = q_in.size(0), n = q_in.size(1), dqk = q_in.size(2), dr = k_pe_in.size(1), dn = dqk - dr;
  const int64_t dv = kv_in.size(2) - dn;
  DS_CHECK(kv_in.size(1) == n && dv > 0 && dn > 0, "mla_attention_expanded: kv {} does not match q {}",
           kv_in.shape().str(), q_in.shape().str());
  DS_CHECK(T == b.num_tokens && kv_in.size(0) >= b.h_key_start[b.num_seqs] && k_pe_in.size(0) == kv_in.size(0),
           "mla_attention_expanded: {} queries / {} keys for a batch of {} tokens / {} keys", T, kv_in.size(0),
           b.num_tokens, b.h_key_start[b.num_seqs]);
  Tensor q = as_dtype(q_in, DType::BF16, false), kv = as_dtype(kv_in, DType::BF16, false),
         k_pe = as_dtype(k_pe_in, DType::BF16, false);
  auto even = [](const Tensor& t) {
    for (int d = 0; d + 1 < t.ndim(); ++d)
      if (t.stride(d) % 2) return false;
    return reinterpret_cast<uintptr_t>(t.data()) % 4 == 0;
  };
  if (!even(q)) q = contiguous(q);
  if (!even(kv)) kv = contiguous(kv);
  if (!even(k_pe)) k_pe = contiguous(k_pe);
  Tensor out = scratch(DType::BF16, {T, n, dv});
  MlaExpandedParams p{};
  p.q = q.data(), p.q_stride_t = q.stride(0), p.q_stride_h = q.stride(1);
  p.kv = kv.data(), p.kv_stride_k = kv.stride(0), p.kv_stride_h = kv.stride(1);
  p.k_pe = k_pe.data(), p.k_pe_stride = k_pe.stride(0);
  p.out = out.data();
  p.query_start = b.query_start.ptr<int32_t>();
  p.seq_lens = b.seq_lens.ptr<int32_t>();
  p.key_start = b.key_start.ptr<int32_t>();
  p.num_keys = kv.size(0);
  for (int s = 0; s < b.num_seqs && size_t(s + 1) < b.h_query_start.size(); ++s)
    p.max_qlen = std::max(p.max_qlen, int(b.h_query_start[s + 1] - b.h_query_start[s]));
  p.num_seqs = b.num_seqs, p.num_tokens = int(T), p.heads = int(n);
  p.dn = int(dn), p.dr = int(dr), p.dv = int(dv);
  p.scale = scale;
  p.kernel = mla_prefill_kernel_ == MlaPrefillKernel::Sm90 && !hopper_kernels() ? MlaPrefillKernel::Mma
                                                                              : mla_prefill_kernel_;
  cudaError_t e = launch_mla_expanded(p, stream_, &last_mla_prefill_);
  DS_CHECK(e != cudaErrorInvalidValue,
           "mla_attention_expanded: unsupported head dims (dn {}, dr {}, dv {}: need even, dv <= 128, dn + dr <= 256)",
           dn, dr, dv);
  check(e, "mla_attention_expanded");
  return out;
}

Tensor CudaBackend::mla_attention_absorbed(const Tensor& q_in, const Tensor& cache, const AttentionBatch& b,
                                           int64_t kv_lora_rank, float scale) {
  check_batch(b, "mla_attention_absorbed");
  DS_CHECK(q_in.ndim() == 3 && cache.ndim() == 2, "mla_attention_absorbed: q {} cache {}", q_in.shape().str(),
           cache.shape().str());
  const int64_t T = q_in.size(0), n = q_in.size(1), L = q_in.size(2), kr = kv_lora_rank;
  DS_CHECK(cache.size(1) == L && kr < L, "mla_attention_absorbed: query width {} vs cache width {} (kv_lora_rank {})",
           L, cache.size(1), kr);
  DS_CHECK(T == b.num_tokens, "mla_attention_absorbed: {} queries for a batch of {} tokens", T, b.num_tokens);
  Tensor q = as_dtype(q_in, DType::BF16, true);  // 16-byte aligned rows, as the tensor-core kernels read them
  const bool fp8 = cache.dtype() == DType::F8_E4M3 || cache.dtype() == DType::F8_E5M2;
  Tensor c = cache.dtype() == DType::BF16 || fp8 ? cache : as_dtype(cache, DType::BF16, false);  // FP8: read as is
  Tensor out = scratch(DType::BF16, {T, n, kr});
  if (T == 0) return out;
  const int max_len =
      b.max_seq_len > 0 ? b.max_seq_len : *std::max_element(b.h_seq_lens.begin(), b.h_seq_lens.end());
  MlaAbsorbedParams p{};
  p.q = q.data(), p.q_stride_t = q.stride(0), p.q_stride_h = q.stride(1);
  p.cache = c.data(), p.cache_stride = c.stride(0), p.cache_slots = c.size(0), p.cache_dtype = c.dtype();
  p.page_table = b.page_table.ptr<int32_t>();
  p.query_start = b.query_start.ptr<int32_t>();
  p.seq_lens = b.seq_lens.ptr<int32_t>();
  p.num_seqs = b.num_seqs, p.num_tokens = int(T), p.heads = int(n), p.latent = int(L), p.kv_rank = int(kr);
  p.max_pages = b.max_pages, p.page_size = b.page_size, p.key_shift = b.key_shift;
  if (!b.h_tree_mask.empty()) {
    for (const Tensor* t : {&b.tree_mask, &b.mask_start, &b.mask_cols})
      DS_CHECK(t->dtype() == DType::I32 && t->device() == Device::CUDA,
               "mla_attention_absorbed: tree_mask / mask_start / mask_cols must be GPU I32 tensors");
    DS_CHECK(int(b.h_mask_cols.size()) == b.num_seqs, "mla_attention_absorbed: mask_cols for {} of {} sequences",
             b.h_mask_cols.size(), b.num_seqs);
    p.tree_mask = b.tree_mask.ptr<int32_t>();
    p.mask_start = b.mask_start.ptr<int32_t>();
    p.mask_cols = b.mask_cols.ptr<int32_t>();
  }
  p.scale = scale;
  p.out = out.data();
  p.kernel = mla_decode_kernel_;
  p.sm80 = !hopper_kernels();  // no wgmma kernel, sm_80 configurations of the mma one
  p.kernel = mla_absorbed_kernel_for(p);
  p.num_splits = mla_absorbed_num_splits(int(T), b.num_seqs, int(n), int(kr), max_len, p.kernel,
                                         int(dtype_size(c.dtype())), p.sm80);
  if (mla_decode_splits_ > 0) p.num_splits = std::min(mla_decode_splits_, kMaxSplits);
  last_mla_decode_ = {p.kernel, p.num_splits};
  Tensor part_out, part_ml;
  if (p.num_splits > 1) {
    part_out = scratch(DType::F32, {p.num_splits, T, n, kr});
    part_ml = scratch(DType::F32, {p.num_splits, T, n, 2});
    p.part_out = part_out.ptr<float>();
    p.part_ml = part_ml.ptr<float>();
  }
  cudaError_t e = launch_mla_absorbed(p, stream_);
  DS_CHECK(e != cudaErrorInvalidValue,
           "mla_attention_absorbed: unsupported shapes (latent {}, kv_lora_rank {}: need latent % 8 == 0, <= 640, "
           "kv_lora_rank % 64 == 0, <= 512)",
           L, kr);
  check(e, "mla_attention_absorbed");
  return out;
}

}  // namespace dsserve::cuda

namespace dsserve::cuda {

void CudaBackend::move_cache_slots(Tensor& cache, const Tensor& src_in, const Tensor& dst_in) {
  DS_CHECK(cache.ndim() == 3 && cache.is_contiguous() && cache.device() == Device::CUDA,
           "move_cache_slots: cache must be the whole contiguous GPU [layers, slots, latent]");
  DS_CHECK(src_in.numel() == dst_in.numel(), "move_cache_slots: {} sources, {} destinations", src_in.numel(),
           dst_in.numel());
  if (src_in.numel() == 0) return;
  auto on_gpu = [&](const Tensor& t) {
    DS_CHECK(t.dtype() == DType::I32 && t.is_contiguous(), "move_cache_slots: slots must be contiguous I32");
    if (t.device() == Device::CUDA) return t;
    return upload_i32(std::vector<int32_t>(t.ptr<int32_t>(), t.ptr<int32_t>() + t.numel()), {t.numel()});
  };
  Tensor src = on_gpu(src_in), dst = on_gpu(dst_in);
  MoveSlotsParams p{cache.data(), int64_t(dtype_size(cache.dtype())) * cache.size(2), cache.size(0), cache.size(1),
                    src.ptr<int32_t>(), dst.ptr<int32_t>(), src.numel()};
  check(launch_move_slots(p, stream_), "move_cache_slots");
}

}  // namespace dsserve::cuda
