// CUDA backend: dense ops (embedding, RMSNorm with its FP8 quantization, linear, the SiLU-gated
// MLP, per-head linear, RoPE, SiLU-and-mul, residual add, row gathers and copies). Shapes are
// checked here; kernels are in their families.
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/elementwise/elementwise.h"
#include "backend/cuda/elementwise/silu_mul_quant.h"
#include "backend/cuda/embedding_norm_rope/norm_rope.h"
#include "backend/cuda/embedding_norm_rope/rms_norm_quant.h"
#include "backend/cuda/gemm/fp8_decode_gemm.h"
#include "backend/cuda/gemm/fp8_quant.h"
#include "backend/cuda/gemm/sm90/fp8_gemm_sm90.h"
#include "backend/cuda/gemm/sm90/head_quant.h"
#include "backend/cuda/gemm/w8a8_decode_gemm.h"
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

namespace {

// The vectorised norm (rms_norm_quant.h) over x, or null when its layout needs the scalar kernel.
bool fill_norm_quant(RmsNormQuantParams& p, const Tensor& x, Tensor* residual, const Tensor& w, const Tensor& out,
                     float eps) {
  p = RmsNormQuantParams{};
  p.x = x.data(), p.x_dtype = x.dtype(), p.x_stride = x.stride(0);
  if (residual) p.residual = residual->data(), p.res_dtype = residual->dtype(), p.res_stride = residual->stride(0);
  p.weight = w.ptr<float>();
  p.out = out.data();
  p.rows = x.size(0), p.cols = x.size(1), p.eps = eps;
  return rms_norm_quant_supported(p);
}

}  // namespace

Activation CudaBackend::norm(const Tensor& x_in, Tensor* residual, const Tensor& w, float eps, bool quantize) {
  const char* op = residual ? "add_rms_norm" : "rms_norm";
  check_rows(x_in, op);
  if (residual) {
    check_rows(*residual, op);
    DS_CHECK(residual->shape() == x_in.shape(), "{}: shapes {} and {} differ", op, residual->shape().str(),
             x_in.shape().str());
    DS_CHECK(is_float(residual->dtype()) && residual->stride(1) == 1, "{}: residual must be F32/BF16 rows", op);
  }
  Tensor x = is_float(x_in.dtype()) && x_in.stride(1) == 1 ? x_in : as_dtype(x_in, DType::BF16, false);
  const int64_t T = x.size(0), H = x.size(1);
  DS_CHECK(w.numel() == H && w.dtype() == DType::F32, "{}: weight has {} values for {} columns", op, w.numel(), H);
  Activation a(scratch(DType::BF16, {T, H}));
  RmsNormQuantParams q;
  if (fused_decode_ && fill_norm_quant(q, x, residual, w, a.x, eps)) {  // the vectorised kernel
    if (quantize && H % 128 == 0 && T > 0) {
      const int64_t tq = round_up(T, 8);
      a.q = scratch(DType::F8_E4M3, {tq, H});
      a.q_scale = scratch(DType::F32, {H / 128, tq});
      q.q = a.q.ptr<uint8_t>(), q.scale = a.q_scale.ptr<float>(), q.q_rows = tq;
    }
    check(launch_rms_norm_quant(q, stream_), op);
    return a;
  }
  RmsNormParams p{x.data(), x.dtype(), x.stride(0), residual ? residual->data() : nullptr,
                  residual ? residual->dtype() : DType::BF16, residual ? residual->stride(0) : 0, w.ptr<float>(),
                  a.x.data(), DType::BF16, T, H, eps};
  check(launch_rms_norm(p, stream_), op);
  return a;
}

Tensor CudaBackend::rms_norm(const Tensor& x, const Tensor& w, float eps) { return norm(x, nullptr, w, eps, false).x; }
Activation CudaBackend::rms_norm_quant(const Tensor& x, const Tensor& w, float eps) {
  return norm(x, nullptr, w, eps, fused_decode_);
}
Tensor CudaBackend::add_rms_norm(Tensor& residual, const Tensor& x, const Tensor& w, float eps) {
  return norm(x, &residual, w, eps, false).x;
}
Activation CudaBackend::add_rms_norm_quant(Tensor& residual, const Tensor& x, const Tensor& w, float eps) {
  return norm(x, &residual, w, eps, fused_decode_);
}

