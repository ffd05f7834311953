// Latent cache kernels (see latent_cache.h): memory-bound copies, one block per token or key,
// threads across the 576 latent values of a row; element types converted on the way (to FP8 when
// storing into an FP8 cache, back to BF16 when gathering from it).
#include "backend/cuda/common/device_utils.cuh"
#include "backend/cuda/common/fp8_convert.cuh"
#include "backend/cuda/kv_cache/latent_cache.h"

#include <type_traits>

namespace dsserve::cuda {

namespace {

template <typename TI, typename TC>
__global__ void store_latent_kernel(StoreLatentParams p) {
  const int64_t t = blockIdx.x;
  const int32_t slot = p.out_slots[t];
  if (slot < 0 || slot >= p.slots) return;  // validated by the host (batch builder)
  const int64_t width = p.kv_rank + p.rope_dim;
  TC* dst = static_cast<TC*>(p.cache) + int64_t(slot) * width;
  const TI* ckv = static_cast<const TI*>(p.c_kv) + t * p.c_kv_stride;
  const TI* kpe = static_cast<const TI*>(p.k_pe) + t * p.k_pe_stride;
  for (int64_t c = threadIdx.x; c < width; c += blockDim.x)
    dst[c] = from_f<TC>(to_f(c < p.kv_rank ? ckv[c] : kpe[c - p.kv_rank]));
}

// Index of the sequence holding packed key `key`: the last s with key_start[s] <= key.
__device__ int find_seq(const int32_t* starts, int n, int64_t key) {
  int lo = 0, hi = n - 1;
  while (lo < hi) {
    int mid = (lo + hi + 1) / 2;
    if (starts[mid] <= key) lo = mid; else hi = mid - 1;
  }
  return lo;
}

template <typename TC, typename TO>
__global__ void gather_latent_kernel(GatherLatentParams p) {
  const int64_t key = blockIdx.x;
  const int s = find_seq(p.key_start, p.num_seqs, key);
  const int64_t j = key - p.key_start[s] + p.key_shift;
  const int32_t page = p.page_table[int64_t(s) * p.max_pages + j / p.page_size];
  const int64_t slot = int64_t(page) * p.page_size + j % p.page_size;
  const TC* src = static_cast<const TC*>(p.cache) + slot * p.latent;
  TO* dst = static_cast<TO*>(p.out) + key * p.latent;
  for (int64_t c = threadIdx.x; c < p.latent; c += blockDim.x) {
    if constexpr (std::is_same_v<TC, TO>) dst[c] = src[c];
    else dst[c] = from_f<TO>(to_f(src[c]));
  }
}

__global__ void move_slots_kernel(MoveSlotsParams p) {
  const int64_t layer = blockIdx.x, words = p.row_bytes / 4;
  uint32_t* base = reinterpret_cast<uint32_t*>(static_cast<char*>(p.cache) + layer * p.slots * p.row_bytes);
  for (int64_t i = 0; i < p.moves; ++i) {
    const int32_t a = p.src[i], b = p.dst[i];
    if (a >= 0 && a < p.slots && b >= 0 && b < p.slots && a != b)
      for (int64_t w = threadIdx.x; w < words; w += blockDim.x) base[b * words + w] = base[a * words + w];
    __syncthreads();  // the next move may read what this one wrote
  }
}

}  // namespace

cudaError_t launch_move_slots(const MoveSlotsParams& p, cudaStream_t stream) {
  if (p.moves == 0 || p.layers == 0) return cudaSuccess;
  if (p.row_bytes % 4) return cudaErrorInvalidValue;
  move_slots_kernel<<<unsigned(p.layers), 256, 0, stream>>>(p);
  return cudaGetLastError();
}

cudaError_t launch_store_latent(const StoreLatentParams& p, cudaStream_t stream) {
  if (p.tokens == 0) return cudaSuccess;
  DS_DISPATCH_FLOAT(p.in_dtype, TI, DS_DISPATCH_CACHE(p.cache_dtype, TC,
      store_latent_kernel<TI, TC><<<unsigned(p.tokens), 128, 0, stream>>>(p)));
  return cudaGetLastError();
}

cudaError_t launch_gather_latent(const GatherLatentParams& p, cudaStream_t stream) {
  if (p.total_keys == 0) return cudaSuccess;
  if (p.out_dtype == p.dtype) {
    DS_DISPATCH_CACHE(p.dtype, T, gather_latent_kernel<T, T><<<unsigned(p.total_keys), 128, 0, stream>>>(p));
  } else if (p.out_dtype == DType::BF16) {
    DS_DISPATCH_CACHE(p.dtype, T, gather_latent_kernel<T, bf16><<<unsigned(p.total_keys), 128, 0, stream>>>(p));
  } else {
    return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

}  // namespace dsserve::cuda
