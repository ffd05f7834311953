// CUDA backend: FP8 linear layers on the sm80 kernel set (W8A16). Ampere has no FP8 tensor cores
// and cuBLASLt no block-scaled FP8 products there, so the weights stay e4m3 in memory and are
// widened to BF16 where they are used, exactly as the CPU oracle dequantizes them (e4m3 x block
// scale rounded to BF16), against BF16 activations:
// - up to w8a16_decode_max_tokens() tokens (default kFp8DecodeMaxTokens, 64): the decode kernel (gemm/fp8_decode_gemm.h), weights
//   widened in registers, each weight byte read once; no thread-block clusters;
// - more tokens: rows of the weight widened chunk by chunk into scratch memory (gemm/fp8_widen.h,
//   at most kFp8WidenChunkBytes of BF16 at a time), each chunk a BF16 cuBLASLt product. Widening
//   costs three bytes of traffic per weight, about the time of a 200-token product's arithmetic on
//   an A100 (1.5-2 TB/s, 312 TFLOP/s BF16), so prefill-size products pay a few percent.
// BF16 segments of the same linear run as BF16 cuBLASLt products, as on Hopper.
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/gemm/fp8_decode_gemm.h"
#include "backend/cuda/gemm/fp8_widen.h"
#include "core/error.h"

namespace dsserve::cuda {

void CudaBackend::widen_fp8(const void* w, const float* w_scale, int64_t scale_ld, int64_t row0, int64_t rows,
                            int64_t K, Tensor& dst) {
  Fp8WidenParams p;
  p.w = static_cast<const uint8_t*>(w);
  p.w_scale = w_scale, p.scale_ld = scale_ld;
  p.row0 = row0, p.rows = rows, p.K = K;
  p.out = dst.data();
  check(launch_fp8_widen(p, stream_), "fp8 weight widening");
}

Tensor CudaBackend::linear_w8a16(const Tensor& x_in, const CudaLinear& lin, int64_t N, DType out_dtype) {
  const int64_t T = x_in.size(0), K = x_in.size(1);
  Tensor out = scratch(out_dtype, {T, N});
  if (T == 0) return out;
  const Tensor xb = as_dtype(x_in, DType::BF16, true);
  const bool decode = T <= w8a16_decode_max_tokens_;
  last_fp8_linear_ = decode ? Fp8LinearPath::W8A16Decode : Fp8LinearPath::Widened;
  Tensor widened;  // one chunk of widened rows, reused by every chunk and segment (stream order)
  for (const auto& s : lin.segments) {
    char* d = static_cast<char*>(out.data()) + s.row0 * int64_t(dtype_size(out_dtype));
    if (s.fp8 && decode) {
      Fp8DecodeGemmParams p;
      p.x = xb.data(), p.ldx = xb.stride(0);
      p.w = static_cast<const uint8_t*>(s.weight.data());
      p.w_scale = s.scale.ptr<float>(), p.scale_ld = s.scale.size(1);
      p.y = d, p.y_dtype = out_dtype, p.ldy = N;
      p.T = T, p.rows = s.rows, p.K = K;
      p.max_cluster = 1;
      check(launch_fp8_decode_gemm(p, stream_), "fp8 decode linear (sm80)");
      continue;
    }
    GemmArgs a;
    a.kind = GemmKind::Bf16;
    a.n = T, a.k = K;
    a.x = xb.data(), a.ldx = xb.stride(0);
    a.ldd = N;
    a.d_type = out_dtype == DType::F32 ? CUDA_R_32F : CUDA_R_16BF;
    if (!s.fp8) {
      a.m = s.rows;
      a.w = s.weight.data(), a.ldw = K;
      a.d = d;
      gemm_->run(a);
      continue;
    }
    const int64_t chunk = fp8_widen_chunk_rows(s.rows, K);
    if (!widened.defined() || widened.size(0) < chunk) widened = scratch(DType::BF16, {chunk, K});
    for (int64_t r0 = 0; r0 < s.rows; r0 += chunk) {
      const int64_t rows = std::min(chunk, s.rows - r0);
      widen_fp8(s.weight.data(), s.scale.ptr<float>(), s.scale.size(1), r0, rows, K, widened);
      a.m = rows;
      a.w = widened.data(), a.ldw = K;
      a.d = d + r0 * int64_t(dtype_size(out_dtype));
      gemm_->run(a);
    }
  }
  return out;
}

}  // namespace dsserve::cuda
