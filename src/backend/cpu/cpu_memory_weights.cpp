// CPU backend: memory and weight preparation (everything dequantized to contiguous float32).
#include <algorithm>
#include <cstring>

#include "backend/cpu/cpu_backend.h"
#include "backend/weight_dequant.h"
#include "core/error.h"

namespace dsserve {

namespace {
struct CpuLinear {
  Tensor w;  // [out, in] F32
};
struct CpuExperts {
  Tensor gate_up;  // [E, 2I, H] F32
  Tensor down;     // [E, H, I] F32
};
}  // namespace

Tensor CpuBackend::to_device(const Tensor& host) {
  Tensor out = Tensor::zeros_host(host.dtype(), host.shape());
  if (host.is_contiguous()) {
    std::memcpy(out.data(), host.data(), host.nbytes());
  } else {
    DS_CHECK(host.dtype() == DType::F32, "to_device: strided copies need F32");
    Tensor c = host_to_f32(host);
    std::memcpy(out.data(), c.data(), c.nbytes());
  }
  return out;
}

Tensor CpuBackend::to_host_f32(const Tensor& t) {
  if (t.dtype() == DType::I32 || t.dtype() == DType::I64 || t.dtype() == DType::U8 || t.dtype() == DType::I8 ||
      t.dtype() == DType::BOOL)
    return to_device(t);
  return host_to_f32(t);
}

LinearWeight CpuBackend::make_linear(std::span<const WeightPart> parts, LinearUse) {
  DS_CHECK(!parts.empty(), "make_linear: no weight parts");
  int64_t in = parts[0].in_features(), out = 0;
  for (const auto& p : parts) {
    DS_CHECK(p.in_features() == in, "make_linear: fused parts differ in input features ({} vs {})", p.in_features(),
             in);
    out += p.out_features();
  }
  auto lin = std::make_shared<CpuLinear>();
  lin->w = Tensor::zeros_host(DType::F32, {out, in});
  int64_t row = 0;
  for (const auto& p : parts) {
    Tensor d = dequantize_to_f32(p);
    std::memcpy(lin->w.ptr<float>() + row * in, d.data(), d.nbytes());
    row += p.out_features();
  }
  return LinearWeight{out, in, lin};
}

HeadWeight CpuBackend::make_head_weight(const Tensor& host_f32, bool /*from_fp8_blocks: the oracle keeps float32*/) {
  DS_CHECK(host_f32.ndim() == 3 && host_f32.dtype() == DType::F32, "make_head_weight: expected F32 [heads, out, in]");
  auto lin = std::make_shared<CpuLinear>();
  lin->w = to_device(host_f32);
  return HeadWeight{host_f32.size(0), host_f32.size(1), host_f32.size(2), lin};
}

ExpertWeights CpuBackend::make_experts(std::span<const ExpertParts> experts) {
  DS_CHECK(!experts.empty(), "make_experts: no experts");
  int64_t E = int64_t(experts.size()), I = experts[0].gate.out_features(), H = experts[0].gate.in_features();
  auto ew = std::make_shared<CpuExperts>();
  ew->gate_up = Tensor::zeros_host(DType::F32, {E, 2 * I, H});
  ew->down = Tensor::zeros_host(DType::F32, {E, H, I});
  for (int64_t e = 0; e < E; ++e) {
    Tensor g = dequantize_to_f32(experts[e].gate), u = dequantize_to_f32(experts[e].up),
           d = dequantize_to_f32(experts[e].down);
    DS_CHECK(g.shape() == Shape({I, H}) && u.shape() == Shape({I, H}) && d.shape() == Shape({H, I}),
             "expert {}: gate/up/down shapes {} {} {} do not match [{}, {}]", e, g.shape().str(), u.shape().str(),
             d.shape().str(), I, H);
    float* gu = ew->gate_up.ptr<float>() + e * 2 * I * H;
    std::memcpy(gu, g.data(), g.nbytes());
    std::memcpy(gu + I * H, u.data(), u.nbytes());
    std::memcpy(ew->down.ptr<float>() + e * H * I, d.data(), d.nbytes());
  }
  return ExpertWeights{E, H, I, ew};
}

Tensor CpuBackend::make_vector(const Tensor& host) { return host_to_f32(host); }
Tensor CpuBackend::make_embedding(const Tensor& host) { return host_to_f32(host); }
Tensor CpuBackend::make_rope_table(const Tensor& host) { return host_to_f32(host); }

Tensor CpuBackend::upload_i32(const std::vector<int32_t>& v, Shape shape) {
  DS_CHECK(int64_t(v.size()) == shape.numel(), "upload_i32: {} values for shape {}", v.size(), shape.str());
  Tensor t = Tensor::zeros_host(DType::I32, shape);
  if (!v.empty()) std::memcpy(t.data(), v.data(), v.size() * 4);
  return t;
}

// Accessors for the other CPU files.
const Tensor& cpu_linear_weight(const LinearWeight& w) { return static_cast<CpuLinear*>(w.impl.get())->w; }
const Tensor& cpu_head_weight(const HeadWeight& w) { return static_cast<CpuLinear*>(w.impl.get())->w; }
const Tensor& cpu_experts_gate_up(const ExpertWeights& w) { return static_cast<CpuExperts*>(w.impl.get())->gate_up; }
const Tensor& cpu_experts_down(const ExpertWeights& w) { return static_cast<CpuExperts*>(w.impl.get())->down; }

void CpuBackend::write_i32(Tensor& dst, const int32_t* src, int64_t rows, int64_t cols, int64_t src_ld) {
  DS_CHECK(dst.device() == Device::CPU && dst.dtype() == DType::I32 && dst.is_contiguous() &&
               (dst.ndim() == 1 || dst.ndim() == 2),
           "write_i32: destination must be a contiguous I32 vector or matrix, found {} {}", dtype_name(dst.dtype()),
           dst.shape().str());
  const int64_t dst_rows = dst.ndim() == 2 ? dst.size(0) : 1, dst_cols = dst.size(-1);
  DS_CHECK(rows >= 0 && cols >= 0 && rows <= dst_rows && cols <= dst_cols && src_ld >= cols,
           "write_i32: a {}x{} block does not fit {}", rows, cols, dst.shape().str());
  int32_t* d = dst.ptr<int32_t>();
  for (int64_t r = 0; r < rows; ++r) std::copy(src + r * src_ld, src + r * src_ld + cols, d + r * dst_cols);
}

void CpuBackend::copy_into(Tensor& dst, const Tensor& src) {
  DS_CHECK(dst.device() == Device::CPU && src.device() == Device::CPU && dst.is_contiguous() && src.is_contiguous() &&
               dst.dtype() == src.dtype() && dst.numel() == src.numel(),
           "copy_into: expected contiguous tensors of one dtype and size, found {} {} <- {} {}", dtype_name(dst.dtype()),
           dst.shape().str(), dtype_name(src.dtype()), src.shape().str());
  if (dst.nbytes()) std::memcpy(dst.data(), src.data(), dst.nbytes());
}

}  // namespace dsserve