void CudaBackend::fp8_operand(const Activation& x, int64_t K, int64_t tp, Tensor& q, Tensor& q_scale) {
  if (x.q.defined() && x.q.size(0) == tp && x.q.size(1) == K && x.q.is_contiguous() && x.q_scale.defined() &&
      x.q_scale.shape() == Shape({K / 128, tp})) {
    q = x.q, q_scale = x.q_scale;
    return;
  }
  DS_CHECK(x.x.defined(), "linear: an FP8 input of {} rows x {} columns without its rows cannot be re-quantized to {} "
           "rows", x.q.defined() ? x.q.size(0) : 0, K, tp);
  Tensor src = x.x;
  if (!is_float(src.dtype()) || src.stride(1) != 1) src = as_dtype(src, DType::BF16, true);
  q = scratch(DType::F8_E4M3, {tp, K});
  q_scale = scratch(DType::F32, {K / 128, tp});
  Fp8QuantParams p{};
  p.x = src.data(), p.x_dtype = src.dtype(), p.x_stride = src.stride(0), p.src_rows = src.size(0);
  p.q = q.ptr<uint8_t>(), p.scale = q_scale.ptr<float>(), p.rows = tp, p.K = K;
  check(launch_fp8_quant(p, stream_), "fp8 activation quantization");
}

Tensor CudaBackend::linear(const Tensor& x, const LinearWeight& w) { return linear(Activation(x), w); }

