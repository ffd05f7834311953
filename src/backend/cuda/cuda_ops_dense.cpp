// CUDA backend: dense ops (embedding, RMSNorm, linear, per-head linear, RoPE, SiLU-and-mul,
// residual add, row gathers and copies). Shapes are checked here; kernels are in their families.
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/elementwise/elementwise.h"
#include "backend/cuda/embedding_norm_rope/norm_rope.h"
#include "backend/cuda/gemm/fp8_decode_gemm.h"
#include "backend/cuda/gemm/fp8_quant.h"
#include "backend/cuda/gemm/sm90/fp8_gemm_sm90.h"
#include "backend/cuda/gemm/sm90/head_quant.h"
#include "core/error.h"

namespace dsserve::cuda {

namespace {

bool is_float(DType t) { return t == DType::F32 || t == DType::BF16; }

void check_rows(const Tensor& x, const char* op) {
  DS_CHECK(x.device() == Device::CUDA, "{}: tensor {} is not on the GPU", op, x.shape().str());
  DS_CHECK(x.ndim() == 2, "{}: expected [rows, cols], found {}", op, x.shape().str());
}

int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

}  // namespace

Tensor CudaBackend::embedding(const Tensor& table, const Tensor& ids) {
  DS_CHECK(table.ndim() == 2 && table.is_contiguous(), "embedding: table must be a contiguous [vocab, hidden]");
  DS_CHECK(ids.dtype() == DType::I32 && ids.is_contiguous(), "embedding: ids must be contiguous I32");
  const int64_t T = ids.numel(), H = table.size(1);
  Tensor out = scratch(DType::BF16, {T, H});
  EmbeddingParams p{ids.ptr<int32_t>(), table.data(), table.dtype(), out.data(), DType::BF16, T, table.size(0), H};
  check(launch_embedding(p, stream_), "embedding");
  return out;
}

Tensor CudaBackend::rms_norm(const Tensor& x_in, const Tensor& w, float eps) {
  check_rows(x_in, "rms_norm");
  Tensor x = is_float(x_in.dtype()) && x_in.stride(1) == 1 ? x_in : as_dtype(x_in, DType::BF16, false);
  const int64_t T = x.size(0), H = x.size(1);
  DS_CHECK(w.numel() == H && w.dtype() == DType::F32, "rms_norm: weight has {} values for {} columns", w.numel(), H);
  Tensor out = scratch(DType::BF16, {T, H});
  RmsNormParams p{x.data(), x.dtype(), x.stride(0), nullptr, DType::BF16, 0, w.ptr<float>(), out.data(), DType::BF16,
                  T, H, eps};
  check(launch_rms_norm(p, stream_), "rms_norm");
  return out;
}

Tensor CudaBackend::add_rms_norm(Tensor& residual, const Tensor& x_in, const Tensor& w, float eps) {
  check_rows(residual, "add_rms_norm");
  check_rows(x_in, "add_rms_norm");
  DS_CHECK(residual.shape() == x_in.shape(), "add_rms_norm: shapes {} and {} differ", residual.shape().str(),
           x_in.shape().str());
  DS_CHECK(is_float(residual.dtype()) && residual.stride(1) == 1, "add_rms_norm: residual must be F32/BF16 rows");
  Tensor x = is_float(x_in.dtype()) && x_in.stride(1) == 1 ? x_in : as_dtype(x_in, DType::BF16, false);
  const int64_t T = x.size(0), H = x.size(1);
  DS_CHECK(w.numel() == H && w.dtype() == DType::F32, "add_rms_norm: weight has {} values for {} columns", w.numel(),
           H);
  Tensor out = scratch(DType::BF16, {T, H});
  RmsNormParams p{x.data(),         x.dtype(),    x.stride(0), residual.data(), residual.dtype(), residual.stride(0),
                  w.ptr<float>(),   out.data(),   DType::BF16, T,               H,                eps};
  check(launch_rms_norm(p, stream_), "add_rms_norm");
  return out;
}

Tensor CudaBackend::linear(const Tensor& x_in, const LinearWeight& w) {
  check_rows(x_in, "linear");
  DS_CHECK(x_in.size(1) == w.in_features, "linear: input has {} features, weight expects {}", x_in.size(1),
           w.in_features);
  const auto& lin = *static_cast<const CudaLinear*>(w.impl.get());
  const int64_t T = x_in.size(0), K = w.in_features, N = w.out_features;
  if (lin.use == LinearUse::Router) {
    Tensor x = as_dtype(x_in, DType::F32, true);
    Tensor out = scratch(DType::F32, {T, N});
    const LinearSegment& s = lin.segments[0];
    GemmArgs a;
    a.kind = GemmKind::F32;
    a.m = N, a.n = T, a.k = K;
    a.w = s.weight.data(), a.ldw = K;
    a.x = x.data(), a.ldx = x.stride(0);
    a.d = out.data(), a.ldd = N;
    a.d_type = CUDA_R_32F;
    gemm_->run(a);
    return out;
  }
  const DType out_dtype = lin.use == LinearUse::LmHead ? DType::F32 : DType::BF16;
  const bool fp8 = lin.any_fp8();
  // FP8 segments: on the decode kernel (W8A16, weights read once) where fp8_decode_applies, else
  // as cuBLASLt W8A8 products, which need at least 8 token rows: padded to a multiple of 8 (zero
  // rows, scale 1).
  const bool fp8_decode = fp8 && fp8_decode_applies(T, N);
  const bool fp8_sm90 = fp8 && !fp8_decode && T >= fp8_sm90_min_tokens_;
  if (fp8) last_fp8_linear_ = fp8_decode ? Fp8LinearPath::Decode : Fp8LinearPath::Cublaslt;
  const int64_t Tp = fp8 && !fp8_decode ? round_up(std::max<int64_t>(T, 1), 8) : T;
  Tensor out_full = scratch(out_dtype, {Tp, N});
  Tensor out(out_full.data(), out_dtype, {T, N}, Device::CUDA, out_full.storage());
  if (T == 0) return out;
  bool any_bf16 = false;
  for (const auto& s : lin.segments) any_bf16 = any_bf16 || !s.fp8;
  Tensor xb;  // BF16 operand with aligned rows, when a BF16 product, the decode kernel or the quantizer needs it
  if (any_bf16 || fp8_decode || !is_float(x_in.dtype()) || x_in.stride(1) != 1)
    xb = as_dtype(x_in, DType::BF16, true);
  Tensor xq, xs;
  if (fp8 && !fp8_decode) {
    xq = scratch(DType::F8_E4M3, {Tp, K});
    xs = scratch(DType::F32, {K / 128, Tp});
    Fp8QuantParams q{};
    q.x = x_in.data();
    q.x_dtype = x_in.dtype();
    q.x_stride = x_in.stride(0);
    q.src_rows = T;
    if (!is_float(x_in.dtype()) || x_in.stride(1) != 1) {
      q.x = xb.data();
      q.x_dtype = xb.dtype();
      q.x_stride = xb.stride(0);
    }
    q.q = xq.ptr<uint8_t>();
    q.scale = xs.ptr<float>();
    q.rows = Tp;
    q.K = K;
    check(launch_fp8_quant(q, stream_), "fp8 activation quantization");
  }
  for (const auto& s : lin.segments) {
    char* d = static_cast<char*>(out_full.data()) + s.row0 * int64_t(dtype_size(out_dtype));
    if (s.fp8 && fp8_decode) {
      Fp8DecodeGemmParams p;
      p.x = xb.data(), p.ldx = xb.stride(0);
      p.w = static_cast<const uint8_t*>(s.weight.data());
      p.w_scale = s.scale.ptr<float>(), p.scale_ld = s.scale.size(1);
      p.y = d, p.y_dtype = out_dtype, p.ldy = N;
      p.T = T, p.rows = s.rows, p.K = K;
      check(launch_fp8_decode_gemm(p, stream_), "fp8 decode linear");
      continue;
    }
    if (s.fp8 && fp8_sm90 && s.sm90) {
      Fp8GemmSm90Params p;
      p.a = xq.ptr<uint8_t>(), p.lda = K;
      p.a_scale = xs.ptr<float>(), p.a_scale_ld = Tp;
      p.b = static_cast<const uint8_t*>(s.weight.data()), p.ldb = K;
      p.b_scale = s.scale.ptr<float>(), p.b_scale_ld = s.scale.size(1);
      p.d = d, p.d_f32 = out_dtype == DType::F32, p.ldd = N;
      p.M = T, p.N = s.rows, p.K = K;
      check(launch_fp8_gemm_sm90(p, stream_), "fp8 linear (sm90 kernel)");
      last_fp8_linear_ = Fp8LinearPath::Sm90;
      continue;
    }
    GemmArgs a;
    a.m = s.rows, a.k = K;
    a.w = s.weight.data(), a.ldw = K;
    a.ldd = N;
    a.d = d;
    a.d_type = out_dtype == DType::F32 ? CUDA_R_32F : CUDA_R_16BF;
    if (s.fp8) {
      a.kind = GemmKind::Fp8BlockScaled;
      a.n = Tp;
      a.x = xq.data(), a.ldx = K;
      a.w_scale = s.scale.ptr<float>();
      a.x_scale = xs.ptr<float>();
    } else {
      a.kind = GemmKind::Bf16;
      a.n = T;
      a.x = xb.data(), a.ldx = xb.stride(0);
    }
    gemm_->run(a);
  }
  return out;
}

Tensor CudaBackend::head_linear(const Tensor& x_in, const HeadWeight& w) {
  DS_CHECK(x_in.ndim() == 3 && x_in.size(1) == w.heads && x_in.size(2) == w.in_features,
           "head_linear: input {} does not match weight [{}, {}, {}]", x_in.shape().str(), w.heads, w.out_features,
           w.in_features);
  const auto& hw = *static_cast<const CudaHeadWeight*>(w.impl.get());
  const int64_t T = x_in.size(0), n = w.heads, in = w.in_features, out_f = w.out_features;
  Tensor out = scratch(DType::BF16, {T, n, out_f});
  last_head_fp8_ = false;
  if (T == 0) return out;
  if (hw.fp8 && head_fp8_ && x_in.stride(2) == 1 && is_float(x_in.dtype()) && fp8_gemm_sm90_device_ok()) {
    // FP8 heads: x quantized per (token, head, 128 columns), then one strided-batch launch (batch =
    // head) of the sm90 block-FP8 GEMM.
    const int64_t ld = round_up(T, 4);
    Tensor xq = scratch(DType::F8_E4M3, {n, T, in}), xs = scratch(DType::F32, {n, in / 128, ld});
    HeadQuantParams q{x_in.data(), x_in.dtype(), x_in.stride(0), x_in.stride(1), xq.ptr<uint8_t>(), xs.ptr<float>(),
                      T, n, in, ld};
    check(launch_head_quant(q, stream_), "head_linear fp8 quantization");
    Fp8GemmSm90Params p;
    p.a = xq.ptr<uint8_t>(), p.lda = in, p.a_batch_stride = T * in;
    p.a_scale = xs.ptr<float>(), p.a_scale_ld = ld;
    p.b = hw.weight_fp8.ptr<uint8_t>(), p.ldb = in, p.b_batch_stride = out_f * in;
    p.b_scale = hw.scale.ptr<float>(), p.b_scale_ld = hw.scale.size(2);
    p.b_scale_batch_stride = hw.scale.size(1) * hw.scale.size(2);
    p.d = out.data(), p.ldd = n * out_f, p.d_batch_stride = out_f;
    p.M = T, p.N = out_f, p.K = in, p.batch = int(n);
    if (fp8_gemm_sm90_supported(p)) {
      check(launch_fp8_gemm_sm90(p, stream_), "head_linear (sm90 fp8 batch)");
      last_head_fp8_ = true;
      return out;
    }
  }
  Tensor x = as_dtype(x_in, DType::BF16, true);
  GemmArgs a;
  a.kind = GemmKind::Bf16;
  a.m = out_f, a.n = T, a.k = in;
  a.w = hw.weight.data(), a.ldw = in, a.stride_w = out_f * in;
  a.x = x.data(), a.ldx = x.stride(0), a.stride_x = x.stride(1);
  a.d = out.data(), a.ldd = n * out_f, a.stride_d = out_f;
  a.batch = int(n);
  gemm_->run(a);
  return out;
}

void CudaBackend::rope_inplace(Tensor& x, const Tensor& positions, const Tensor& table) {
  DS_CHECK(x.ndim() == 3 && x.stride(2) == 1 && is_float(x.dtype()) && x.device() == Device::CUDA,
           "rope: expected a GPU [T, n, d] with contiguous d, found {}", x.shape().str());
  DS_CHECK(table.dtype() == DType::F32 && table.ndim() == 2 && table.size(1) == x.size(2),
           "rope: table has {} columns for rope dim {}", table.size(1), x.size(2));
  DS_CHECK(positions.dtype() == DType::I32 && positions.numel() == x.size(0), "rope: {} positions for {} tokens",
           positions.numel(), x.size(0));
  RopeParams p{x.data(),           x.dtype(),      x.stride(0), x.stride(1), positions.ptr<int32_t>(),
               table.ptr<float>(), x.size(0),      x.size(1),   x.size(2),   table.size(0)};
  check(launch_rope(p, stream_), "rope");
}

Tensor CudaBackend::silu_mul(const Tensor& gu_in) {
  check_rows(gu_in, "silu_mul");
  Tensor gu = is_float(gu_in.dtype()) && gu_in.stride(1) == 1 ? gu_in : as_dtype(gu_in, DType::BF16, false);
  const int64_t T = gu.size(0), I = gu.size(1) / 2;
  Tensor out = scratch(DType::BF16, {T, I});
  SiluMulParams p{gu.data(), gu.dtype(), gu.stride(0), out.data(), DType::BF16, T, I};
  check(launch_silu_mul(p, stream_), "silu_mul");
  return out;
}

void CudaBackend::add_inplace(Tensor& x, const Tensor& y_in) {
  check_rows(x, "add");
  check_rows(y_in, "add");
  DS_CHECK(x.shape() == y_in.shape(), "add: shapes {} and {} differ", x.shape().str(), y_in.shape().str());
  DS_CHECK(is_float(x.dtype()) && x.stride(1) == 1, "add: x must be F32/BF16 rows");
  Tensor y = is_float(y_in.dtype()) && y_in.stride(1) == 1 ? y_in : as_dtype(y_in, DType::BF16, false);
  AddParams p{x.data(), x.dtype(), x.stride(0), y.data(), y.dtype(), y.stride(0), x.size(0), x.size(1)};
  check(launch_add_inplace(p, stream_), "add");
}

Tensor CudaBackend::gather_rows(const Tensor& x, const Tensor& rows) {
  check_rows(x, "gather_rows");
  DS_CHECK(x.stride(1) == 1, "gather_rows: columns must be contiguous");
  DS_CHECK(rows.dtype() == DType::I32 && rows.is_contiguous(), "gather_rows: rows must be contiguous I32");
  const int64_t R = rows.numel(), C = x.size(1);
  Tensor out = scratch(x.dtype(), {R, C});
  CopyRowsParams p{x.data(), x.dtype(), x.stride(0), x.size(0), rows.ptr<int32_t>(), out.data(), out.dtype(), C, R, C};
  check(launch_copy_rows(p, stream_), "gather_rows");
  return out;
}

Tensor CudaBackend::concat_cols(const Tensor& a, const Tensor& b) {
  check_rows(a, "concat_cols");
  check_rows(b, "concat_cols");
  DS_CHECK(a.size(0) == b.size(0), "concat_cols: {} vs {} rows", a.size(0), b.size(0));
  DS_CHECK(a.stride(1) == 1 && b.stride(1) == 1, "concat_cols: columns must be contiguous");
  const int64_t T = a.size(0), A = a.size(1), B = b.size(1);
  const DType dt = a.dtype() == b.dtype() ? a.dtype() : DType::BF16;
  Tensor out = scratch(dt, {T, A + B});
  CopyRowsParams pa{a.data(), a.dtype(), a.stride(0), T, nullptr, out.data(), dt, A + B, T, A};
  check(launch_copy_rows(pa, stream_), "concat_cols");
  char* right = static_cast<char*>(out.data()) + A * int64_t(dtype_size(dt));
  CopyRowsParams pb{b.data(), b.dtype(), b.stride(0), T, nullptr, right, dt, A + B, T, B};
  check(launch_copy_rows(pb, stream_), "concat_cols");
  return out;
}

Tensor CudaBackend::contiguous(const Tensor& x) {
  DS_CHECK(x.device() == Device::CUDA, "contiguous: tensor is not on the GPU");
  if (x.is_contiguous()) {  // still a copy: callers may write to the result
    Tensor out = scratch(x.dtype(), x.shape());
    if (out.nbytes())
      check(cudaMemcpyAsync(out.data(), x.data(), out.nbytes(), cudaMemcpyDeviceToDevice, stream_), "contiguous");
    return out;
  }
  Tensor out = scratch(x.dtype(), x.shape());
  StridedCopyParams p{};
  p.src = x.data();
  p.src_dtype = x.dtype();
  p.ndim = x.ndim();
  for (int d = 0; d < x.ndim(); ++d) {
    p.sizes[d] = x.size(d);
    p.strides[d] = x.stride(d);
  }
  p.dst = out.data();
  p.dst_dtype = x.dtype();
  check(launch_strided_copy(p, stream_), "contiguous");
  return out;
}

}  // namespace dsserve::cuda
