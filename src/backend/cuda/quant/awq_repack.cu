// AWQ repacking on the device (see awq_repack.h): one thread per output word, which gathers its 8
// nibbles from AutoAWQ's order (column 8c + j of a packed int32 is nibble [0, 4, 1, 5, 2, 6, 3, 7][j]).
#include <algorithm>

#include "backend/cuda/common/device_utils.cuh"
#include "backend/cuda/quant/awq_repack.h"
#include "backend/cuda/quant/quant_layout.h"

namespace dsserve::cuda {

namespace {

using namespace quant;

__device__ __forceinline__ uint32_t awq_nibble_of(const int32_t* row, int64_t col) {
  const int j = int(col & 7), nibble = (j >> 1) + 4 * (j & 1);  // [0, 4, 1, 5, 2, 6, 3, 7][j]
  return (uint32_t(row[col / 8]) >> (4 * nibble)) & 0xFu;
}

__global__ void awq_repack_weight_kernel(const AwqRepackParams p) {
  const int64_t units = p.K / kW4UnitK, words = p.N / 16 * units * 128;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < words; i += int64_t(gridDim.x) * blockDim.x) {
    const int s = int(i & 3), lane = int((i >> 2) & 31);
    const int64_t unit = (i >> 7) % units, tile = (i >> 7) / units;
    const int g = lane >> 2, t = lane & 3;
    uint32_t out = 0;
#pragma unroll
    for (int n = 0; n < 8; ++n) {
      const int64_t row = tile * 16 + w4_nibble_row(n, g), k = unit * kW4UnitK + w4_nibble_k(n, s, t);
      out |= awq_nibble_of(p.qweight + k * (p.N / 8), row) << (4 * n);
    }
    p.w[w4_word_index(p.row0 / 16 + tile, unit, lane, s, units)] = out;
  }
}

__global__ void awq_repack_scale_kernel(const AwqRepackParams p) {
  const int64_t groups = p.K / p.group, n = groups * p.N;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t grp = i / p.N, row = i % p.N;
    const int zero = int(awq_nibble_of(p.qzeros + grp * (p.N / 8), row));
    p.scale_zero[grp * p.ld + p.row0 + row] = w4_pack_scale_zero(p.scales[grp * p.N + row], zero);
  }
}

}  // namespace

cudaError_t launch_awq_repack(const AwqRepackParams& p, cudaStream_t stream) {
  if (!p.qweight || !p.qzeros || !p.scales || !p.w || !p.scale_zero || p.N <= 0 || p.N % 16 != 0 ||
      p.K % kW4UnitK != 0 || p.K <= 0 || p.group <= 0 || p.K % p.group != 0 || p.row0 % 16 != 0 ||
      p.ld < p.row0 + p.N)
    return cudaErrorInvalidValue;
  const int threads = 256;
  const int64_t words = p.N / 16 * (p.K / kW4UnitK) * 128;
  awq_repack_weight_kernel<<<unsigned(std::min<int64_t>(ceil_div(words, threads), 132 * 32)), threads, 0, stream>>>(p);
  const int64_t sz = p.K / p.group * p.N;
  awq_repack_scale_kernel<<<unsigned(std::min<int64_t>(ceil_div(sz, threads), 132 * 32)), threads, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace dsserve::cuda
