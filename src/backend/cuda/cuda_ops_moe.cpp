// CUDA backend: the DeepSeekMoE router (float32 logits, grouped top-k kernel) and the routed
// experts (with the shared expert when moe_feed_forward is given one), on one of these paths:
// - Decode sizes, T * top_k <= kMoeGroupedMaxPairs (2048): nothing leaves the device, so the op can
//   be captured in a CUDA graph. moe_align groups the (token, k) pairs by expert (counts, offsets,
//   active experts, work items, and the device-side count behind experts_run()). FP8 experts: W8A8
//   grouped products (tokens quantized by the norm before the MoE): gate_up with SiLU-and-mul and
//   the down input's quantization in its epilogue, then down (rows scattered to pair order), the
//   shared expert as extra work items of both launches, and a combine that sums each token's
//   weighted routed rows and its shared row. BF16 experts (or Grouped forced): the mma.sync
//   kernels of moe_grouped_gemm.h on BF16 activations and the weighted un-permute. Grids depend
//   on T, top_k, E and the weight shapes only; scratch comes from the per-forward arena. Each
//   active expert's weights are read once per work item.
// - Prefill sizes: pairs are counted and scattered into per-expert row segments (padded to
//   multiples of 8 rows, as the FP8 products need), each active expert runs its gate_up and down
//   products on its segment (cuBLASLt, FP8 W8A8 or BF16; FP8 experts on the sm80 kernel set as
//   BF16 products on the expert's weights widened into scratch), and the same un-permute. The segment
//   sizes are read back to launch the products, so this path synchronises the stream once per call.
// Why 2048 pairs (T <= 256 at top-8): up to there an expert gets few rows (8 on average over 256
// experts), so the step is bound by reading the active experts' weights, which the grouped kernel
// streams at a large fraction of the copy bandwidth while one cuBLASLt launch per expert does not;
// it also covers the decode batch sizes that are captured. Beyond it the products become
// matrix-bound, where cuBLASLt's FP8 W8A8 kernels are much faster than mma.sync on BF16.
#include <numeric>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/elementwise/elementwise.h"
#include "backend/cuda/gemm/fp8_quant.h"
#include "backend/cuda/gemm/sm90/fp8_gemm_sm90.h"
#include "backend/cuda/moe/moe_grouped_gemm.h"
#include "backend/cuda/moe/moe_kernels.h"
#include "backend/cuda/moe/moe_prefill.h"
#include "backend/cuda/moe/moe_w8a8_grouped.h"
#include "core/error.h"

