// CUDA backend: the products of quantized weights (AWQ W4A16, INT8 W8A8; quant/quant_gemm.h) for
// linear segments and routed experts. INT8 activations are quantized once per call (per token, or
// per token and 128 channels) and shared by the call's segments. Experts run on the same two paths
// as the FP8 / BF16 ones (cuda_ops_moe.cpp): grouped work items at decode sizes (no host
// synchronisation: capturable), per-expert row segments after reading the counts back otherwise.
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/elementwise/elementwise.h"
#include "backend/cuda/moe/moe_grouped_gemm.h"
#include "backend/cuda/quant/int8_quant.h"
#include "backend/cuda/quant/int8_rescale.h"
#include "backend/cuda/quant/quant_dequant.h"
#include "core/error.h"

namespace dsserve::cuda {

namespace {

bool is_int8(QuantKind k) { return k != QuantKind::W4A16; }

// The weights of segment-like data: w / scale of one matrix with `rows` rows.
QuantWeights quant_weights(QuantKind kind, const void* w, const Tensor& scale, const void* scale_at, int group,
                           int64_t rows, int64_t in) {
  QuantWeights q;
  q.kind = kind;
  q.w = w;
  q.scale = scale_at;
  q.scale_ld = kind == QuantKind::W4A16 ? rows : kind == QuantKind::I8Block ? scale.size(-1) : 0;
  q.group = group;
  q.N = rows;
  q.K = in;
  return q;
}

}  // namespace

void CudaBackend::quantize_int8(const Tensor& x_in, QuantKind kind, int64_t rows, const int32_t* row_index,
                                Tensor& q, Tensor& s) {
  const bool floaty = (x_in.dtype() == DType::BF16 || x_in.dtype() == DType::F32) && x_in.stride(1) == 1;
  const Tensor x = floaty ? x_in : as_dtype(x_in, DType::BF16, false);
  const int64_t K = x.size(1);
  const bool per_block = kind == QuantKind::I8Block;
  q = scratch(DType::I8, {rows, K});
  s = per_block ? scratch(DType::F32, {rows, (K + 127) / 128}) : scratch(DType::F32, {rows});
  Int8QuantParams p;
  p.x = x.data(), p.x_dtype = x.dtype(), p.x_stride = x.stride(0);
  p.row_index = row_index;
  p.q = q.ptr<int8_t>(), p.ldq = K;
  p.scale = s.ptr<float>(), p.scale_ld = per_block ? s.size(1) : 0;
  p.rows = rows, p.K = K, p.per_block = per_block;
  check(launch_int8_quant(p, stream_), "int8 activation quantization");
}

void CudaBackend::quant_linear_segment(const LinearSegment& seg, const Tensor& xb, const Tensor& xq, const Tensor& xs,
                                       Tensor& out) {
  const int64_t T = out.size(0), K = is_int8(seg.quant_kind) ? xq.size(1) : xb.size(1);
  QuantGemmParams p;
  p.w = quant_weights(seg.quant_kind, seg.weight.data(), seg.scale, seg.scale.data(), seg.group, seg.rows, K);
  if (is_int8(seg.quant_kind)) {
    p.x.x = xq.data(), p.x.ldx = xq.stride(0);
    p.x.x_scale = xs.ptr<float>(), p.x.x_scale_ld = xs.ndim() == 2 ? xs.size(1) : 0;
  } else {
    p.x.x = xb.data(), p.x.ldx = xb.stride(0);
  }
  p.y = static_cast<char*>(out.data()) + seg.row0 * int64_t(dtype_size(out.dtype()));
  p.y_dtype = out.dtype();
  p.ldy = out.stride(0);
  p.T = T;
  const QuantGemmPlan plan = plan_quant_gemm(seg.quant_kind, T, seg.rows, K, seg.group, multiprocessors());
  Tensor ws;
  if (const int64_t n = quant_gemm_workspace_floats(plan, T, seg.rows); n > 0) {
    ws = scratch(DType::F32, {n});
    p.workspace = ws.ptr<float>();
    p.counters = quant_counters_.ptr<int32_t>();
  }
  check(launch_quant_gemm(p, multiprocessors(), stream_), "quantized linear");
}

bool CudaBackend::int8_lt_supported(const void* w, int64_t N, int64_t K, int64_t T) {
  GemmArgs g;  // the activations and the int32 sums come from the scratch arena (256-byte aligned)
  g.kind = GemmKind::Int8;
  g.m = N, g.n = std::max<int64_t>(T, 1), g.k = K;
  g.w = w, g.ldw = K;
  g.x = reinterpret_cast<const void*>(uintptr_t(256)), g.ldx = K;
  g.d = reinterpret_cast<void*>(uintptr_t(256)), g.ldd = N;
  g.d_type = CUDA_R_32I;
  return gemm_->supported(g);
}

void CudaBackend::int8_channel_product(const QuantWeights& wq, const int8_t* xq, int64_t ldx, const float* xs,
                                       int64_t T, void* y, DType y_dtype, int64_t ldy) {
  if (T == 0) return;
  Tensor d = scratch(DType::I32, {T, wq.N});
  GemmArgs g;
  g.kind = GemmKind::Int8;
  g.m = wq.N, g.n = T, g.k = wq.K;
  g.w = wq.w, g.ldw = wq.K;
  g.x = xq, g.ldx = ldx;
  g.d = d.data(), g.ldd = wq.N;
  g.d_type = CUDA_R_32I;
  gemm_->run(g);
  Int8RescaleParams p;
  p.d = d.ptr<int32_t>(), p.ldd = wq.N;
  p.x_scale = xs, p.w_scale = static_cast<const float*>(wq.scale);
  p.y = y, p.y_dtype = y_dtype, p.ldy = ldy;
  p.T = T, p.N = wq.N;
  check(launch_int8_rescale(p, stream_), "channel int8 product (scales)");
}

void CudaBackend::quant_linear_int8_lt(const LinearSegment& seg, const Tensor& xq, const Tensor& xs, Tensor& out) {
  const int64_t K = xq.size(1);
  int8_channel_product(quant_weights(seg.quant_kind, seg.weight.data(), seg.scale, seg.scale.data(), seg.group,
                                     seg.rows, K),
                       xq.ptr<int8_t>(), xq.stride(0), xs.ptr<float>(), out.size(0),
                       static_cast<char*>(out.data()) + seg.row0 * int64_t(dtype_size(out.dtype())), out.dtype(),
                       out.stride(0));
}

void CudaBackend::quant_linear_dequantized(const LinearSegment& seg, const Tensor& xb, Tensor& out) {
  const int64_t T = out.size(0), K = xb.size(1);
  Tensor w = scratch(DType::BF16, {seg.rows, K});
  check(launch_quant_dequantize(
            quant_weights(seg.quant_kind, seg.weight.data(), seg.scale, seg.scale.data(), seg.group, seg.rows, K),
            w.data(), K, stream_),
        "quantized linear (expansion to bf16)");
  GemmArgs a;
  a.kind = GemmKind::Bf16;
  a.m = seg.rows, a.n = T, a.k = K;
  a.w = w.data(), a.ldw = K;
  a.x = xb.data(), a.ldx = xb.stride(0);
  a.d = static_cast<char*>(out.data()) + seg.row0 * int64_t(dtype_size(out.dtype()));
  a.ldd = out.stride(0);
  a.d_type = out.dtype() == DType::F32 ? CUDA_R_32F : CUDA_R_16BF;
  gemm_->run(a);
}

std::vector<std::vector<uint16_t>> CudaBackend::expanded_segments(const LinearWeight& w) {
  const auto& lin = *static_cast<const CudaLinear*>(w.impl.get());
  std::vector<std::vector<uint16_t>> out;
  for (const auto& seg : lin.segments) {
    if (!seg.quant) continue;
    const int64_t K = w.in_features;
    Tensor d = scratch(DType::BF16, {seg.rows, K});
    check(launch_quant_dequantize(
              quant_weights(seg.quant_kind, seg.weight.data(), seg.scale, seg.scale.data(), seg.group, seg.rows, K),
              d.data(), K, stream_),
          "expansion to bf16");
    std::vector<uint16_t>& h = out.emplace_back(size_t(seg.rows * K));
    check(cudaMemcpyAsync(h.data(), d.data(), h.size() * 2, cudaMemcpyDeviceToHost, stream_), "expansion to host");
    check(cudaStreamSynchronize(stream_), "expansion to host");
  }
  return out;
}

Tensor CudaBackend::moe_experts_quant(const Tensor& x_in, const ExpertWeights& w, const RouterOutput& route,
                                      bool grouped) {
  const auto& ew = *static_cast<const CudaExperts*>(w.impl.get());
  const int64_t T = x_in.size(0), H = w.hidden, I = w.intermediate, E = w.num_experts, K = route.topk_ids.size(1);
  const int64_t pairs = T * K;
  const QuantKind kind = ew.quant_kind;
  const bool int8 = is_int8(kind);
  const size_t gu_bytes = ew.gate_up.nbytes() / size_t(E), dn_bytes = ew.down.nbytes() / size_t(E);
  const int64_t gu_scale = ew.gate_up_scale.numel() / E, dn_scale = ew.down_scale.numel() / E;
  auto gate_up_of = [&](int64_t e) {
    return quant_weights(kind, static_cast<const char*>(ew.gate_up.data()) + size_t(e) * gu_bytes, ew.gate_up_scale,
                         static_cast<const char*>(ew.gate_up_scale.data()) + size_t(e * gu_scale) * 4, ew.group,
                         2 * I, H);
  };
  auto down_of = [&](int64_t e) {
    return quant_weights(kind, static_cast<const char*>(ew.down.data()) + size_t(e) * dn_bytes, ew.down_scale,
                         static_cast<const char*>(ew.down_scale.data()) + size_t(e * dn_scale) * 4, ew.group, H, I);
  };
  auto activations = [&](const Tensor& xb, const Tensor& xq, const Tensor& xs, int64_t row0) {
    QuantActivations a;
    if (int8) {
      a.x = xq.ptr<int8_t>() + row0 * xq.stride(0), a.ldx = xq.stride(0);
      a.x_scale_ld = xs.ndim() == 2 ? xs.size(1) : 0;
      a.x_scale = xs.ptr<float>() + row0 * (xs.ndim() == 2 ? xs.size(1) : 1);
    } else {
      a.x = static_cast<const char*>(xb.data()) + row0 * xb.stride(0) * 2, a.ldx = xb.stride(0);
    }
    return a;
  };
  Tensor out = scratch(DType::BF16, {T, H});

  if (grouped) {
    const int rows_per_item = moe_grouped_rows_per_item(pairs, E);
    const int64_t max_items = moe_max_work_items(pairs, E, rows_per_item);
    // 1. Pairs grouped by expert, on the device.
    Tensor counts = scratch(DType::I32, {E}), offsets = scratch(DType::I32, {E + 1}), active = scratch(DType::I32, {E});
    Tensor totals = scratch(DType::I32, {2});
    Tensor items = scratch(DType::I32, {max_items, 4});
    Tensor sorted_pair = scratch(DType::I32, {pairs}), pair_row = scratch(DType::I32, {pairs});
    MoeAlignParams ap{};
    ap.topk_ids = route.topk_ids.ptr<int32_t>();
    ap.counts = counts.ptr<int32_t>(), ap.offsets = offsets.ptr<int32_t>(), ap.active = active.ptr<int32_t>();
    ap.num_active = totals.ptr<int32_t>(), ap.num_items = totals.ptr<int32_t>() + 1;
    ap.items = reinterpret_cast<MoeWorkItem*>(items.data());
    ap.sorted_pair = sorted_pair.ptr<int32_t>(), ap.pair_row = pair_row.ptr<int32_t>();
    ap.experts_run = static_cast<unsigned long long*>(experts_run_device_.data());
    ap.pairs = int(pairs), ap.experts = int(E), ap.rows_per_item = rows_per_item;
    check(launch_moe_align(ap, stream_), "moe align");
    // 2. gate_up with SiLU-and-mul (inputs gathered by token), rows in expert order.
    Tensor xb, xq, xs;
    if (int8)
      quantize_int8(x_in, kind, T, nullptr, xq, xs);
    else
      xb = as_dtype(x_in, DType::BF16, /*need_packed_rows=*/true);
    QuantGroupedParams gp;
    gp.sorted_pair = sorted_pair.ptr<int32_t>(), gp.top_k = int(K);
    gp.items = ap.items, gp.num_items = ap.num_items;
    gp.rows_per_item = rows_per_item, gp.max_items = max_items;
    Tensor act = scratch(DType::BF16, {pairs, I});
    gp.kind = QuantGroupedKind::GateUp;
    gp.w = gate_up_of(0), gp.w_expert_bytes = int64_t(gu_bytes), gp.scale_expert_elems = gu_scale;
    gp.x = activations(xb, xq, xs, 0);
    gp.y = act.data(), gp.ldy = I;
    check(launch_quant_grouped_gemm(gp, stream_), "moe grouped gate_up (quantized)");
    // 3. down, rows in pair order.
    Tensor aq, as;
    if (int8) quantize_int8(act, kind, pairs, nullptr, aq, as);
    Tensor y = scratch(DType::BF16, {pairs, H});
    gp.kind = QuantGroupedKind::Down;
    gp.w = down_of(0), gp.w_expert_bytes = int64_t(dn_bytes), gp.scale_expert_elems = dn_scale;
    gp.x = activations(act, aq, as, 0);
    gp.y = y.data(), gp.ldy = H;
    check(launch_quant_grouped_gemm(gp, stream_), "moe grouped down (quantized)");
    // 4. Weighted sum back in token order.
    MoeUnpermuteParams up{y.data(), pair_row.ptr<int32_t>(), route.topk_weights.ptr<float>(), out.data(), T, H, int(K)};
    check(launch_moe_unpermute(up, stream_), "moe unpermute");
    return out;
  }

  // Per-expert row segments (prefill sizes): counts back on the host, rows scattered into
  // segments padded to multiples of 8, one product per active expert.
  MoeSegments sg = moe_segments(route, E);
  const int64_t R = sg.total_rows;
  const std::vector<int32_t>&h_counts = sg.counts, &seg_off = sg.offset, &seg_rows = sg.rows;
  const Tensor &row_token = sg.row_token, &pair_row = sg.pair_row;
  if (R == 0) {
    check(cudaMemsetAsync(out.data(), 0, out.nbytes(), stream_), "moe zero output");
    return out;
  }

  // Experts of at least quant_expand_min_tokens_ rows: expanded to BF16 (one expert at a time, the scratch
  // reused in stream order) and multiplied by cuBLASLt; the others on the streaming kernel.
  // Channel INT8 takes cuBLASLt's int8 product there instead (int32 sums, then the scales).
  auto expand = [&](int64_t e) { return seg_rows[e] >= quant_expand_min_tokens_; };
  bool any_expand = false, any_kernel = false;
  int64_t expand_rows = 0;
  for (int64_t e = 0; e < E; ++e)
    if (h_counts[e] > 0) {
      (expand(e) ? any_expand : any_kernel) = true;
      if (expand(e)) expand_rows = seg_rows[e];
    }
  const bool lt_int8 = kind == QuantKind::I8Channel && any_expand &&
                       int8_lt_supported(ew.gate_up.data(), 2 * I, H, expand_rows) &&
                       int8_lt_supported(ew.down.data(), H, I, expand_rows);
  const bool int8_rows = int8 && (any_kernel || (lt_int8 && any_expand));  // activations quantized
  Tensor xs_rows, xq, xs;  // the inputs in segment order (padding rows zero)
  if (int8_rows) quantize_int8(x_in, kind, R, row_token.ptr<int32_t>(), xq, xs);
  if (!int8 || (any_expand && !lt_int8)) {
    const Tensor x = as_dtype(x_in, DType::BF16, false);
    xs_rows = scratch(DType::BF16, {R, H});
    CopyRowsParams cp{x.data(), x.dtype(), x.stride(0), T, row_token.ptr<int32_t>(), xs_rows.data(), DType::BF16, H, R, H};
    check(launch_copy_rows(cp, stream_), "moe gather");
  }
  Tensor w_bf16 = any_expand && !lt_int8 ? scratch(DType::BF16, {std::max(2 * I * H, H * I)}) : Tensor();
  auto run = [&](int64_t e, const QuantWeights& wq, const Tensor& xb, const QuantActivations& a, Tensor& dst) {
    char* y = static_cast<char*>(dst.data()) + int64_t(seg_off[e]) * dst.stride(0) * 2;
    if (expand(e) && lt_int8) {
      int8_channel_product(wq, static_cast<const int8_t*>(a.x), a.ldx, a.x_scale, seg_rows[e], y, DType::BF16,
                           dst.stride(0));
      return;
    }
    if (expand(e)) {
      check(launch_quant_dequantize(wq, w_bf16.data(), wq.K, stream_), "moe expert (expansion to bf16)");
      GemmArgs g;
      g.kind = GemmKind::Bf16;
      g.m = wq.N, g.n = seg_rows[e], g.k = wq.K;
      g.w = w_bf16.data(), g.ldw = wq.K;
      g.x = static_cast<const char*>(xb.data()) + int64_t(seg_off[e]) * xb.stride(0) * 2, g.ldx = xb.stride(0);
      g.d = y, g.ldd = dst.stride(0);
      g.d_type = CUDA_R_16BF;
      gemm_->run(g);
      return;
    }
    QuantGemmParams p;
    p.w = wq;
    p.x = a;
    p.y = y;
    p.y_dtype = DType::BF16;
    p.ldy = dst.stride(0);
    p.T = seg_rows[e];
    const QuantGemmPlan plan = plan_quant_gemm(kind, p.T, wq.N, wq.K, wq.group, multiprocessors());
    Tensor ws;
    if (const int64_t n = quant_gemm_workspace_floats(plan, p.T, wq.N); n > 0) {
      ws = scratch(DType::F32, {n});
      p.workspace = ws.ptr<float>();
      p.counters = quant_counters_.ptr<int32_t>();
    }
    check(launch_quant_gemm(p, multiprocessors(), stream_), "moe expert product (quantized)");
  };
  auto kernel_inputs = [&](const Tensor& xb, const Tensor& q, const Tensor& qs, int64_t e) {
    return int8 && !int8_rows ? QuantActivations{} : activations(xb, q, qs, seg_off[e]);
  };
  Tensor gu = scratch(DType::BF16, {R, 2 * I});
  for (int64_t e = 0; e < E; ++e)
    if (h_counts[e] > 0) run(e, gate_up_of(e), xs_rows, kernel_inputs(xs_rows, xq, xs, e), gu);
  Tensor act = silu_mul(gu);  // [R, I] BF16 (padding rows give zeros)
  Tensor aq, as;
  if (int8_rows) quantize_int8(act, kind, R, nullptr, aq, as);
  Tensor y = scratch(DType::BF16, {R, H});
  for (int64_t e = 0; e < E; ++e)
    if (h_counts[e] > 0) run(e, down_of(e), act, kernel_inputs(act, aq, as, e), y);
  MoeUnpermuteParams up{y.data(), pair_row.ptr<int32_t>(), route.topk_weights.ptr<float>(), out.data(), T, H, int(K)};
  check(launch_moe_unpermute(up, stream_), "moe unpermute");
  return out;
}

}  // namespace dsserve::cuda
