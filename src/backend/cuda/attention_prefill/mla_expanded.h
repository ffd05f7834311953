// Non-absorbed MLA attention for prefill / extend: ordinary causal multi-head attention with
// query/key head dim dn + dr (the rope part of the key shared by all heads) and value head dim dv,
// over keys already up-projected from the cached latent.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace dsserve::cuda {

struct MlaExpandedParams {
  const void* q;             // [tokens, heads, dn + dr] BF16, strided by (q_stride_t, q_stride_h, 1)
  int64_t q_stride_t, q_stride_h;
  const void* kv;            // [keys, heads, dn + dv] BF16, strided by (kv_stride_k, kv_stride_h, 1)
  int64_t kv_stride_k, kv_stride_h;
  const void* k_pe;          // [keys, dr] BF16, rows strided by k_pe_stride
  int64_t k_pe_stride;
  void* out;                 // [tokens, heads, dv] BF16 contiguous
  const int32_t* query_start;  // [num_seqs + 1]
  const int32_t* seq_lens;     // [num_seqs]: keys of each sequence (cached prefix + new)
  const int32_t* key_start;    // [num_seqs + 1]: first row of each sequence in kv / k_pe
  int num_seqs, num_tokens, heads, dn, dr, dv;
  float scale;               // softmax scale
  bool tensor_cores = true;  // the WMMA kernel where the shapes allow it, else the scalar one
};
// Requirements (checked, cudaErrorInvalidValue otherwise): dn, dr, dv even, dv <= 128,
// dn + dr <= 256, all strides even.
cudaError_t launch_mla_expanded(const MlaExpandedParams& p, cudaStream_t stream);

// The tensor-core kernel (mla_expanded_tc.cu): true when it took the launch, false when the shapes
// need the scalar kernel (dn + dr or dv not multiples of 16, dv > 256, strides not multiples of 8).
bool launch_mla_expanded_tc(const MlaExpandedParams& p, cudaStream_t stream, cudaError_t* err);

}  // namespace dsserve::cuda
