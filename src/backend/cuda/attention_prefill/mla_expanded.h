// Non-absorbed MLA attention for prefill / extend: ordinary causal multi-head attention with
// query/key head dim dn + dr (the rope part of the key shared by all heads) and value head dim dv,
// over keys already up-projected from the cached latent.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace dsserve::cuda {

// Which kernel runs an expanded attention. A kernel that cannot take the shapes hands over to the
// next one (Sm90 -> Mma -> Scalar).
enum class MlaPrefillKernel { Sm90, Mma, Scalar };
const char* mla_prefill_kernel_name(MlaPrefillKernel k);  // "wgmma", "mma", "scalar"

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
  int64_t num_keys = 0;        // rows of kv and k_pe (the Hopper kernel's tensor map bounds)
  int max_qlen = 0;            // query tokens of the longest sequence (0: not known; a bound is used)
  int num_seqs, num_tokens, heads, dn, dr, dv;
  float scale;               // softmax scale
  MlaPrefillKernel kernel = MlaPrefillKernel::Sm90;  // the preferred kernel (see MlaPrefillKernel)
};
// Requirements (checked, cudaErrorInvalidValue otherwise): dn, dr, dv even, dv <= 128,
// dn + dr <= 256, all strides even.
// `ran` (optional) receives the kernel that took the launch.
cudaError_t launch_mla_expanded(const MlaExpandedParams& p, cudaStream_t stream, MlaPrefillKernel* ran = nullptr);

// The Hopper kernel (sm90/mla_prefill_sm90.cu): compute capability 9.x, dn 128, dr 64, dv 128 (V3),
// strides multiples of 8, 16-byte aligned operands, num_keys set.
bool mla_prefill_sm90_supports(const MlaExpandedParams& p);
cudaError_t launch_mla_prefill_sm90(const MlaExpandedParams& p, cudaStream_t stream);

// The mma.sync kernel (mla_expanded_mma.cu), instantiated for dn + dr = 192, dv = 128 (V3) and
// dn + dr = 96, dv = 64 (the tiny test models); needs dn % 8 == 0, strides multiples of 8 and
// 16-byte aligned operands. The launcher returns cudaErrorInvalidValue for anything else.
bool mla_expanded_mma_supports(const MlaExpandedParams& p);
cudaError_t launch_mla_expanded_mma(const MlaExpandedParams& p, cudaStream_t stream);

}  // namespace dsserve::cuda
