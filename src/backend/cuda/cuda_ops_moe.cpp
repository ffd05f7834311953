// CUDA backend: the DeepSeekMoE router (float32 logits, grouped top-k kernel) and the routed
// experts: (token, expert) pairs are counted and scattered into per-expert row segments (padded
// to multiples of 8 rows, as the FP8 products need), each active expert runs its gate_up and down
// products on its segment (cuBLASLt, FP8 W8A8 or BF16), and a weighted un-permute sums each
// token's top-k rows. The segment sizes are read back to the host to launch the products, so this
// op synchronises the stream once per call (a device-side grouped GEMM would remove that).
#include <numeric>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/elementwise/elementwise.h"
#include "backend/cuda/gemm/fp8_quant.h"
#include "backend/cuda/moe/moe_kernels.h"
#include "core/error.h"

namespace dsserve::cuda {

RouterOutput CudaBackend::moe_route(const Tensor& x, const LinearWeight& gate, const Tensor& bias,
                                    const RouterParams& p) {
  const int64_t T = x.size(0), E = p.num_experts, K = p.top_k, G = p.n_group;
  DS_CHECK(gate.out_features == E && E % G == 0 && K <= E && p.topk_group <= G,
           "moe_route: inconsistent router ({} experts, {} groups, top-{} of top-{} groups)", E, G, K, p.topk_group);
  DS_CHECK(E <= 512 && G <= 32 && K <= 32, "moe_route: {} experts / {} groups / top-{} exceed the kernel's 512 / 32 / 32",
           E, G, K);
  Tensor logits = linear(x, gate);  // float32 (LinearUse::Router)
  DS_CHECK(logits.dtype() == DType::F32, "moe_route: the router must be prepared with LinearUse::Router");
  RouterOutput r{scratch(DType::I32, {T, K}), scratch(DType::F32, {T, K})};
  const bool has_bias = bias.defined() && bias.numel() > 0;
  DS_CHECK(!has_bias || (bias.dtype() == DType::F32 && bias.numel() == E && bias.device() == Device::CUDA),
           "moe_route: bias must be a GPU F32 [{}]", E);
  MoeRouteParams rp{logits.ptr<float>(), has_bias ? bias.ptr<float>() : nullptr, r.topk_ids.ptr<int32_t>(),
                    r.topk_weights.ptr<float>(), int(T), int(E), int(K), int(G), p.topk_group, p.sigmoid,
                    p.norm_topk_prob, p.routed_scaling_factor};
  check(launch_moe_route(rp, stream_), "moe_route");
  return r;
}

Tensor CudaBackend::moe_experts(const Tensor& x_in, const ExpertWeights& w, const RouterOutput& route) {
  DS_CHECK(x_in.ndim() == 2 && x_in.size(1) == w.hidden, "moe_experts: input {} for experts of hidden size {}",
           x_in.shape().str(), w.hidden);
  DS_CHECK(w.first_expert == 0 && w.layer_experts() == w.num_experts,
           "moe_experts: expert-parallel placement (experts {}..{} of {}) is not supported by this CUDA path",
           w.first_expert, w.first_expert + w.num_experts - 1, w.layer_experts());
  const auto& ew = *static_cast<const CudaExperts*>(w.impl.get());
  const int64_t T = x_in.size(0), H = w.hidden, I = w.intermediate, E = w.num_experts, K = route.topk_ids.size(1);
  Tensor out = scratch(DType::BF16, {T, H});
  if (T == 0) return out;
  DS_CHECK(route.topk_ids.dtype() == DType::I32 && route.topk_ids.is_contiguous() &&
               route.topk_weights.dtype() == DType::F32 && route.topk_weights.is_contiguous(),
           "moe_experts: route must be contiguous I32 ids and F32 weights");
  const int64_t pairs = T * K;

  // 1. Rows per expert, back on the host.
  Tensor counts = scratch(DType::I32, {E});
  check(cudaMemsetAsync(counts.data(), 0, size_t(E) * 4, stream_), "moe counts");
  check(launch_moe_count({route.topk_ids.ptr<int32_t>(), counts.ptr<int32_t>(), pairs, int(E)}, stream_),
        "moe count");
  std::vector<int32_t> h_counts(static_cast<size_t>(E));
  check(cudaMemcpyAsync(h_counts.data(), counts.data(), size_t(E) * 4, cudaMemcpyDeviceToHost, stream_),
        "moe counts to host");
  check(cudaStreamSynchronize(stream_), "moe counts (synchronize)");
  std::vector<int32_t> seg_off(static_cast<size_t>(E)), seg_rows(static_cast<size_t>(E));
  int64_t R = 0;
  for (int64_t e = 0; e < E; ++e) {
    experts_run_ += h_counts[e] > 0;
    seg_off[e] = int32_t(R);
    seg_rows[e] = (h_counts[e] + 7) / 8 * 8;
    R += seg_rows[e];
  }
  if (R == 0) {
    check(cudaMemsetAsync(out.data(), 0, out.nbytes(), stream_), "moe zero output");
    return out;
  }

  // 2. Scatter pairs into segments.
  Tensor d_off = upload_i32(seg_off, {E}), d_rows = upload_i32(seg_rows, {E});
  Tensor cursor = scratch(DType::I32, {E}), row_token = scratch(DType::I32, {R}), pair_row = scratch(DType::I32, {pairs});
  Tensor row_seg_start = scratch(DType::I32, {R}), row_seg_rows = scratch(DType::I32, {R});
  check(cudaMemsetAsync(cursor.data(), 0, size_t(E) * 4, stream_), "moe cursor");
  check(cudaMemsetAsync(row_token.data(), 0xff, size_t(R) * 4, stream_), "moe rows");  // -1: padding
  MoeScatterParams sp{route.topk_ids.ptr<int32_t>(), d_off.ptr<int32_t>(),   d_rows.ptr<int32_t>(),
                      cursor.ptr<int32_t>(),         row_token.ptr<int32_t>(), pair_row.ptr<int32_t>(),
                      row_seg_start.ptr<int32_t>(),  row_seg_rows.ptr<int32_t>(), pairs,
                      int(K),                        int(E)};
  check(launch_moe_scatter(sp, stream_), "moe scatter");

  // 3. Expert inputs in segment order: FP8 with per-segment scales, or BF16.
  Tensor x = x_in.dtype() == DType::BF16 || x_in.dtype() == DType::F32 ? x_in : as_dtype(x_in, DType::BF16, false);
  if (x.stride(1) != 1) x = as_dtype(x_in, DType::BF16, false);
  auto quantize = [&](const Tensor& src, const int32_t* row_index, int64_t src_rows, int64_t cols, Tensor& q,
                      Tensor& s) {
    q = scratch(DType::F8_E4M3, {R, cols});
    s = scratch(DType::F32, {R * cols / 128});
    Fp8QuantParams p{};
    p.x = src.data(), p.x_dtype = src.dtype(), p.x_stride = src.stride(0), p.src_rows = src_rows;
    p.row_index = row_index;
    p.seg_start = row_seg_start.ptr<int32_t>(), p.seg_rows = row_seg_rows.ptr<int32_t>();
    p.q = q.ptr<uint8_t>(), p.scale = s.ptr<float>(), p.rows = R, p.K = cols;
    check(launch_fp8_quant(p, stream_), "moe fp8 quantization");
  };
  Tensor xs, xq, xsc;
  if (ew.fp8) {
    quantize(x, row_token.ptr<int32_t>(), T, H, xq, xsc);
  } else {
    xs = scratch(DType::BF16, {R, H});
    CopyRowsParams cp{x.data(), x.dtype(), x.stride(0), T, row_token.ptr<int32_t>(), xs.data(), DType::BF16, H, R, H};
    check(launch_copy_rows(cp, stream_), "moe gather");
  }

  // 4. gate_up per active expert, SiLU-and-mul over all rows, down per active expert.
  Tensor gu = scratch(DType::BF16, {R, 2 * I});
  const size_t es = ew.fp8 ? 1 : 2;
  auto run = [&](int64_t e, bool gate_up, const Tensor& in, const Tensor& in_scale, Tensor& dst) {
    const int64_t rows = seg_rows[e], off = seg_off[e];
    const int64_t m = gate_up ? 2 * I : H, k = gate_up ? H : I;
    const Tensor& wt = gate_up ? ew.gate_up : ew.down;
    GemmArgs a;
    a.m = m, a.n = rows, a.k = k;
    a.w = static_cast<const char*>(wt.data()) + size_t(e) * size_t(m) * size_t(k) * es, a.ldw = k;
    a.x = static_cast<const char*>(in.data()) + size_t(off) * size_t(k) * es, a.ldx = k;
    a.d = dst.ptr<uint16_t>() + size_t(off) * size_t(m), a.ldd = m;
    a.d_type = CUDA_R_16BF;
    if (ew.fp8) {
      const Tensor& ws = gate_up ? ew.gate_up_scale : ew.down_scale;
      const size_t per_expert = size_t(ws.size(1)) * size_t(ws.size(2));
      a.kind = GemmKind::Fp8BlockScaled;
      a.w_scale = ws.ptr<float>() + size_t(e) * per_expert;
      a.x_scale = in_scale.ptr<float>() + size_t(off) * size_t(k / 128);
    } else {
      a.kind = GemmKind::Bf16;
    }
    gemm_->run(a);
  };
  for (int64_t e = 0; e < E; ++e)
    if (h_counts[e] > 0) run(e, true, ew.fp8 ? xq : xs, xsc, gu);
  Tensor act = silu_mul(gu);  // [R, I] BF16 (padding rows give zeros)
  Tensor aq, asc;
  if (ew.fp8) quantize(act, nullptr, R, I, aq, asc);
  Tensor y = scratch(DType::BF16, {R, H});
  for (int64_t e = 0; e < E; ++e)
    if (h_counts[e] > 0) run(e, false, ew.fp8 ? aq : act, asc, y);

  // 5. Weighted sum back in token order.
  MoeUnpermuteParams up{y.data(), pair_row.ptr<int32_t>(), route.topk_weights.ptr<float>(), out.data(), T, H, int(K)};
  check(launch_moe_unpermute(up, stream_), "moe unpermute");
  return out;
}

}  // namespace dsserve::cuda
