// Expansion of quantized weights to BF16 (see quant_dequant.h). W4A16: one thread per lane vector
// of a repacked unit (16 rows x 64 k; quant_layout.h), which holds rows g and g + 8 at k 8t .. 8t + 7
// and 32 + 8t .. + 7: four 16-byte stores, the 4 lanes of a row covering 64 contiguous bytes. INT8:
// one thread per 16 weights of a row (two 16-byte stores).
#include <cuda_bf16.h>

#include <algorithm>

#include "backend/cuda/common/device_utils.cuh"
#include "backend/cuda/quant/quant_dequant.h"
#include "backend/cuda/quant/quant_layout.h"
#include "backend/cuda/quant/quant_mma.cuh"

namespace dsserve::cuda {

namespace {

using namespace quant;

__device__ __forceinline__ uint32_t bf16_pair(float lo, float hi) {
  const __nv_bfloat162 p = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&p);
}

__global__ void w4_dequantize_kernel(const QuantWeights w, __nv_bfloat16* out, int64_t ldo) {
  const int64_t units = w.K / kW4UnitK, vectors = w.N / 16 * units * 32;
  const uint4* src = static_cast<const uint4*>(w.w);
  const uint32_t* sz = static_cast<const uint32_t*>(w.scale);
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < vectors; i += int64_t(gridDim.x) * blockDim.x) {
    const int lane = int(i & 31), g = lane >> 2, t = lane & 3;
    const int64_t unit = (i >> 5) % units, tile = (i >> 5) / units;
    const uint4 v = __ldg(src + i);  // words s = 0..3 of (tile, unit, lane): w4_word_index / 4 == i
    const int64_t k_unit = unit * kW4UnitK, grp = k_unit / w.group;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t row = tile * 16 + g + 8 * h;
      const uint32_t word = __ldg(sz + grp * w.scale_ld + row);
      const float scale = w4_scale(word);
      const int zero = int((word >> 16) & 0xFu);
#pragma unroll
      for (int half = 0; half < 2; ++half) {  // k 32 half + 8t + j, j = 0..7
        float val[8];
#pragma unroll
        for (int j = 0; j < 8; ++j) {
          // j = 4 (s & 1) + 2 ((n >> 1) & 1) + (n >> 2) with s >> 1 = half and n & 1 = h.
          const int s = 2 * half + (j >> 2), n = h + 2 * ((j >> 1) & 1) + 4 * (j & 1);
          const int q = int((word_of(v, s) >> (4 * n)) & 0xFu);
          val[j] = float(q - zero) * scale;
        }
        const uint4 o = make_uint4(bf16_pair(val[0], val[1]), bf16_pair(val[2], val[3]), bf16_pair(val[4], val[5]),
                                   bf16_pair(val[6], val[7]));
        *reinterpret_cast<uint4*>(out + row * ldo + k_unit + 32 * half + 8 * t) = o;
      }
    }
  }
}

template <bool kBlock>
__global__ void i8_dequantize_kernel(const QuantWeights w, __nv_bfloat16* out, int64_t ldo) {
  const int64_t per_row = w.K / 16, vectors = w.N * per_row;
  const int8_t* src = static_cast<const int8_t*>(w.w);
  const float* sc = static_cast<const float*>(w.scale);
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < vectors; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t row = i / per_row, k = (i % per_row) * 16;
    const float scale = kBlock ? __ldg(sc + (row / 128) * w.scale_ld + k / 128) : __ldg(sc + row);
    const uint4 v = __ldg(reinterpret_cast<const uint4*>(src + row * w.K + k));
    uint32_t o[8];
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const uint32_t word = word_of(v, j >> 1), shift = 16 * (j & 1);
      const float lo = float(int8_t((word >> shift) & 0xFFu)) * scale;
      const float hi = float(int8_t((word >> (shift + 8)) & 0xFFu)) * scale;
      o[j] = bf16_pair(lo, hi);
    }
    uint4* dst = reinterpret_cast<uint4*>(out + row * ldo + k);
    dst[0] = make_uint4(o[0], o[1], o[2], o[3]);
    dst[1] = make_uint4(o[4], o[5], o[6], o[7]);
  }
}

}  // namespace

cudaError_t launch_quant_dequantize(const QuantWeights& w, void* out, int64_t ldo, cudaStream_t stream) {
  if (!w.w || !w.scale || !out || w.N <= 0 || w.K <= 0 || ldo < w.K || ldo % 8 != 0 ||
      reinterpret_cast<uintptr_t>(out) % 16 != 0 || reinterpret_cast<uintptr_t>(w.w) % 16 != 0)
    return cudaErrorInvalidValue;
  const int threads = 256;
  auto blocks = [&](int64_t n) { return unsigned(std::min<int64_t>(ceil_div(n, threads), 132 * 16)); };
  auto* o = static_cast<__nv_bfloat16*>(out);
  switch (w.kind) {
    case QuantKind::W4A16:
      if (w.N % 16 != 0 || w.K % kW4UnitK != 0 || w.group <= 0 || w.group % kW4UnitK != 0 || w.K % w.group != 0 ||
          w.scale_ld < w.N)
        return cudaErrorInvalidValue;
      w4_dequantize_kernel<<<blocks(w.N / 16 * (w.K / kW4UnitK) * 32), threads, 0, stream>>>(w, o, ldo);
      break;
    case QuantKind::I8Block:
      if (w.K % 16 != 0 || w.scale_ld < (w.K + 127) / 128) return cudaErrorInvalidValue;
      i8_dequantize_kernel<true><<<blocks(w.N * (w.K / 16)), threads, 0, stream>>>(w, o, ldo);
      break;
    case QuantKind::I8Channel:
      if (w.K % 16 != 0) return cudaErrorInvalidValue;
      i8_dequantize_kernel<false><<<blocks(w.N * (w.K / 16)), threads, 0, stream>>>(w, o, ldo);
      break;
  }
  return cudaGetLastError();
}

}  // namespace dsserve::cuda
