// cuTensorMapEncodeTiled through cudaGetDriverEntryPointByVersion (see tensor_map.h).
#include "backend/cuda/common/sm90/tensor_map.h"

#include <cudaTypedefs.h>

#include <mutex>

namespace dsserve::cuda::sm90 {

namespace {
PFN_cuTensorMapEncodeTiled_v12000 encode_fn() {
  static PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
    void* p = nullptr;
    cudaDriverEntryPointQueryResult q{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &q) != cudaSuccess ||
        q != cudaDriverEntryPointSuccess)
      p = nullptr;
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(p);
  }();
  return fn;
}
}  // namespace

cudaError_t make_tensor_map(const TensorMapSpec& s, CUtensorMap* out) {
  auto fn = encode_fn();
  if (!fn) return cudaErrorNotSupported;
  cuuint32_t elem_strides[5] = {1, 1, 1, 1, 1};
  CUresult r = fn(out, s.dtype, cuuint32_t(s.rank), const_cast<void*>(s.base), reinterpret_cast<const cuuint64_t*>(s.dims),
                  reinterpret_cast<const cuuint64_t*>(s.strides_bytes), reinterpret_cast<const cuuint32_t*>(s.box),
                  elem_strides, CU_TENSOR_MAP_INTERLEAVE_NONE, s.swizzle, s.l2_promotion,
                  CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  return r == CUDA_SUCCESS ? cudaSuccess : cudaErrorInvalidValue;
}

}  // namespace dsserve::cuda::sm90
