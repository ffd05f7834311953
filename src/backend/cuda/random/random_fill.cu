// Counter-based random fill (see random_fill.h): a SplitMix64 finaliser of seed and index gives 64
// random bits per element; uniforms take 24 of them, normals use Box-Muller on two 24-bit uniforms.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <algorithm>

#include "backend/cuda/random/random_fill.h"

namespace dsserve::cuda {

namespace {

__device__ __forceinline__ uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

__device__ __forceinline__ float sample(uint64_t seed, int64_t i, bool normal) {
  const uint64_t bits = mix64(mix64(seed) + uint64_t(i) * 0x9E3779B97F4A7C15ull);
  constexpr float k24 = 1.0f / 16777216.0f;
  const float u = float(bits >> 40) * k24;  // [0, 1)
  if (!normal) return u;
  const float u1 = (float((bits >> 16) & 0xFFFFFF) + 1.0f) * k24;  // (0, 1]
  return sqrtf(-2.0f * logf(u1)) * cospif(2.0f * u);
}

template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) { return v; }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }
template <>
__device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_fp8_e4m3 from_float<__nv_fp8_e4m3>(float v) { return __nv_fp8_e4m3(v); }  // satfinite
template <>
__device__ __forceinline__ int8_t from_float<int8_t>(float v) { return int8_t(fminf(fmaxf(rintf(v), -127.0f), 127.0f)); }

template <typename T>
__global__ void random_fill_kernel(T* dst, int64_t n, uint64_t seed, bool normal, float scale, float offset) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    dst[i] = from_float<T>(offset + scale * sample(seed, i, normal));
}

// I32: 32 random bits per element (AWQ's packed 4-bit values), whatever the distribution.
__global__ void random_bits_kernel(uint32_t* dst, int64_t n, uint64_t seed) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    dst[i] = uint32_t(mix64(mix64(seed) + uint64_t(i) * 0x9E3779B97F4A7C15ull) >> 32);
}

template <typename T>
cudaError_t launch(const RandomFillParams& p, cudaStream_t s) {
  const int threads = 256;
  const int64_t blocks = std::min<int64_t>((p.n + threads - 1) / threads, 132 * 16);
  random_fill_kernel<T><<<unsigned(blocks), threads, 0, s>>>(static_cast<T*>(p.dst), p.n, p.seed, p.normal, p.scale,
                                                             p.offset);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_random_fill(const RandomFillParams& p, cudaStream_t stream) {
  if (p.n == 0) return cudaSuccess;
  switch (p.dtype) {
    case DType::F32: return launch<float>(p, stream);
    case DType::BF16: return launch<__nv_bfloat16>(p, stream);
    case DType::F16: return launch<__half>(p, stream);
    case DType::F8_E4M3: return launch<__nv_fp8_e4m3>(p, stream);
    case DType::I8: return launch<int8_t>(p, stream);
    case DType::I32: {
      const int64_t blocks = std::min<int64_t>((p.n + 255) / 256, 132 * 16);
      random_bits_kernel<<<unsigned(blocks), 256, 0, stream>>>(static_cast<uint32_t*>(p.dst), p.n, p.seed);
      return cudaGetLastError();
    }
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace dsserve::cuda
