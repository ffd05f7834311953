// Absorbed MLA attention for decode / verify: multi-query attention of every head's latent-space
// query (kv_lora_rank + rope dims) over the paged 576-wide latent cache (one shared "KV head"),
// values being the first kv_lora_rank columns. Causal within each sequence. Long key ranges are
// split across blocks (flash-decoding) and merged by a second kernel.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace dsserve::cuda {

struct MlaAbsorbedParams {
  const void* q;               // [tokens, heads, latent] BF16, strided by (q_stride_t, q_stride_h, 1)
  int64_t q_stride_t, q_stride_h;
  const void* cache;           // [slots, latent] BF16, rows strided by cache_stride
  int64_t cache_stride;
  const int32_t* page_table;   // [num_seqs, max_pages]
  const int32_t* query_start;  // [num_seqs + 1]
  const int32_t* seq_lens;     // [num_seqs]
  const int32_t* tree_mask;    // [sum_s qlen_s * mask_cols_s] or null (causal). With a mask, query i of
                               // sequence s sees keys j < seq_len_s - mask_cols_s, and key j after that
                               // iff tree_mask[mask_start[s] + i * mask_cols_s + (j - (seq_len_s - mask_cols_s))]
  const int32_t* mask_start;   // [num_seqs + 1]
  const int32_t* mask_cols;    // [num_seqs]
  int num_seqs, num_tokens, heads, latent, kv_rank, max_pages, page_size;
  int key_shift;               // key j of a sequence is at logical position j + key_shift
  float scale;                 // softmax scale
  int num_splits;              // >= 1; with more than one, part_out / part_ml hold the partial results
  bool tensor_cores = true;    // the WMMA kernel where the shapes allow it, else the scalar one
  void* out;                   // [tokens, heads, kv_rank] BF16 contiguous
  float* part_out;             // [num_splits, tokens, heads, kv_rank] unnormalised partial outputs
  float* part_ml;              // [num_splits, tokens, heads, 2]: running max (log2 units) and sum
};
// Requirements (cudaErrorInvalidValue otherwise): latent % 8 == 0, latent <= 640,
// kv_rank % 64 == 0, kv_rank <= 512, cache_stride % 8 == 0, q strides even.
cudaError_t launch_mla_absorbed(const MlaAbsorbedParams& p, cudaStream_t stream);

// Splits the launcher would pick for this batch (the caller sizes part_out / part_ml with it).
int mla_absorbed_num_splits(int num_tokens, int heads, int max_seq_len, bool tensor_cores);

// The tensor-core kernel (mla_absorbed_tc.cu): true when it took the launch, false when the
// shapes need the scalar kernel (latent or kv_rank not multiples of 16, strides not multiples of 8).
bool launch_mla_absorbed_tc(const MlaAbsorbedParams& p, cudaStream_t stream, cudaError_t* err);
// The merge of split partial results (shared by both kernels).
cudaError_t launch_mla_combine(const MlaAbsorbedParams& p, cudaStream_t stream);

}  // namespace dsserve::cuda
