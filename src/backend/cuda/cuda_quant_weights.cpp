// CUDA backend: quantized weight preparation. AWQ parts are uploaded as published and repacked on
// the device into the W4A16 kernels' layout (quant/awq_repack.h); INT8 parts keep their int8 rows
// and float32 scales (block: [ceil(rows / 128), ceil(in / 128)], the checkpoint's weight_scale_inv
// placed at each part's row block; channel: [rows]). Fused parts (q_a + kv_a, gate + up) share one
// segment where their row offsets allow (AWQ: 16-row tiles; block INT8: 128-row blocks). Routed
// experts are stacked [E, ...] like the FP8 ones. Shapes the kernels cannot take stay with the BF16
// path of cuda_weights.cpp (dequantized exactly as the CPU oracle dequantizes).
#include <cstring>

#include "backend/cuda/common/device_props.h"
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/quant/awq_repack.h"
#include "backend/weight_dequant.h"
#include "core/error.h"

namespace dsserve::cuda {

namespace {

bool quant_kind_of(WeightFormat f, QuantKind* k) {
  switch (f) {
    case WeightFormat::Awq: *k = QuantKind::W4A16; return true;
    case WeightFormat::BlockInt8: *k = QuantKind::I8Block; return true;
    case WeightFormat::ChannelInt8: *k = QuantKind::I8Channel; return true;
    default: return false;
  }
}

}  // namespace

const char* quant_kind_name(QuantKind k) {
  switch (k) {
    case QuantKind::W4A16: return "awq";
    case QuantKind::I8Block: return "int8 block";
    case QuantKind::I8Channel: return "int8 channel";
  }
  return "?";
}

bool quant_part_supported(const WeightPart& p) {
  QuantKind k;
  if (!quant_kind_of(p.stored_format(), &k)) return false;
  return quant_gemm_supports(k, p.out_features(), p.in_features(), int(p.group_size));
}

bool quant_parts_fuse(const WeightPart& first, const WeightPart& next, int64_t rows) {
  if (first.stored_format() != next.stored_format()) return false;
  switch (first.stored_format()) {
    case WeightFormat::Awq: return next.group_size == first.group_size && rows % 16 == 0;
    case WeightFormat::BlockInt8: return rows % 128 == 0;
    case WeightFormat::ChannelInt8: return true;
    default: return false;
  }
}

Tensor CudaBackend::quant_counters() {
  if (!quant_counters_.defined()) quant_counters_ = alloc(DType::I32, {kQuantGemmMaxCounters});
  return quant_counters_;
}

int CudaBackend::multiprocessors() { return current_sm_count(); }

namespace {

// Rows [row0, row0 + part rows) of the quantized weight at `w` / `scale` (one expert's, or a
// segment's): AWQ repacked on the device; INT8 rows copied, scales placed on the host.
struct QuantTarget {
  QuantKind kind;
  void* w;            // W4: words of the whole [rows, in]; I8: int8 [rows, in]
  void* scale;        // W4: [in / group, rows] words; I8 block: [ceil(rows / 128), ceil(in / 128)]; channel: [rows]
  int64_t rows, in;
  int group;
};

}  // namespace

// Places one part (the checkpoint's tensors, host or device memory) into a quantized weight.
static void place_quant_part(CudaBackend& be, cudaStream_t stream, const WeightPart& p, const QuantTarget& dst,
                             int64_t row0, std::vector<float>& host_scale) {
  const int64_t out = p.out_features(), in = dst.in;
  auto on_device = [&](const Tensor& t) {
    DS_CHECK(t.is_contiguous(), "{}: a quantized weight tensor {} is not contiguous", p.name, t.shape().str());
    return t.device() == Device::CUDA ? t : be.to_device(t);
  };
  if (dst.kind == QuantKind::W4A16) {
    const Tensor qw = on_device(p.weight), qz = on_device(p.zeros), sc = on_device(p.scale);
    AwqRepackParams rp;
    rp.qweight = qw.ptr<int32_t>(), rp.qzeros = qz.ptr<int32_t>(), rp.scales = sc.ptr<uint16_t>();
    rp.N = out, rp.K = in, rp.group = dst.group;
    rp.w = static_cast<uint32_t*>(dst.w), rp.scale_zero = static_cast<uint32_t*>(dst.scale);
    rp.ld = dst.rows, rp.row0 = row0;
    be.check(launch_awq_repack(rp, stream), "AWQ repack");
    be.check(cudaStreamSynchronize(stream), "AWQ repack");  // the temporary device copies die here
    return;
  }
  DS_CHECK(p.weight.is_contiguous(), "{}: int8 weight {} is not contiguous", p.name, p.weight.shape().str());
  be.check(cudaMemcpyAsync(static_cast<int8_t*>(dst.w) + row0 * in, p.weight.data(), p.weight.nbytes(),
                           cudaMemcpyDefault, stream),
           "upload int8 weight");
  Tensor s = host_to_f32(p.scale.device() == Device::CUDA ? be.to_host_f32(p.scale) : p.scale);
  if (dst.kind == QuantKind::I8Channel) {
    std::memcpy(host_scale.data() + row0, s.data(), size_t(out) * 4);
  } else {
    const int64_t bc = (in + 127) / 128, br = (out + 127) / 128;
    for (int64_t r = 0; r < br; ++r)
      std::memcpy(host_scale.data() + (row0 / 128 + r) * bc, s.ptr<float>() + r * bc, size_t(bc) * 4);
  }
  be.check(cudaStreamSynchronize(stream), "upload int8 weight");
}

LinearSegment CudaBackend::make_quant_segment(std::span<const WeightPart> parts, int64_t row0, int64_t in) {
  LinearSegment seg;
  seg.row0 = row0;
  for (const auto& p : parts) seg.rows += p.out_features();
  seg.quant = true;
  DS_CHECK(quant_kind_of(parts[0].stored_format(), &seg.quant_kind), "make_quant_segment: {} is not quantized",
           parts[0].name);
  seg.group = int(parts[0].group_size);
  std::vector<float> host_scale;
  if (seg.quant_kind == QuantKind::W4A16) {
    seg.weight = alloc(DType::I32, {seg.rows, in / 8});
    seg.scale = alloc(DType::I32, {in / seg.group, seg.rows});
  } else {
    seg.weight = alloc(DType::I8, {seg.rows, in});
    const int64_t n = seg.quant_kind == QuantKind::I8Channel ? seg.rows : (seg.rows + 127) / 128 * ((in + 127) / 128);
    host_scale.assign(size_t(n), 0.0f);
  }
  const QuantTarget dst{seg.quant_kind, seg.weight.data(), seg.scale.defined() ? seg.scale.data() : nullptr, seg.rows,
                        in, seg.group};
  int64_t r = 0;
  for (const auto& p : parts) {
    place_quant_part(*this, stream_, p, dst, r, host_scale);
    r += p.out_features();
  }
  if (seg.quant_kind == QuantKind::I8Channel)
    seg.scale = upload_bytes(host_scale.data(), DType::F32, {seg.rows});
  else if (seg.quant_kind == QuantKind::I8Block)
    seg.scale = upload_bytes(host_scale.data(), DType::F32, {(seg.rows + 127) / 128, (in + 127) / 128});
  quant_counters();
  return seg;
}

ExpertWeights CudaBackend::make_quant_experts(std::span<const ExpertParts> experts) {
  const WeightPart& first = experts[0].gate;
  QuantKind kind;
  if (!quant_kind_of(first.stored_format(), &kind)) return {};
  const int64_t E = int64_t(experts.size()), I = first.out_features(), H = first.in_features();
  const int group = int(first.group_size);
  for (const auto& x : experts)
    for (const WeightPart* p : {&x.gate, &x.up, &x.down})
      if (p->stored_format() != first.stored_format() || p->group_size != first.group_size) return {};
  // gate and up fuse into one [2I, H] product; each expert's down is [H, I].
  if (!quant_gemm_supports(kind, 2 * I, H, group) || !quant_gemm_supports(kind, H, I, group) ||
      !quant_parts_fuse(first, experts[0].up, I) || I % 16 != 0 || (kind == QuantKind::I8Block && I % 128 != 0))
    return {};
  auto ew = std::make_shared<CudaExperts>();
  ew->quant = true;
  ew->quant_kind = kind;
  ew->group = group;
  const bool w4 = kind == QuantKind::W4A16, block = kind == QuantKind::I8Block;
  if (w4) {
    ew->gate_up = alloc(DType::I32, {E, 2 * I, H / 8});
    ew->down = alloc(DType::I32, {E, H, I / 8});
    ew->gate_up_scale = alloc(DType::I32, {E, H / group, 2 * I});
    ew->down_scale = alloc(DType::I32, {E, I / group, H});
  } else {
    ew->gate_up = alloc(DType::I8, {E, 2 * I, H});
    ew->down = alloc(DType::I8, {E, H, I});
    if (block) {
      ew->gate_up_scale = alloc(DType::F32, {E, 2 * I / 128, (H + 127) / 128});
      ew->down_scale = alloc(DType::F32, {E, (H + 127) / 128, (I + 127) / 128});
    } else {
      ew->gate_up_scale = alloc(DType::F32, {E, 2 * I});
      ew->down_scale = alloc(DType::F32, {E, H});
    }
  }
  const size_t gu_bytes = ew->gate_up.nbytes() / size_t(E), dn_bytes = ew->down.nbytes() / size_t(E);
  const size_t gu_scale = ew->gate_up_scale.nbytes() / size_t(E), dn_scale = ew->down_scale.nbytes() / size_t(E);
  std::vector<float> gs, ds;
  for (int64_t e = 0; e < E; ++e) {
    const auto& x = experts[e];
    char* gu_w = static_cast<char*>(ew->gate_up.data()) + size_t(e) * gu_bytes;
    char* dn_w = static_cast<char*>(ew->down.data()) + size_t(e) * dn_bytes;
    char* gu_s = static_cast<char*>(ew->gate_up_scale.data()) + size_t(e) * gu_scale;
    char* dn_s = static_cast<char*>(ew->down_scale.data()) + size_t(e) * dn_scale;
    const QuantTarget gate_up{kind, gu_w, gu_s, 2 * I, H, group}, down{kind, dn_w, dn_s, H, I, group};
    gs.assign(gu_scale / 4, 0.0f);
    ds.assign(dn_scale / 4, 0.0f);
    place_quant_part(*this, stream_, x.gate, gate_up, 0, gs);
    place_quant_part(*this, stream_, x.up, gate_up, I, gs);
    place_quant_part(*this, stream_, x.down, down, 0, ds);
    if (!w4) {
      check(cudaMemcpyAsync(gu_s, gs.data(), gu_scale, cudaMemcpyHostToDevice, stream_), "upload expert scales");
      check(cudaMemcpyAsync(dn_s, ds.data(), dn_scale, cudaMemcpyHostToDevice, stream_), "upload expert scales");
      check(cudaStreamSynchronize(stream_), "upload expert scales");  // the staging vectors are reused
    }
  }
  quant_counters();
  return ExpertWeights{E, H, I, ew};
}

}  // namespace dsserve::cuda
