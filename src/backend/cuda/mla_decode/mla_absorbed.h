// Absorbed MLA attention for decode / verify: multi-query attention of every head's latent-space
// query (kv_lora_rank + rope dims) over the paged 576-wide latent cache (one shared "KV head"),
// values being the first kv_lora_rank columns. Causal within each sequence, or a speculative tree
// mask. Long key ranges are split across blocks (flash-decoding) and merged by a second kernel.
// Three kernels compute it (README.md): wgmma/TMA on Hopper (sm90/), mma.sync (the Ampere path and
// the shapes the Hopper kernel does not take), and the scalar reference.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "core/dtype.h"

namespace dsserve::cuda {

// Which kernel runs an absorbed attention. A kernel that cannot take the shapes hands over to the
// next one (Sm90 -> Mma -> Scalar); see mla_absorbed_kernel_for.
enum class MlaDecodeKernel { Sm90, Mma, Scalar };
const char* mla_decode_kernel_name(MlaDecodeKernel k);  // "wgmma", "mma", "scalar"

constexpr int kMaxSplits = 64;  // upper bound of num_splits (partial buffers are sized by it)

struct MlaAbsorbedParams {
  const void* q;               // [tokens, heads, latent] BF16, strided by (q_stride_t, q_stride_h, 1)
  int64_t q_stride_t, q_stride_h;
  const void* cache;           // [slots, latent] cache_dtype, rows strided by cache_stride (elements)
  int64_t cache_stride;
  int64_t cache_slots = 0;     // rows of the cache (the Hopper kernel's tensor map bounds)
  DType cache_dtype = DType::BF16;  // BF16, or F8_E4M3 / F8_E5M2 (scale 1.0: mma and scalar kernels only)
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
  int num_splits;              // >= 1; with more than one, part_out / part_ml hold the partial results.
                               // Each (token, split) block computes its key range from seq_lens on the
                               // device; splits left without keys write m = -inf, l = 0.
  MlaDecodeKernel kernel = MlaDecodeKernel::Sm90;  // as resolved by mla_absorbed_kernel_for
  // The sm80 kernel set (backend/kernel_set.h): the mma kernel in configurations within sm_80's
  // shared memory (163 KB per block: 16-head blocks, fewer cache stages), and the merge launched
  // after the attention grid (no programmatic dependent launch before sm_90).
  bool sm80 = false;
  void* out;                   // [tokens, heads, kv_rank] BF16 contiguous
  float* part_out;             // [num_splits, tokens, heads, kv_rank] unnormalised partial outputs
  float* part_ml;              // [num_splits, tokens, heads, 2]: running max (log2 units) and sum
};
// Requirements (cudaErrorInvalidValue otherwise): latent % 8 == 0, latent <= 640,
// kv_rank % 64 == 0, kv_rank <= 512, cache_stride % 8 == 0, q strides even, 1 <= num_splits <= 64,
// cache_dtype BF16, F8_E4M3 or F8_E5M2 (FP8 runs the mma or the scalar kernel).
// Runs p.kernel (which must be what mla_absorbed_kernel_for returns for p), then the merge.
cudaError_t launch_mla_absorbed(const MlaAbsorbedParams& p, cudaStream_t stream);

// The kernel that takes p's shapes and alignment when p.kernel is asked for. Launch configuration
// depends only on shapes, never on device data (the call is recorded in CUDA graphs).
MlaDecodeKernel mla_absorbed_kernel_for(const MlaAbsorbedParams& p);
// Splits for this batch and kernel (the caller sizes part_out / part_ml with it); max_seq_len is an
// upper bound of seq_lens (a captured forward passes the context length); cache_bytes: bytes per
// cached value (2 BF16, 1 FP8).
int mla_absorbed_num_splits(int num_tokens, int num_seqs, int heads, int kv_rank, int max_seq_len,
                            MlaDecodeKernel kernel, int cache_bytes = 2, bool sm80 = false);

// The Hopper kernel (sm90/mla_decode_sm90.cu): compute capability 9.x, latent 576 / kv_rank 512, a
// BF16 cache on pages of a multiple of 64 slots with key_shift a multiple of 64, cache_slots set,
// q strides multiples of 8, 16-byte aligned q and cache, and at least 64 (token, head) rows in a
// sequence (128 heads, or 16 heads with 4 or more query tokens per sequence).
bool mla_decode_sm90_supports(const MlaAbsorbedParams& p);
cudaError_t launch_mla_decode_sm90(const MlaAbsorbedParams& p, cudaStream_t stream);
int mla_decode_sm90_num_splits(int num_tokens, int num_seqs, int heads, int kv_rank, int max_seq_len);

// The mma.sync kernel (mla_decode_mma.cu): latent 576 / kv_rank 512 (V3) or 160 / 128 (the tiny
// test models), q strides multiples of 8, q and cache 16-byte aligned; a BF16 or FP8 cache (FP8 rows
// 16-byte aligned: cache_stride % 16 == 0).
bool mla_decode_mma_supports(const MlaAbsorbedParams& p);
cudaError_t launch_mla_decode_mma(const MlaAbsorbedParams& p, cudaStream_t stream);
int mla_decode_mma_num_splits(int num_tokens, int heads, int kv_rank, int max_seq_len, int cache_bytes = 2,
                              bool sm80 = false);
// The merge of split partial results (shared by all kernels). Launched as a programmatic dependent
// of the attention kernel where the driver allows it, so that its launch overlaps that kernel's tail.
cudaError_t launch_mla_combine(const MlaAbsorbedParams& p, cudaStream_t stream);

}  // namespace dsserve::cuda
