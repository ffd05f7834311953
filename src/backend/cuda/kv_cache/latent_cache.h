// The paged latent cache of MLA on the GPU: writing the new tokens' latents (c_kv after its norm,
// k_pe after RoPE) into their slots (rounded to the cache's type: F32, BF16, or FP8 e4m3 / e5m2 with
// scale 1.0, saturating), gathering every key of each sequence into one packed tensor for the
// expanded (prefill) attention (FP8 widened to BF16), and moving slots. Slot of key j of sequence s:
// page_table[s, j / page_size] * page_size + j % page_size.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "core/dtype.h"

namespace dsserve::cuda {

struct StoreLatentParams {
  const void* c_kv;        // [tokens, kv_rank], rows strided by c_kv_stride
  int64_t c_kv_stride;
  const void* k_pe;        // [tokens, rope_dim], rows strided by k_pe_stride
  int64_t k_pe_stride;
  DType in_dtype;          // of c_kv and k_pe (F32 or BF16)
  const int32_t* out_slots;  // [tokens]
  void* cache;             // [slots, kv_rank + rope_dim] contiguous
  DType cache_dtype;       // F32, BF16, F8_E4M3 or F8_E5M2
  int64_t tokens, kv_rank, rope_dim, slots;
};
cudaError_t launch_store_latent(const StoreLatentParams& p, cudaStream_t stream);

struct GatherLatentParams {
  const void* cache;         // [slots, latent] contiguous
  DType dtype;               // of cache (F32, BF16, F8_E4M3, F8_E5M2)
  DType out_dtype;           // of out: dtype, or BF16 for an FP8 cache
  const int32_t* page_table; // [num_seqs, max_pages]
  const int32_t* seq_lens;   // [num_seqs]
  const int32_t* key_start;  // [num_seqs + 1]
  void* out;                 // [total_keys, latent] contiguous
  int num_seqs, max_pages, page_size;
  int key_shift;             // key j of a sequence is at logical position j + key_shift (MTP cache: 1)
  int64_t total_keys, latent;
};
cudaError_t launch_gather_latent(const GatherLatentParams& p, cudaStream_t stream);

// For i in order: every layer's row src[i] is copied to row dst[i] (accepted speculative tree
// nodes move to their positions). One block per layer walks the moves in order.
struct MoveSlotsParams {
  void* cache;          // [layers, slots, row_bytes] contiguous
  int64_t row_bytes;    // latent * element size (a multiple of 4; 576 for V3's FP8 latent)
  int64_t layers, slots;
  const int32_t* src;   // [moves]
  const int32_t* dst;   // [moves]
  int64_t moves;
};
cudaError_t launch_move_slots(const MoveSlotsParams& p, cudaStream_t stream);

}  // namespace dsserve::cuda