namespace dsserve::cuda {

namespace {

// moe_align's parameters over a grouping's tensors.
MoeAlignParams align_params(const MoeGrouping& g, const Tensor& topk_ids, unsigned long long* experts_run) {
  MoeAlignParams ap{};
  ap.topk_ids = topk_ids.ptr<int32_t>();
  ap.counts = g.counts.ptr<int32_t>(), ap.offsets = g.offsets.ptr<int32_t>(), ap.active = g.active.ptr<int32_t>();
  ap.num_active = g.totals.ptr<int32_t>(), ap.num_items = g.totals.ptr<int32_t>() + 1;
  ap.items = reinterpret_cast<MoeWorkItem*>(g.items.data());
  ap.sorted_pair = g.sorted_pair.ptr<int32_t>(), ap.pair_row = g.pair_row.ptr<int32_t>();
  ap.experts_run = experts_run;
  ap.pairs = int(g.pairs), ap.experts = int(g.experts), ap.rows_per_item = g.rows_per_item;
  return ap;
}

}  // namespace

RouterOutput CudaBackend::moe_route(const Tensor& x, const LinearWeight& gate, const Tensor& bias,
                                    const RouterParams& p) {
  const int64_t T = x.size(0), E = p.num_experts, K = p.top_k, G = p.n_group;
  DS_CHECK(gate.out_features == E && E % G == 0 && K <= E && p.topk_group <= G,
           "moe_route: inconsistent router ({} experts, {} groups, top-{} of top-{} groups)", E, G, K, p.topk_group);
  DS_CHECK(E <= 512 && G <= 32 && K <= 32, "moe_route: {} experts / {} groups / top-{} exceed the kernel's 512 / 32 / 32",
           E, G, K);
  const bool has_bias_in = bias.defined() && bias.numel() > 0;
  const auto& router = *static_cast<const CudaLinear*>(gate.impl.get());
  // Decode sizes: product, routing and the grouping by expert in one launch (the experts of this
  // layer then skip their own alignment).
  if (fused_decode_ && T >= 1 && T <= kMoeRouterFusedMaxTokens && router.use == LinearUse::Router &&
      router.segments.size() == 1 && x.ndim() == 2 && x.stride(1) == 1 && x.size(1) % 4 == 0 &&
      x.stride(0) % 4 == 0 && (x.dtype() == DType::BF16 || x.dtype() == DType::F32) &&
      E <= kMoeAlignMaxExperts && T * K <= kMoeAlignMaxPairs &&
      (!has_bias_in || (bias.dtype() == DType::F32 && bias.numel() == E && bias.device() == Device::CUDA))) {
    RouterOutput r{scratch(DType::I32, {T, K}), scratch(DType::F32, {T, K})};
    const int64_t pairs = T * K;
    auto g = new_grouping(pairs, E, moe_w8a8_rows_per_item(pairs, E));
    Tensor partial = scratch(DType::F32, {moe_router_fused_splits(x.size(1)), T, E});
    MoeRouterFusedParams fp{};
    fp.x = x.data(), fp.x_dtype = x.dtype(), fp.ldx = x.stride(0), fp.hidden = x.size(1);
    fp.w = router.segments[0].weight.ptr<float>();
    fp.partial = partial.ptr<float>();
    fp.ticket = static_cast<unsigned int*>(router_ticket_.data());
    fp.route = MoeRouteParams{nullptr, has_bias_in ? bias.ptr<float>() : nullptr, r.topk_ids.ptr<int32_t>(),
                              r.topk_weights.ptr<float>(), int(T), int(E), int(K), int(G), p.topk_group, p.sigmoid,
                              p.norm_topk_prob, p.routed_scaling_factor};
    fp.align = align_params(*g, r.topk_ids, nullptr);
    fp.pdl = pdl_;
    check(launch_moe_router_fused(fp, stream_), "moe_route (fused router)");
    r.grouping = g;
    return r;
  }
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

int64_t CudaBackend::experts_run() const {
  int64_t on_device = 0;
  cuda_check(cudaMemcpyAsync(&on_device, experts_run_device_.data(), sizeof(on_device), cudaMemcpyDeviceToHost,
                             stream_),
             "experts_run");
  cuda_check(cudaStreamSynchronize(stream_), "experts_run (synchronize)");
  return experts_run_ + on_device;
}

namespace {
bool is_float_rows(const Tensor& x) {
  return (x.dtype() == DType::BF16 || x.dtype() == DType::F32) && x.stride(1) == 1;
}
}  // namespace

bool CudaBackend::moe_grouped_supported(const ExpertWeights& w, int64_t pairs) const {
  return w.num_experts <= kMoeAlignMaxExperts && pairs <= kMoeAlignMaxPairs && w.hidden % 8 == 0 &&
         w.intermediate % 8 == 0;
}

std::shared_ptr<MoeGrouping> CudaBackend::new_grouping(int64_t pairs, int64_t experts, int rows_per_item) {
  auto g = std::make_shared<MoeGrouping>();
  g->experts = experts, g->pairs = pairs, g->rows_per_item = rows_per_item;
  g->max_items = moe_max_work_items(pairs, experts, rows_per_item);
  g->counts = scratch(DType::I32, {experts});
  g->offsets = scratch(DType::I32, {experts + 1});
  g->active = scratch(DType::I32, {experts});
  g->totals = scratch(DType::I32, {2});  // active experts, work items
  g->items = scratch(DType::I32, {std::max<int64_t>(g->max_items, 1), 4});
  g->sorted_pair = scratch(DType::I32, {std::max<int64_t>(pairs, 1)});
  g->pair_row = scratch(DType::I32, {std::max<int64_t>(pairs, 1)});
  return g;
}

RouterOutput CudaBackend::local_route(const ExpertWeights& w, const RouterOutput& route_in) {
  RouterOutput route = route_in;
  if (w.first_expert != 0) {  // expert parallelism: this rank's experts as 0..n-1, the others skipped
    route.grouping = nullptr;  // grouped over the layer's global expert ids
    DS_CHECK(route_in.topk_ids.dtype() == DType::I32 && route_in.topk_ids.is_contiguous(),
             "moe_experts: route ids must be contiguous I32");
    route.topk_ids = scratch(DType::I32, route_in.topk_ids.shape());
    check(launch_moe_shift_ids(route_in.topk_ids.ptr<int32_t>(), route.topk_ids.ptr<int32_t>(),
                               route_in.topk_ids.numel(), int32_t(w.first_expert), stream_),
          "moe expert-parallel ids");
  }
  return route;
}

Tensor CudaBackend::moe_experts(const Tensor& x_in, const ExpertWeights& w, const RouterOutput& route_in) {
  DS_CHECK(x_in.ndim() == 2 && x_in.size(1) == w.hidden, "moe_experts: input {} for experts of hidden size {}",
           x_in.shape().str(), w.hidden);
  const RouterOutput route = local_route(w, route_in);
  DS_CHECK(route.topk_ids.dtype() == DType::I32 && route.topk_ids.is_contiguous() &&
               route.topk_weights.dtype() == DType::F32 && route.topk_weights.is_contiguous() &&
               route.topk_ids.ndim() == 2 && route.topk_ids.size(0) == x_in.size(0) &&
               route.topk_weights.shape() == route.topk_ids.shape(),
           "moe_experts: route must be contiguous I32 ids and F32 weights of [{}, top_k], found {} and {}",
           x_in.size(0), route.topk_ids.shape().str(), route.topk_weights.shape().str());
  const int64_t pairs = x_in.size(0) * route.topk_ids.size(1);
  DS_CHECK(moe_path_ != MoePath::GroupedW8A8 || hopper_kernels(),
           "moe_experts: the W8A8 grouped path needs FP8 tensor cores, which the sm80 kernel set has not");
  if (moe_path_ == MoePath::Grouped || moe_path_ == MoePath::GroupedW8A8)
    DS_CHECK(moe_grouped_supported(w, pairs),
             "moe_experts: the grouped path takes <= {} experts, <= {} pairs and sizes that are multiples of 8 "
             "({} experts, {} pairs, hidden {}, intermediate {})",
             kMoeAlignMaxExperts, kMoeAlignMaxPairs, w.num_experts, pairs, w.hidden, w.intermediate);
  if (moe_path_ == MoePath::Sm90)
    DS_CHECK(moe_sm90_supported(w), "moe_experts: the sm90 grouped FP8 path needs FP8 experts on an sm_90 device and "
             "at most {} experts ({} {} experts)", kMoePrefillMaxExperts, w.num_experts,
             static_cast<const CudaExperts*>(w.impl.get())->fp8 ? "fp8" : "bf16");
  if (x_in.size(0) == 0 || pairs == 0) {
    Tensor out = scratch(DType::BF16, {x_in.size(0), w.hidden});
    if (out.nbytes()) check(cudaMemsetAsync(out.data(), 0, out.nbytes(), stream_), "moe zero output");
    return out;
  }
  const bool small = pairs <= kMoeGroupedMaxPairs && moe_grouped_supported(w, pairs);
  if (static_cast<const CudaExperts*>(w.impl.get())->quant)
    return moe_experts_quant(x_in, w, route, moe_path_ == MoePath::Grouped || (moe_path_ == MoePath::Auto && small));
  // The fused decode path takes the W8A8 products up to kFusedDecodeMaxTokens (measured: moe/README.md).
  const bool w8a8_auto = moe_path_ == MoePath::Auto && small && fused_decode_ && x_in.size(0) <= kFusedDecodeMaxTokens;
  if (moe_path_ == MoePath::GroupedW8A8 || w8a8_auto) {
    Tensor y = moe_experts_w8a8(x_in, w, route, nullptr, nullptr);
    if (y.defined()) return y;
    DS_CHECK(moe_path_ == MoePath::Auto, "moe_experts: the W8A8 grouped path needs FP8 experts with hidden and "
             "intermediate sizes that are multiples of 128 (hidden {}, intermediate {})", w.hidden, w.intermediate);
  }
  const bool grouped = moe_path_ == MoePath::Grouped || (moe_path_ == MoePath::Auto && small);
  if (grouped) return moe_experts_grouped(x_in, w, route);
  // Auto: the sm90 grouped launch up to kMoeSm90AutoMaxPairs (measured faster than cuBLASLt per
  // expert there, slower beyond: moe/README.md), or at every size where set_sm90_fp8_gemm asks.
  const bool sm90 = moe_path_ == MoePath::Sm90 ||
                    (moe_path_ == MoePath::Auto && (moe_sm90_ || pairs <= kMoeSm90AutoMaxPairs) && moe_sm90_supported(w));
  last_moe_path_ = sm90 ? MoePath::Sm90 : MoePath::Cublaslt;
  return sm90 ? moe_experts_sm90(x_in, w, route) : moe_experts_cublaslt(x_in, w, route);
}

Tensor CudaBackend::moe_feed_forward(const Activation& x, const ExpertWeights& w, const RouterOutput& route_in,
                                     const LinearWeight* shared_gate_up, const LinearWeight* shared_down) {
  const int64_t T = x.tokens(), pairs = T * route_in.topk_ids.size(1);
  if (((moe_path_ == MoePath::Auto && fused_decode_ && T <= kFusedDecodeMaxTokens) || moe_path_ == MoePath::GroupedW8A8) &&
      hopper_kernels() && T > 0 && pairs <= kMoeGroupedMaxPairs && moe_grouped_supported(w, pairs)) {
    Tensor y = moe_experts_w8a8(x, w, local_route(w, route_in), shared_gate_up, shared_down);
    if (y.defined()) return y;
  }
  return Backend::moe_feed_forward(x, w, route_in, shared_gate_up, shared_down);
}

Tensor CudaBackend::moe_experts_w8a8(const Activation& x, const ExpertWeights& w, const RouterOutput& route,
                                     const LinearWeight* shared_gate_up, const LinearWeight* shared_down) {
  const auto& ew = *static_cast<const CudaExperts*>(w.impl.get());
  const int64_t T = x.tokens(), H = w.hidden, I = w.intermediate, E = w.num_experts, K = route.topk_ids.size(1);
  const int64_t pairs = T * K;
  if (!ew.fp8 || H % 128 != 0 || I % 128 != 0) return {};
  // The shared expert joins the launches when it is one FP8 segment of each product with the
  // experts' shapes (DeepSeek-V3: one shared expert of intermediate 2048).
  const LinearSegment* sgu = nullptr;
  const LinearSegment* sdn = nullptr;
  if (shared_gate_up) {
    const auto& gu = *static_cast<const CudaLinear*>(shared_gate_up->impl.get());
    const auto& dn = *static_cast<const CudaLinear*>(shared_down->impl.get());
    if (gu.segments.size() != 1 || !gu.segments[0].fp8 || gu.segments[0].rows != 2 * I ||
        shared_gate_up->in_features != H || dn.segments.size() != 1 || !dn.segments[0].fp8 ||
        dn.segments[0].rows != H || shared_down->in_features != I)
      return {};
    sgu = &gu.segments[0], sdn = &dn.segments[0];
  }
  // The grouping by expert: the fused router's, when it made one for these experts, else aligned here.
  std::shared_ptr<MoeGrouping> g = std::static_pointer_cast<MoeGrouping>(route.grouping);
  const bool from_router = g && g->experts == E && g->pairs == pairs &&
                           g->rows_per_item == moe_w8a8_rows_per_item(pairs, E);
  if (!from_router) g = new_grouping(pairs, E, moe_w8a8_rows_per_item(pairs, E));
  const int rows_per_item = g->rows_per_item;
  const int64_t max_items = g->max_items;
  const int shared_items = sgu ? int((T + rows_per_item - 1) / rows_per_item) : 0;
  const int64_t rows = pairs + T;  // routed rows in expert order, then one shared row per token
  const int64_t tq = (T + 7) / 8 * 8;  // the quantized tokens' rows, as the norms write them
  Tensor xq, xs;
  fp8_operand(x, H, tq, xq, xs);

  // 1. Pairs grouped by expert, on the device (counted here, or by the gate_up kernel when the
  // router grouped them).
  auto* experts_run = static_cast<unsigned long long*>(experts_run_device_.data());
  const MoeAlignParams ap = align_params(*g, route.topk_ids, from_router ? nullptr : experts_run);
  if (!from_router) check(launch_moe_align(ap, stream_), "moe align");

  // 2. gate_up with SiLU-and-mul, quantized rows in expert order (shared rows after);
  // 3. down, BF16 rows in pair order (shared rows after).
  MoeW8A8Params gp;
  gp.sorted_pair = ap.sorted_pair, gp.top_k = int(K), gp.pairs = pairs, gp.tokens = T;
  gp.items = ap.items, gp.num_items = ap.num_items, gp.max_items = max_items, gp.shared_items = shared_items;
  gp.rows_per_item = rows_per_item;
  gp.pdl = pdl_;
  if (from_router) gp.experts_run = experts_run, gp.num_active = ap.num_active;
  gp.kind = MoeGemmKind::GateUp;
  gp.xq = xq.ptr<uint8_t>(), gp.ldxq = H, gp.xs = xs.ptr<float>(), gp.xs_ld = tq;
  gp.w = static_cast<const uint8_t*>(ew.gate_up.data());
  gp.w_scale = ew.gate_up_scale.ptr<float>(), gp.scale_ld = ew.gate_up_scale.size(2);
  if (sgu) {
    gp.shared_w = static_cast<const uint8_t*>(sgu->weight.data());
    gp.shared_scale = sgu->scale.ptr<float>(), gp.shared_scale_ld = sgu->scale.size(1);
  }
  gp.N = 2 * I, gp.K = H;
  Tensor act_q = scratch(DType::F8_E4M3, {rows, I}), act_s = scratch(DType::F32, {I / 128, rows});
  gp.yq = act_q.ptr<uint8_t>(), gp.ldyq = I, gp.ys = act_s.ptr<float>(), gp.ys_ld = rows;
  if (!moe_w8a8_supported(gp)) return {};
  check(launch_moe_w8a8(gp, stream_), "moe w8a8 gate_up");
  Tensor y = scratch(DType::BF16, {rows, H});
  gp.kind = MoeGemmKind::Down;
  gp.xq = act_q.ptr<uint8_t>(), gp.ldxq = I, gp.xs = act_s.ptr<float>(), gp.xs_ld = rows;
  gp.w = static_cast<const uint8_t*>(ew.down.data());
  gp.w_scale = ew.down_scale.ptr<float>(), gp.scale_ld = ew.down_scale.size(2);
  if (sdn) {
    gp.shared_w = static_cast<const uint8_t*>(sdn->weight.data());
    gp.shared_scale = sdn->scale.ptr<float>(), gp.shared_scale_ld = sdn->scale.size(1);
  }
  gp.N = H, gp.K = I;
  gp.yq = nullptr, gp.ys = nullptr;
  gp.experts_run = nullptr;
  gp.y = y.data(), gp.ldy = H;
  check(launch_moe_w8a8(gp, stream_), "moe w8a8 down");

  // 4. Each token's weighted routed rows plus its shared row.
  Tensor out = scratch(DType::BF16, {T, H});
  MoeCombineParams cp{y.data(), g->pair_row.ptr<int32_t>(), route.topk_weights.ptr<float>(), sgu != nullptr,
                      out.data(), T, H, pairs, int(K), pdl_};
  check(launch_moe_combine(cp, stream_), "moe combine");
  return out;
}

Tensor CudaBackend::moe_experts_grouped(const Tensor& x_in, const ExpertWeights& w, const RouterOutput& route) {
  const auto& ew = *static_cast<const CudaExperts*>(w.impl.get());
  const int64_t T = x_in.size(0), H = w.hidden, I = w.intermediate, E = w.num_experts, K = route.topk_ids.size(1);
  const int64_t pairs = T * K;
  const int rows_per_item = moe_grouped_rows_per_item(pairs, E);
  const int64_t max_items = moe_max_work_items(pairs, E, rows_per_item);
  const Tensor x = as_dtype(x_in, DType::BF16, /*need_packed_rows=*/true);

  // 1. Pairs grouped by expert, on the device.
  Tensor counts = scratch(DType::I32, {E}), offsets = scratch(DType::I32, {E + 1}), active = scratch(DType::I32, {E});
  Tensor totals = scratch(DType::I32, {2});  // active experts, work items
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

  // 2. gate_up with SiLU-and-mul, rows in expert order; 3. down, rows in pair order.
  MoeGroupedGemmParams gp;
  gp.sorted_pair = sorted_pair.ptr<int32_t>(), gp.top_k = int(K);
  gp.items = ap.items, gp.num_items = ap.num_items;
  gp.fp8 = ew.fp8;
  gp.rows_per_item = rows_per_item, gp.max_items = max_items;
  Tensor act = scratch(DType::BF16, {pairs, I});
  gp.kind = MoeGemmKind::GateUp;
  gp.x = x.data(), gp.ldx = x.stride(0);
  gp.w = ew.gate_up.data(), gp.N = 2 * I, gp.K = H;
  if (ew.fp8) gp.w_scale = ew.gate_up_scale.ptr<float>(), gp.scale_ld = ew.gate_up_scale.size(2);
  gp.y = act.data(), gp.ldy = I;
  check(launch_moe_grouped_gemm(gp, stream_), "moe grouped gate_up");
  Tensor y = scratch(DType::BF16, {pairs, H});
  gp.kind = MoeGemmKind::Down;
  gp.x = act.data(), gp.ldx = I;
  gp.w = ew.down.data(), gp.N = H, gp.K = I;
  if (ew.fp8) gp.w_scale = ew.down_scale.ptr<float>(), gp.scale_ld = ew.down_scale.size(2);
  gp.y = y.data(), gp.ldy = H;
  check(launch_moe_grouped_gemm(gp, stream_), "moe grouped down");

  // 4. Weighted sum back in token order (pairs of out-of-range experts contribute nothing).
  Tensor out = scratch(DType::BF16, {T, H});
  MoeUnpermuteParams up{y.data(), pair_row.ptr<int32_t>(), route.topk_weights.ptr<float>(), out.data(), T, H, int(K)};
  check(launch_moe_unpermute(up, stream_), "moe unpermute");
  return out;
}

bool CudaBackend::moe_sm90_supported(const ExpertWeights& w) const {
  const auto& ew = *static_cast<const CudaExperts*>(w.impl.get());
  return ew.fp8 && hopper_kernels() && w.num_experts <= kMoePrefillMaxExperts && w.hidden % 128 == 0 &&
         w.intermediate % 128 == 0 && fp8_gemm_sm90_device_ok();
}

// Prefill sizes on sm_90: pairs grouped by expert on the device, both products as one
// expert-grouped FP8 launch each, nothing read back (see moe/moe_prefill.h).
Tensor CudaBackend::moe_experts_sm90(const Tensor& x_in, const ExpertWeights& w, const RouterOutput& route) {
  const auto& ew = *static_cast<const CudaExperts*>(w.impl.get());
  const int64_t T = x_in.size(0), H = w.hidden, I = w.intermediate, E = w.num_experts, K = route.topk_ids.size(1);
  const int64_t pairs = T * K, R = moe_prefill_max_rows(pairs, E);

  // 1. Segments: expert e's rows start at its predecessor's end rounded up to 128.
  Tensor counts = scratch(DType::I32, {E}), cursor = scratch(DType::I32, {E}), group_end = scratch(DType::I32, {E});
  Tensor row_token = scratch(DType::I32, {R}), pair_row = scratch(DType::I32, {pairs});
  MoePrefillGroupParams gp{};
  gp.topk_ids = route.topk_ids.ptr<int32_t>();
  gp.counts = counts.ptr<int32_t>(), gp.cursor = cursor.ptr<int32_t>(), gp.group_end = group_end.ptr<int32_t>();
  gp.row_token = row_token.ptr<int32_t>(), gp.pair_row = pair_row.ptr<int32_t>();
  gp.experts_run = static_cast<unsigned long long*>(experts_run_device_.data());
  gp.pairs = pairs, gp.max_rows = R, gp.top_k = int(K), gp.experts = int(E);
  check(launch_moe_prefill_group(gp, stream_), "moe prefill grouping");

  // 2. Inputs gathered into the segments and quantized (padding rows: zeros, scale 1).
  Tensor x = is_float_rows(x_in) ? x_in : as_dtype(x_in, DType::BF16, false);
  Tensor xq = scratch(DType::F8_E4M3, {R, H}), xs = scratch(DType::F32, {H / 128, R});
  Fp8QuantParams q{};
  q.x = x.data(), q.x_dtype = x.dtype(), q.x_stride = x.stride(0), q.src_rows = T;
  q.row_index = row_token.ptr<int32_t>();
  q.q = xq.ptr<uint8_t>(), q.scale = xs.ptr<float>(), q.rows = R, q.K = H;
  check(launch_fp8_quant(q, stream_), "moe fp8 quantization");

  // 3. gate_up for every expert in one launch.
  Tensor gu = scratch(DType::BF16, {R, 2 * I});
  Fp8GemmSm90Params p;
  p.a = xq.ptr<uint8_t>(), p.lda = H, p.a_scale = xs.ptr<float>(), p.a_scale_ld = R;
  p.b = static_cast<const uint8_t*>(ew.gate_up.data()), p.ldb = H, p.b_batch_stride = 2 * I * H;
  p.b_scale = ew.gate_up_scale.ptr<float>(), p.b_scale_ld = ew.gate_up_scale.size(2);
  p.b_scale_batch_stride = ew.gate_up_scale.size(1) * ew.gate_up_scale.size(2);
  p.d = gu.data(), p.ldd = 2 * I;
  p.M = R, p.N = 2 * I, p.K = H, p.batch = int(E);
  p.group_end = group_end.ptr<int32_t>();
  check(launch_fp8_gemm_sm90(p, stream_), "moe gate_up (sm90 grouped)");

  // 4. SiLU-and-mul quantized for down; 5. down for every expert (rows in expert order: the
  // output tiles go out as bulk stores; the un-permute finds each pair's row).
  Tensor aq = scratch(DType::F8_E4M3, {R, I}), as = scratch(DType::F32, {I / 128, R});
  MoeSiluQuantParams sq{gu.data(), row_token.ptr<int32_t>(), aq.ptr<uint8_t>(), as.ptr<float>(), R, I};
  check(launch_moe_silu_quant(sq, stream_), "moe silu quantization");
  Tensor y = scratch(DType::BF16, {R, H});
  p.a = aq.ptr<uint8_t>(), p.lda = I, p.a_scale = as.ptr<float>(), p.a_scale_ld = R;
  p.b = static_cast<const uint8_t*>(ew.down.data()), p.ldb = I, p.b_batch_stride = H * I;
  p.b_scale = ew.down_scale.ptr<float>(), p.b_scale_ld = ew.down_scale.size(2);
  p.b_scale_batch_stride = ew.down_scale.size(1) * ew.down_scale.size(2);
  p.d = y.data(), p.ldd = H;
  p.M = R, p.N = H, p.K = I;
  check(launch_fp8_gemm_sm90(p, stream_), "moe down (sm90 grouped)");

  // 6. Weighted sum back in token order (pairs of out-of-range experts contribute nothing).
  Tensor out = scratch(DType::BF16, {T, H});
  MoeUnpermuteParams up{y.data(), pair_row.ptr<int32_t>(), route.topk_weights.ptr<float>(), out.data(), T, H, int(K)};
  check(launch_moe_unpermute(up, stream_), "moe unpermute");
  return out;
}

CudaBackend::MoeSegments CudaBackend::moe_segments(const RouterOutput& route, int64_t E) {
  const int64_t K = route.topk_ids.size(1), pairs = route.topk_ids.size(0) * K;
  MoeSegments sg;
  Tensor counts = scratch(DType::I32, {E});
  check(cudaMemsetAsync(counts.data(), 0, size_t(E) * 4, stream_), "moe counts");
  check(launch_moe_count({route.topk_ids.ptr<int32_t>(), counts.ptr<int32_t>(), pairs, int(E)}, stream_), "moe count");
  sg.counts.resize(size_t(E));
  check(cudaMemcpyAsync(sg.counts.data(), counts.data(), size_t(E) * 4, cudaMemcpyDeviceToHost, stream_),
        "moe counts to host");
  check(cudaStreamSynchronize(stream_), "moe counts (synchronize)");
  sg.offset.resize(size_t(E)), sg.rows.resize(size_t(E));
  int64_t R = 0;
  for (int64_t e = 0; e < E; ++e) {
    experts_run_ += sg.counts[e] > 0;
    sg.offset[e] = int32_t(R);
    sg.rows[e] = (sg.counts[e] + 7) / 8 * 8;
    R += sg.rows[e];
  }
  sg.total_rows = R;
  if (R == 0) return sg;
  Tensor d_off = upload_i32(sg.offset, {E}), d_rows = upload_i32(sg.rows, {E});
  Tensor cursor = scratch(DType::I32, {E});
  sg.row_token = scratch(DType::I32, {R}), sg.pair_row = scratch(DType::I32, {pairs});
  sg.row_seg_start = scratch(DType::I32, {R}), sg.row_seg_rows = scratch(DType::I32, {R});
  check(cudaMemsetAsync(cursor.data(), 0, size_t(E) * 4, stream_), "moe cursor");
  check(cudaMemsetAsync(sg.row_token.data(), 0xff, size_t(R) * 4, stream_), "moe rows");  // -1: padding
  MoeScatterParams sp{route.topk_ids.ptr<int32_t>(), d_off.ptr<int32_t>(),      d_rows.ptr<int32_t>(),
                      cursor.ptr<int32_t>(),         sg.row_token.ptr<int32_t>(), sg.pair_row.ptr<int32_t>(),
                      sg.row_seg_start.ptr<int32_t>(), sg.row_seg_rows.ptr<int32_t>(), pairs,
                      int(K),                        int(E)};
  check(launch_moe_scatter(sp, stream_), "moe scatter");
  return sg;
}

Tensor CudaBackend::moe_experts_cublaslt(const Tensor& x_in, const ExpertWeights& w, const RouterOutput& route) {
  const auto& ew = *static_cast<const CudaExperts*>(w.impl.get());
  const int64_t T = x_in.size(0), H = w.hidden, I = w.intermediate, E = w.num_experts, K = route.topk_ids.size(1);
  Tensor out = scratch(DType::BF16, {T, H});

  // 1. Rows per expert (back on the host) and the pairs scattered into segments.
  MoeSegments sg = moe_segments(route, E);
  const int64_t R = sg.total_rows;
  const std::vector<int32_t>&h_counts = sg.counts, &seg_off = sg.offset, &seg_rows = sg.rows;
  const Tensor &row_token = sg.row_token, &pair_row = sg.pair_row, &row_seg_start = sg.row_seg_start,
               &row_seg_rows = sg.row_seg_rows;
  if (R == 0) {
    check(cudaMemsetAsync(out.data(), 0, out.nbytes(), stream_), "moe zero output");
    return out;
  }

  // 3. Expert inputs in segment order: FP8 with per-segment scales (FP8 experts on Hopper), or BF16
  // (BF16 experts; FP8 experts on the sm80 kernel set, their weights widened per expert below).
  const bool w8a8 = ew.fp8 && hopper_kernels();
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
  if (w8a8) {
    quantize(x, row_token.ptr<int32_t>(), T, H, xq, xsc);
  } else {
    xs = scratch(DType::BF16, {R, H});
    CopyRowsParams cp{x.data(), x.dtype(), x.stride(0), T, row_token.ptr<int32_t>(), xs.data(), DType::BF16, H, R, H};
    check(launch_copy_rows(cp, stream_), "moe gather");
  }

  // 4. gate_up per active expert, SiLU-and-mul over all rows, down per active expert.
  Tensor gu = scratch(DType::BF16, {R, 2 * I});
  const size_t es = ew.fp8 ? 1 : 2, xes = w8a8 ? 1 : 2;  // bytes per weight, per input value
  Tensor widened = ew.fp8 && !w8a8 ? scratch(DType::BF16, {2 * I, H}) : Tensor();  // one expert's product at a time
  auto run = [&](int64_t e, bool gate_up, const Tensor& in, const Tensor& in_scale, Tensor& dst) {
    const int64_t rows = seg_rows[e], off = seg_off[e];
    const int64_t m = gate_up ? 2 * I : H, k = gate_up ? H : I;
    const Tensor& wt = gate_up ? ew.gate_up : ew.down;
    GemmArgs a;
    a.m = m, a.n = rows, a.k = k;
    a.w = static_cast<const char*>(wt.data()) + size_t(e) * size_t(m) * size_t(k) * es, a.ldw = k;
    a.x = static_cast<const char*>(in.data()) + size_t(off) * size_t(k) * xes, a.ldx = k;
    a.d = dst.ptr<uint16_t>() + size_t(off) * size_t(m), a.ldd = m;
    a.d_type = CUDA_R_16BF;
    if (ew.fp8 && !w8a8) {  // sm80: expert e's weights widened to BF16 (as the oracle), a BF16 product
      const Tensor& ws = gate_up ? ew.gate_up_scale : ew.down_scale;
      const size_t per_expert = size_t(ws.size(1)) * size_t(ws.size(2));
      widen_fp8(a.w, ws.ptr<float>() + size_t(e) * per_expert, ws.size(2), 0, m, k, widened);
      a.kind = GemmKind::Bf16;
      a.w = widened.data();
    } else if (ew.fp8) {
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
    if (h_counts[e] > 0) run(e, true, w8a8 ? xq : xs, xsc, gu);
  Tensor act = silu_mul(gu);  // [R, I] BF16 (padding rows give zeros)
  Tensor aq, asc;
  if (w8a8) quantize(act, nullptr, R, I, aq, asc);
  Tensor y = scratch(DType::BF16, {R, H});
  for (int64_t e = 0; e < E; ++e)
    if (h_counts[e] > 0) run(e, false, w8a8 ? aq : act, asc, y);

  // 5. Weighted sum back in token order.
  MoeUnpermuteParams up{y.data(), pair_row.ptr<int32_t>(), route.topk_weights.ptr<float>(), out.data(), T, H, int(K)};
  check(launch_moe_unpermute(up, stream_), "moe unpermute");
  return out;
}

}  // namespace dsserve::cuda