Tensor CudaBackend::linear(const Activation& a, const LinearWeight& w) {
  const int64_t T = a.tokens(), K = w.in_features, N = w.out_features;
  if (a.x.defined()) {
    check_rows(a.x, "linear");
    DS_CHECK(a.x.size(1) == K, "linear: input has {} features, weight expects {}", a.x.size(1), K);
  }
  const auto& lin = *static_cast<const CudaLinear*>(w.impl.get());
  if (lin.use == LinearUse::Router) {
    DS_CHECK(a.x.defined(), "linear: the router needs its input rows");
    Tensor x = as_dtype(a.x, DType::F32, true);
    Tensor out = scratch(DType::F32, {T, N});
    const LinearSegment& s = lin.segments[0];
    GemmArgs g;
    g.kind = GemmKind::F32;
    g.m = N, g.n = T, g.k = K;
    g.w = s.weight.data(), g.ldw = K;
    g.x = x.data(), g.ldx = x.stride(0);
    g.d = out.data(), g.ldd = N;
    g.d_type = CUDA_R_32F;
    gemm_->run(g);
    return out;
  }
  const DType out_dtype = lin.use == LinearUse::LmHead ? DType::F32 : DType::BF16;
  const bool fp8 = lin.any_fp8();
  if (fp8 && !hopper_kernels()) {  // the sm80 kernel set: no FP8 tensor cores (cuda_ops_w8a16.cpp)
    DS_CHECK(a.x.defined(), "linear: the sm80 kernel set needs the input rows, not only their FP8 quantization");
    return linear_w8a16(a.x, lin, N, out_dtype);
  }
  // FP8 segments: the W8A16 decode kernel by the measured rule, the W8A8 one on the fused decode
  // path, at larger sizes the sm90 GEMM where set_sm90_fp8_gemm asks for it, else cuBLASLt's
  // block-scaled product, which needs at least 8 token rows: padded to a multiple of 8 (zero rows,
  // scale 1).
  const Fp8LinearPath path = fp8 ? fp8_linear_path(T, N) : Fp8LinearPath::None;
  const bool fp8_sm90 = path == Fp8LinearPath::Cublaslt && T >= fp8_sm90_min_tokens_;
  if (fp8) last_fp8_linear_ = path;
  const int64_t Tp = path == Fp8LinearPath::Cublaslt ? round_up(std::max<int64_t>(T, 1), 8) : T;
  Tensor out_full = scratch(out_dtype, {Tp, N});
  Tensor out(out_full.data(), out_dtype, {T, N}, Device::CUDA, out_full.storage());
  if (T == 0) return out;
  // Quantized segments from quant_expand_min_tokens_ on: channel INT8 on cuBLASLt's int8 product,
  // the others expanded to BF16 and multiplied as BF16 (quant_dequant.h).
  const bool quant_dequant = T >= quant_expand_min_tokens_;
  auto int8_lt = [&](const LinearSegment& s) {
    return s.quant && s.quant_kind == QuantKind::I8Channel && quant_dequant &&
           int8_lt_supported(s.weight.data(), s.rows, K, T);
  };
  bool any_bf16 = false;  // BF16 products, W4A16 (AWQ) segments and expanded ones read BF16 activations
  const LinearSegment* int8_seg = nullptr;
  for (const auto& s : lin.segments) {
    const bool int8_kernel = (s.quant && s.quant_kind != QuantKind::W4A16 && !quant_dequant) || int8_lt(s);
    any_bf16 = any_bf16 || (!s.fp8 && !int8_kernel);
    if (int8_kernel) int8_seg = &s;
  }
  Tensor x8, x8_scale;  // INT8 W8A8 segments: the activations quantized once, as their kind wants
  if (int8_seg) {
    DS_CHECK(a.x.defined(), "linear: INT8 segments need the input rows, not only their FP8 quantization");
    quantize_int8(a.x, int8_seg->quant_kind, T, nullptr, x8, x8_scale);
  }
  Tensor xb;  // BF16 operand with aligned rows, for BF16 products, W4A16 segments and the W8A16 kernel
  if (any_bf16 || path == Fp8LinearPath::W8A16Decode) {
    DS_CHECK(a.x.defined(), "linear: BF16 segments need the input rows, not only their FP8 quantization");
    xb = as_dtype(a.x, DType::BF16, true);
  }
  Tensor xq, xs;
  if (path == Fp8LinearPath::Cublaslt) fp8_operand(a, K, Tp, xq, xs);
  if (path == Fp8LinearPath::W8A8Decode) fp8_operand(a, K, round_up(T, 8), xq, xs);
  for (const auto& s : lin.segments) {
    if (s.quant) {
      if (int8_lt(s))
        quant_linear_int8_lt(s, x8, x8_scale, out);
      else if (quant_dequant)
        quant_linear_dequantized(s, xb, out);
      else
        quant_linear_segment(s, xb, x8, x8_scale, out);
      continue;
    }
    char* d = static_cast<char*>(out_full.data()) + s.row0 * int64_t(dtype_size(out_dtype));
    if (s.fp8 && path == Fp8LinearPath::W8A8Decode) {
      W8A8DecodeParams p;
      p.xq = xq.ptr<uint8_t>(), p.ldxq = K;
      p.xs = xs.ptr<float>(), p.xs_ld = xs.size(1);
      p.w = static_cast<const uint8_t*>(s.weight.data());
      p.w_scale = s.scale.ptr<float>(), p.scale_ld = s.scale.size(1);
      p.T = T, p.rows = s.rows, p.K = K;
      p.y = d, p.y_dtype = out_dtype, p.ldy = N;
      p.pdl = pdl_;
      check(launch_w8a8_decode(p, stream_), "fp8 decode linear (w8a8)");
      continue;
    }
    if (s.fp8 && path == Fp8LinearPath::W8A16Decode) {
      Fp8DecodeGemmParams p;
      p.x = xb.data(), p.ldx = xb.stride(0);
      p.w = static_cast<const uint8_t*>(s.weight.data());
      p.w_scale = s.scale.ptr<float>(), p.scale_ld = s.scale.size(1);
      p.y = d, p.y_dtype = out_dtype, p.ldy = N;
      p.T = T, p.rows = s.rows, p.K = K;
      check(launch_fp8_decode_gemm(p, stream_), "fp8 decode linear (w8a16)");
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
    GemmArgs g;
    g.m = s.rows, g.k = K;
    g.w = s.weight.data(), g.ldw = K;
    g.ldd = N;
    g.d = d;
    g.d_type = out_dtype == DType::F32 ? CUDA_R_32F : CUDA_R_16BF;
    if (s.fp8) {
      g.kind = GemmKind::Fp8BlockScaled;
      g.n = Tp;
      g.x = xq.data(), g.ldx = K;
      g.w_scale = s.scale.ptr<float>();
      g.x_scale = xs.ptr<float>();
    } else {
      g.kind = GemmKind::Bf16;
      g.n = T;
      g.x = xb.data(), g.ldx = xb.stride(0);
    }
    gemm_->run(g);
  }
  return out;
}

Tensor CudaBackend::mlp(const Activation& a, const LinearWeight& gate_up, const LinearWeight& down) {
  const auto& gu = *static_cast<const CudaLinear*>(gate_up.impl.get());
  const auto& dn = *static_cast<const CudaLinear*>(down.impl.get());
  if (!fused_decode_) return Backend::mlp(a, gate_up, down);
  const int64_t T = a.tokens(), H = gate_up.in_features, I = gate_up.out_features / 2;
  DS_CHECK(gate_up.out_features % 2 == 0 && down.in_features == I, "mlp: gate_up [{}, {}] and down [{}, {}] do not fit",
           gate_up.out_features, H, down.out_features, down.in_features);
  bool down_bf16 = false;
  for (const auto& s : dn.segments) down_bf16 = down_bf16 || !s.fp8;
  const bool down_fp8 = dn.any_fp8();
  last_mlp_fused_ = false;
  // gate_up with SiLU-and-mul and the down input's quantization in its epilogue: one FP8 segment,
  // the W8A8 decode kernel for both products, and a down projection that reads only FP8.
  if (fused_mlp_ && T > 0 && gu.use == LinearUse::Projection && gu.segments.size() == 1 && gu.segments[0].fp8 &&
      down_fp8 && !down_bf16 && fp8_linear_path(T) == Fp8LinearPath::W8A8Decode && I % 128 == 0) {
    const int64_t tq = round_up(T, 8);
    Tensor xq, xs;
    fp8_operand(a, H, tq, xq, xs);
    const LinearSegment& s = gu.segments[0];
    W8A8DecodeParams p;
    p.xq = xq.ptr<uint8_t>(), p.ldxq = H, p.xs = xs.ptr<float>(), p.xs_ld = tq;
    p.w = static_cast<const uint8_t*>(s.weight.data());
    p.w_scale = s.scale.ptr<float>(), p.scale_ld = s.scale.size(1);
    p.T = T, p.rows = 2 * I, p.K = H;
    p.epilogue = W8A8Epilogue::SiluMulQuant;
    Activation act;
    act.q_tokens = T;
    act.q = scratch(DType::F8_E4M3, {tq, I});
    act.q_scale = scratch(DType::F32, {I / 128, tq});
    p.yq = act.q.ptr<uint8_t>(), p.ldyq = I, p.ys = act.q_scale.ptr<float>(), p.ys_ld = tq, p.pad_rows = tq;
    p.pdl = pdl_;
    if (w8a8_decode_supported(p)) {
      check(launch_w8a8_decode(p, stream_), "mlp gate_up (w8a8, SiLU-and-mul, quantized)");
      last_mlp_fused_ = true;
      return linear(act, down);
    }
  }
  Tensor g = linear(a, gate_up);
  if (!down_fp8 || I % 128 != 0 || T == 0) return linear(silu_mul(g), down);
  // SiLU-and-mul writes the down projection's FP8 input (and its BF16 rows where down needs them).
  const Fp8LinearPath path = fp8_linear_path(T, down.out_features);
  const int64_t tq = path == Fp8LinearPath::Cublaslt ? round_up(std::max<int64_t>(T, 1), 8) : round_up(T, 8);
  Activation act;
  act.q_tokens = T;
  if (down_bf16 || path == Fp8LinearPath::W8A16Decode) act.x = scratch(DType::BF16, {T, I});
  act.q = scratch(DType::F8_E4M3, {tq, I});
  act.q_scale = scratch(DType::F32, {I / 128, tq});
  SiluMulQuantParams sp{g.data(), g.dtype(), g.stride(0), act.x.defined() ? act.x.data() : nullptr,
                        act.q.ptr<uint8_t>(), act.q_scale.ptr<float>(), T, tq, I};
  check(launch_silu_mul_quant(sp, stream_), "silu_mul (quantized)");
  return linear(act, down);
}

Tensor CudaBackend::head_linear(const Tensor& x_in, const HeadWeight& w) {
  DS_CHECK(x_in.ndim() == 3 && x_in.size(1) == w.heads && x_in.size(2) == w.in_features,
           "head_linear: input {} does not match weight [{}, {}, {}]", x_in.shape().str(), w.heads, w.out_features,
           w.in_features);
  Tensor out = scratch(DType::BF16, {x_in.size(0), w.heads, w.out_features});
  head_linear_into(x_in, w, out);
  return out;
}

void CudaBackend::head_linear_into(const Tensor& x_in, const HeadWeight& w, Tensor& out) {
  const auto& hw = *static_cast<const CudaHeadWeight*>(w.impl.get());
  const int64_t T = x_in.size(0), n = w.heads, in = w.in_features, out_f = w.out_features;
  DS_CHECK(out.ndim() == 3 && out.size(0) == T && out.size(1) == n && out.size(2) >= out_f && out.stride(2) == 1 &&
               out.dtype() == DType::BF16,
           "head_linear: output {} for {} tokens of [{}, {}]", out.shape().str(), T, n, out_f);
  last_head_fp8_ = false;
  if (T == 0) return;
  if (hw.fp8 && head_fp8_ && hopper_kernels() && x_in.stride(2) == 1 && is_float(x_in.dtype()) &&
      fp8_gemm_sm90_device_ok()) {
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
    p.d = out.data(), p.ldd = out.stride(0), p.d_batch_stride = out.stride(1);
    p.M = T, p.N = out_f, p.K = in, p.batch = int(n);
    if (fp8_gemm_sm90_supported(p)) {
      check(launch_fp8_gemm_sm90(p, stream_), "head_linear (sm90 fp8 batch)");
      last_head_fp8_ = true;
      return;
    }
  }
  Tensor x = as_dtype(x_in, DType::BF16, true);
  GemmArgs a;
  a.kind = GemmKind::Bf16;
  a.m = out_f, a.n = T, a.k = in;
  a.w = hw.weight.data(), a.ldw = in, a.stride_w = out_f * in;
  a.x = x.data(), a.ldx = x.stride(0), a.stride_x = x.stride(1);
  a.d = out.data(), a.ldd = out.stride(0), a.stride_d = out.stride(1);
  a.batch = int(n);
  gemm_->run(a);
}

Tensor CudaBackend::mla_absorb_q(const Tensor& q_heads, const HeadWeight& w_uk_t, const Tensor& positions,
                                 const Tensor& table) {
  if (!fused_decode_) return Backend::mla_absorb_q(q_heads, w_uk_t, positions, table);
  const int64_t T = q_heads.size(0), n = q_heads.size(1), dr = table.size(1), dn = q_heads.size(2) - dr;
  const int64_t kr = w_uk_t.out_features;
  DS_CHECK(q_heads.ndim() == 3 && w_uk_t.heads == n && w_uk_t.in_features == dn && q_heads.stride(2) == 1 &&
               is_float(q_heads.dtype()),
           "mla_absorb_q: queries {} for W_UK^T [{}, {}, {}] and RoPE width {}", q_heads.shape().str(), w_uk_t.heads,
           kr, w_uk_t.in_features, dr);
  DS_CHECK(positions.dtype() == DType::I32 && positions.numel() == T, "mla_absorb_q: {} positions for {} tokens",
           positions.numel(), T);
  // W_UK^T q_nope straight into the first kv_lora_rank columns of each head, RoPE'd q_pe into the rest.
  Tensor q_full = scratch(DType::BF16, {T, n, kr + dr});
  Tensor latent = q_full.slice(2, 0, kr);
  head_linear_into(q_heads.slice(2, 0, dn), w_uk_t, latent);
  if (T == 0) return q_full;
  Tensor q_pe = q_heads.slice(2, dn, dn + dr);
  RopeParams p{q_pe.data(), q_pe.dtype(), q_pe.stride(0), q_pe.stride(1), positions.ptr<int32_t>(), table.ptr<float>(),
               T, n, dr, table.size(0)};
  p.out = static_cast<uint16_t*>(q_full.data()) + kr;
  p.out_stride_t = n * (kr + dr), p.out_stride_h = kr + dr;
  check(launch_rope(p, stream_), "mla_absorb_q (RoPE)");
  return q_full;
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
