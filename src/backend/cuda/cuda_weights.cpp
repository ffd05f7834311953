// CUDA backend: weight preparation. Linear weights become row segments run as one product each:
// FP8 (e4m3 with the checkpoint's 128x128 block scales, W8A8 at run time on Hopper, W8A16 on the
// sm80 kernel set) where the checkpoint is FP8, the input width is a multiple of 128 and the
// segment starts on a 128-row block boundary; BF16 (dequantized, rounded as the published
// FP8-to-BF16 conversion) otherwise. The router stays float32. Routed experts are stacked [E, ...] with 64-bit offsets. Weight parts may be host tensors
// (checkpoints) or this backend's device tensors (random_weight, --load-format dummy): device parts
// are copied (or adopted) on the device, and brought to the host only where the host dequantizes.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/gemm/sm90/fp8_gemm_sm90.h"
#include "backend/weight_dequant.h"
#include "core/error.h"

namespace dsserve::cuda {

namespace {

bool is_e4m3(const WeightPart& p) { return p.weight.dtype() == DType::F8_E4M3; }

std::vector<uint16_t> to_bf16(const Tensor& f32) {
  std::vector<uint16_t> out(size_t(f32.numel()));
  const float* s = f32.ptr<float>();
  for (size_t i = 0; i < out.size(); ++i) out[i] = f32_to_bf16(s[i]);
  return out;
}

// Copies part.scale ([ceil(rows/128), in/128]) into rows [block_row0, ...) of a padded scale matrix.
void place_scale(const WeightPart& part, float* dst, int64_t block_row0, int64_t ld, int64_t in) {
  const int64_t rows = part.weight.size(0), br = (rows + 127) / 128, bc = (in + 127) / 128;
  DS_CHECK(part.scale.defined() && part.scale.shape() == Shape({br, bc}),
           "fp8 weight {}: weight_scale_inv must be [{}, {}], found {}", part.weight.shape().str(), br, bc,
           part.scale.defined() ? part.scale.shape().str() : std::string("none"));
  Tensor s = host_to_f32(part.scale);
  for (int64_t r = 0; r < br; ++r) std::memcpy(dst + (block_row0 + r) * ld, s.ptr<float>() + r * bc, size_t(bc) * 4);
}

// A GEMM problem with this segment's shapes, for asking cuBLASLt whether it can run it.
GemmArgs probe_args(const LinearSegment& s, int64_t in, int64_t out_features, int64_t tokens) {
  GemmArgs a;
  a.kind = GemmKind::Fp8BlockScaled;
  a.m = s.rows;
  a.n = tokens;
  a.k = in;
  a.w = s.weight.data();
  a.ldw = in;
  a.x = reinterpret_cast<const void*>(uintptr_t(256));
  a.ldx = in;
  a.d = reinterpret_cast<void*>(uintptr_t(256) + uintptr_t(s.row0) * 2);
  a.ldd = out_features;
  a.d_type = CUDA_R_16BF;
  a.w_scale = s.scale.ptr<float>();
  a.x_scale = reinterpret_cast<const float*>(uintptr_t(256));
  return a;
}

}  // namespace

LinearSegment CudaBackend::make_segment(std::span<const WeightPart> parts, int64_t row0, bool fp8, LinearUse use,
                                        int64_t in, int64_t out_features) {
  LinearSegment seg;
  seg.row0 = row0;
  for (const auto& p : parts) seg.rows += p.out_features();
  const DType dt = fp8 ? DType::F8_E4M3 : use == LinearUse::Router ? DType::F32 : DType::BF16;
  const Tensor& first = parts[0].weight;
  if (parts.size() == 1 && first.device() == Device::CUDA && first.dtype() == dt && first.is_contiguous()) {
    seg.weight = first;  // generated on the device in its final layout: adopted as is
  } else {
    seg.weight = alloc(dt, {seg.rows, in});
    int64_t r = 0;
    for (const auto& p : parts) {
      char* dst = static_cast<char*>(seg.weight.data()) + size_t(r * in) * dtype_size(dt);
      const bool device_float = p.weight.device() == Device::CUDA &&
                                (p.weight.dtype() == DType::BF16 || p.weight.dtype() == DType::F32);
      if (fp8 || device_float) {  // raw e4m3 bytes, or a device BF16/F32 weight converted on the device
        DS_CHECK(!fp8 || p.weight.is_contiguous(), "fp8 weight {} is not contiguous", p.weight.shape().str());
        Tensor c = fp8 ? p.weight : as_dtype(p.weight, dt, false);
        if (!c.is_contiguous()) c = contiguous(c);
        check(cudaMemcpyAsync(dst, c.data(), c.nbytes(), cudaMemcpyDefault, stream_), "copy weight part");
      } else {  // dequantized on the host exactly as the CPU oracle dequantizes
        Tensor d = dequantize_to_f32(on_host(p));
        if (dt == DType::F32) {
          check(cudaMemcpyAsync(dst, d.data(), d.nbytes(), cudaMemcpyHostToDevice, stream_), "upload weight part");
          check(cudaStreamSynchronize(stream_), "upload weight part");
        } else {
          std::vector<uint16_t> b = to_bf16(d);
          check(cudaMemcpyAsync(dst, b.data(), b.size() * 2, cudaMemcpyHostToDevice, stream_), "upload weight part");
          check(cudaStreamSynchronize(stream_), "upload weight part");
        }
      }
      r += p.out_features();
    }
  }
  if (!fp8) return seg;
  const int64_t ld = fp8_weight_scale_ld(in), brows = (seg.rows + 127) / 128;
  std::vector<float> scale(size_t(brows * ld), 0.0f);
  int64_t r = 0;
  for (const auto& p : parts) {
    place_scale(p, scale.data(), r / 128, ld, in);
    r += p.weight.size(0);
  }
  seg.fp8 = true;
  seg.scale = upload_bytes(scale.data(), DType::F32, {brows, ld});
  // Whether the sm90 kernel takes the segment at prefill sizes: activations come quantized from
  // scratch memory (aligned), outputs land at column row0 of rows of out_features (checked per
  // call through the same function, with the real pointers).
  Fp8GemmSm90Params p;
  p.a = reinterpret_cast<const uint8_t*>(uintptr_t(256)), p.lda = in;
  p.a_scale = reinterpret_cast<const float*>(uintptr_t(256)), p.a_scale_ld = 128;
  p.b = static_cast<const uint8_t*>(seg.weight.data()), p.ldb = in;
  p.b_scale = seg.scale.ptr<float>(), p.b_scale_ld = ld;
  p.d = reinterpret_cast<void*>(uintptr_t(256) + uintptr_t(row0) * 2), p.ldd = out_features;
  p.M = 128, p.N = seg.rows, p.K = in;
  seg.sm90 = fp8_gemm_sm90_supported(p, &seg.sm90_refusal);
  return seg;
}

LinearWeight CudaBackend::make_linear(std::span<const WeightPart> parts, LinearUse use) {
  DS_CHECK(!parts.empty(), "make_linear: no weight parts");
  const int64_t in = parts[0].in_features();
  int64_t out = 0;
  for (const auto& p : parts) {
    check_weight_part(p);
    DS_CHECK(p.in_features() == in, "make_linear: fused parts differ in input features ({} vs {})", p.in_features(),
             in);
    out += p.out_features();
  }
  auto lin = std::make_shared<CudaLinear>();
  lin->use = use;
  // Group consecutive parts into segments: quantized (AWQ W4A16, INT8 W8A8: cuda_quant_weights.cpp,
  // when set_quantized_kernels is on) or FP8 where allowed (a new segment whenever a part would start
  // inside a 128-row scale block of the segment), BF16 otherwise.
  const bool fp8_allowed = use == LinearUse::Projection && in % 128 == 0;
  enum class Kind { Bf16, Fp8, Quant };
  struct Group {
    size_t first, count;
    int64_t row0, rows;
    Kind kind;
  };
  std::vector<Group> groups;
  int64_t row = 0;
  for (size_t i = 0; i < parts.size(); ++i) {
    const bool quant = use == LinearUse::Projection && quant_kernels_ && quant_part_supported(parts[i]);
    const Kind kind = quant ? Kind::Quant : fp8_allowed && is_e4m3(parts[i]) && row % 8 == 0 ? Kind::Fp8 : Kind::Bf16;
    const int64_t rows = parts[i].out_features();
    const bool joins = !groups.empty() && groups.back().kind == kind &&
                       (kind == Kind::Bf16 || (kind == Kind::Fp8 && groups.back().rows % 128 == 0) ||
                        (kind == Kind::Quant && quant_parts_fuse(parts[groups.back().first], parts[i],
                                                                 groups.back().rows)));
    if (joins) {
      groups.back().count++;
      groups.back().rows += rows;
    } else {
      groups.push_back({i, 1, row, rows, kind});
    }
    row += rows;
  }
  for (const auto& g : groups) {
    LinearSegment seg = g.kind == Kind::Quant ? make_quant_segment(parts.subspan(g.first, g.count), g.row0, in)
                                              : make_segment(parts.subspan(g.first, g.count), g.row0,
                                                             g.kind == Kind::Fp8, use, in, out);
    // cuBLASLt declined (Hopper; the sm80 kernel set runs FP8 segments as W8A16 and never asks it).
    if (seg.fp8 && hopper_kernels() &&
        !(gemm_->supported(probe_args(seg, in, out, 8)) && gemm_->supported(probe_args(seg, in, out, 512))))
      seg = make_segment(parts.subspan(g.first, g.count), g.row0, false, use, in, out);  // cuBLASLt declined: BF16
    // Adjacent BF16 segments run as one product.
    if (!seg.fp8 && !seg.quant && !lin->segments.empty() && !lin->segments.back().fp8 &&
        !lin->segments.back().quant) {
      LinearSegment& prev = lin->segments.back();
      Tensor merged = alloc(prev.weight.dtype(), {prev.rows + seg.rows, in});
      check(cudaMemcpyAsync(merged.data(), prev.weight.data(), prev.weight.nbytes(), cudaMemcpyDeviceToDevice, stream_),
            "merge segments");
      check(cudaMemcpyAsync(static_cast<char*>(merged.data()) + prev.weight.nbytes(), seg.weight.data(),
                            seg.weight.nbytes(), cudaMemcpyDeviceToDevice, stream_),
            "merge segments");
      prev.rows += seg.rows;
      prev.weight = merged;
      continue;
    }
    lin->segments.push_back(std::move(seg));
  }
  check(cudaStreamSynchronize(stream_), "make_linear");
  if (lin->any_fp8()) {
    check(prepare_fp8_decode_gemm(), "fp8 decode linear: device capacity");
    if (fused_decode_) check(prepare_w8a8_decode(), "fp8 decode linear (w8a8): device capacity");
  }
  return LinearWeight{out, in, lin};
}

void CudaBackend::set_fused_decode(bool on) {
  DS_CHECK(!on || hopper_kernels(), "the fused decode path runs W8A8 products on FP8 tensor cores: the sm80 kernel "
           "set (Ampere) has none");
  if (on) {
    int caller = 0;
    check(cudaGetDevice(&caller), "cudaGetDevice");
    check(cudaSetDevice(device_), "cudaSetDevice");
    const cudaError_t e = prepare_w8a8_decode();
    check(cudaSetDevice(caller), "cudaSetDevice");
    check(e, "fused decode path: the W8A8 decode kernels' device capacity");
  }
  fused_decode_ = on;
}

std::string CudaBackend::describe(const ExpertWeights& w) {
  const auto& ew = *static_cast<const CudaExperts*>(w.impl.get());
  return std::string(ew.quant ? quant_kind_name(ew.quant_kind) : ew.fp8 ? "fp8" : "bf16") + " experts [" +
         std::to_string(w.num_experts) + " x " +
         std::to_string(w.intermediate) + "/" + std::to_string(w.hidden) + "]";
}

std::string CudaBackend::fp8_paths(const LinearWeight& w) {
  const auto& lin = *static_cast<const CudaLinear*>(w.impl.get());
  std::string s;
  for (const auto& seg : lin.segments) {
    if (!seg.fp8) continue;
    if (!s.empty()) s += " + ";
    s += (seg.sm90 ? "sm90 [" : "cublaslt [") + std::to_string(seg.rows) + "]";
    if (!seg.sm90) s += " (sm90: " + seg.sm90_refusal + ")";
  }
  return s;
}

std::string CudaBackend::describe(const LinearWeight& w) {
  const auto& lin = *static_cast<const CudaLinear*>(w.impl.get());
  std::string s;
  for (const auto& seg : lin.segments) {
    if (!s.empty()) s += " + ";
    const char* kind = seg.quant ? quant_kind_name(seg.quant_kind)
                       : seg.fp8   ? "fp8"
                       : seg.weight.dtype() == DType::F32 ? "f32"
                                                          : "bf16";
    s += std::string(kind) + " [" + std::to_string(seg.rows) + "]";
  }
  return s;
}

HeadWeight CudaBackend::make_head_weight(const Tensor& host_f32, bool from_fp8_blocks) {
  DS_CHECK(host_f32.ndim() == 3 && host_f32.dtype() == DType::F32, "make_head_weight: expected F32 [heads, out, in]");
  Tensor c = host_to_f32(host_f32);
  std::vector<uint16_t> b = to_bf16(c);
  auto hw = std::make_shared<CudaHeadWeight>();
  hw->weight = upload_bytes(b.data(), DType::BF16, host_f32.shape());
  const int64_t n = host_f32.size(0), out = host_f32.size(1), in = host_f32.size(2);
  if (from_fp8_blocks && head_fp8_ && out % 128 == 0 && in % 128 == 0) {
    // Back to e4m3 per 128x128 block of each head: s = max|w| / 448. A checkpoint block's largest
    // code is +-448 (its scale was chosen so), and the dequantized values carry a BF16 rounding
    // (relative 2^-9, far below e4m3's half step of 2^-4): so the codes come back exactly and s is
    // the block's scale to within that rounding.
    const int64_t br = out / 128, ld = fp8_weight_scale_ld(in);
    std::vector<uint8_t> q(size_t(n * out * in));
    std::vector<float> s(size_t(n * br * ld), 0.0f);
    const float* w = c.ptr<float>();
    for (int64_t h = 0; h < n; ++h)
      for (int64_t r0 = 0; r0 < out; r0 += 128)
        for (int64_t c0 = 0; c0 < in; c0 += 128) {
          float amax = 0.0f;
          for (int64_t r = r0; r < r0 + 128; ++r)
            for (int64_t k = c0; k < c0 + 128; ++k) amax = std::max(amax, std::fabs(w[(h * out + r) * in + k]));
          const float sc = std::max(amax, 1e-30f) / 448.0f;
          s[size_t((h * br + r0 / 128) * ld + c0 / 128)] = sc;
          for (int64_t r = r0; r < r0 + 128; ++r)
            for (int64_t k = c0; k < c0 + 128; ++k)
              q[size_t((h * out + r) * in + k)] = f32_to_e4m3(w[(h * out + r) * in + k] / sc);
        }
    hw->fp8 = true;
    hw->weight_fp8 = upload_bytes(q.data(), DType::F8_E4M3, host_f32.shape());
    hw->scale = upload_bytes(s.data(), DType::F32, {n, br, ld});
  }
  return HeadWeight{host_f32.size(0), host_f32.size(1), host_f32.size(2), hw};
}

ExpertWeights CudaBackend::make_experts(std::span<const ExpertParts> experts) {
  DS_CHECK(!experts.empty(), "make_experts: no experts");
  const int64_t E = int64_t(experts.size()), I = experts[0].gate.out_features(), H = experts[0].gate.in_features();
  for (int64_t e = 0; e < E; ++e) {
    const auto& x = experts[e];
    for (const WeightPart* p : {&x.gate, &x.up, &x.down}) check_weight_part(*p);
    auto dims = [](const WeightPart& p) { return Shape({p.out_features(), p.in_features()}); };
    DS_CHECK(dims(x.gate) == Shape({I, H}) && dims(x.up) == Shape({I, H}) && dims(x.down) == Shape({H, I}),
             "expert {}: gate/up/down shapes {} {} {} do not match [{}, {}]", e, dims(x.gate).str(),
             dims(x.up).str(), dims(x.down).str(), I, H);
  }
  if (quant_kernels_)
    if (ExpertWeights q = make_quant_experts(experts); q.impl) return q;
  bool fp8 = H % 128 == 0 && I % 128 == 0;
  for (const auto& x : experts) fp8 = fp8 && is_e4m3(x.gate) && is_e4m3(x.up) && is_e4m3(x.down);
  // Hopper: ask cuBLASLt for both products at a small and a large segment; BF16 if it declines. The
  // sm80 kernel set runs FP8 experts as W8A16 (grouped kernel, or widened before BF16 products).
  if (fp8 && hopper_kernels()) {
    for (int64_t rows : {8, 512}) {
      GemmArgs a;
      a.kind = GemmKind::Fp8BlockScaled;
      a.n = rows;
      a.d_type = CUDA_R_16BF;
      void* fake = reinterpret_cast<void*>(uintptr_t(256));  // only the alignment matters
      a.w = a.x = a.d = fake;
      a.w_scale = a.x_scale = static_cast<const float*>(fake);
      a.m = 2 * I, a.k = H, a.ldw = a.ldx = H, a.ldd = 2 * I;
      fp8 = fp8 && gemm_->supported(a);
      a.m = H, a.k = I, a.ldw = a.ldx = I, a.ldd = H;
      fp8 = fp8 && gemm_->supported(a);
    }
  }
  auto ew = std::make_shared<CudaExperts>();
  const size_t gu_elems = size_t(2 * I * H), dn_elems = size_t(H * I);  // per expert; offsets in size_t
  if (fp8) {
    ew->fp8 = true;
    const int64_t gu_ld = fp8_weight_scale_ld(H), dn_ld = fp8_weight_scale_ld(I);
    const int64_t gu_br = 2 * I / 128, dn_br = (H + 127) / 128;
    ew->gate_up = alloc(DType::F8_E4M3, {E, 2 * I, H});
    ew->down = alloc(DType::F8_E4M3, {E, H, I});
    ew->gate_up_scale = alloc(DType::F32, {E, gu_br, gu_ld});
    ew->down_scale = alloc(DType::F32, {E, dn_br, dn_ld});
    std::vector<float> gs(size_t(gu_br * gu_ld)), ds(size_t(dn_br * dn_ld));
    for (int64_t e = 0; e < E; ++e) {
      const auto& x = experts[e];
      char* gu = static_cast<char*>(ew->gate_up.data()) + size_t(e) * gu_elems;
      // cudaMemcpyDefault: the parts are host (checkpoint) or device (random_weight) memory.
      check(cudaMemcpyAsync(gu, x.gate.weight.data(), x.gate.weight.nbytes(), cudaMemcpyDefault, stream_),
            "upload expert");
      check(cudaMemcpyAsync(gu + x.gate.weight.nbytes(), x.up.weight.data(), x.up.weight.nbytes(), cudaMemcpyDefault,
                            stream_),
            "upload expert");
      check(cudaMemcpyAsync(static_cast<char*>(ew->down.data()) + size_t(e) * dn_elems, x.down.weight.data(),
                            x.down.weight.nbytes(), cudaMemcpyDefault, stream_),
            "upload expert");
      std::fill(gs.begin(), gs.end(), 0.0f);
      std::fill(ds.begin(), ds.end(), 0.0f);
      place_scale(x.gate, gs.data(), 0, gu_ld, H);
      place_scale(x.up, gs.data(), I / 128, gu_ld, H);
      place_scale(x.down, ds.data(), 0, dn_ld, I);
      check(cudaMemcpyAsync(ew->gate_up_scale.ptr<float>() + size_t(e) * gs.size(), gs.data(), gs.size() * 4,
                            cudaMemcpyHostToDevice, stream_),
            "upload expert scales");
      check(cudaMemcpyAsync(ew->down_scale.ptr<float>() + size_t(e) * ds.size(), ds.data(), ds.size() * 4,
                            cudaMemcpyHostToDevice, stream_),
            "upload expert scales");
      check(cudaStreamSynchronize(stream_), "upload expert");  // the staging vectors are reused
    }
    return ExpertWeights{E, H, I, ew};
  }
  ew->gate_up = alloc(DType::BF16, {E, 2 * I, H});
  ew->down = alloc(DType::BF16, {E, H, I});
  for (int64_t e = 0; e < E; ++e) {
    const auto& x = experts[e];
    auto plain_bf16 = [](const WeightPart& p) {
      return p.format == WeightFormat::Float && p.weight.dtype() == DType::BF16 && p.weight.stride(1) == 1 &&
             p.weight.stride(0) == p.weight.size(1);
    };
    if (plain_bf16(x.gate) && plain_bf16(x.up) && plain_bf16(x.down)) {  // as stored (host or device): no conversion
      uint16_t* gu = ew->gate_up.ptr<uint16_t>() + size_t(e) * gu_elems;
      check(cudaMemcpyAsync(gu, x.gate.weight.data(), x.gate.weight.nbytes(), cudaMemcpyDefault, stream_),
            "upload expert");
      check(cudaMemcpyAsync(gu + size_t(I * H), x.up.weight.data(), x.up.weight.nbytes(), cudaMemcpyDefault, stream_),
            "upload expert");
      check(cudaMemcpyAsync(ew->down.ptr<uint16_t>() + size_t(e) * dn_elems, x.down.weight.data(),
                            x.down.weight.nbytes(), cudaMemcpyDefault, stream_),
            "upload expert");
      continue;
    }
    std::vector<uint16_t> g = to_bf16(dequantize_to_f32(on_host(x.gate))), u = to_bf16(dequantize_to_f32(on_host(x.up))),
                          d = to_bf16(dequantize_to_f32(on_host(x.down)));
    uint16_t* gu = ew->gate_up.ptr<uint16_t>() + size_t(e) * gu_elems;
    check(cudaMemcpyAsync(gu, g.data(), g.size() * 2, cudaMemcpyHostToDevice, stream_), "upload expert");
    check(cudaMemcpyAsync(gu + g.size(), u.data(), u.size() * 2, cudaMemcpyHostToDevice, stream_), "upload expert");
    check(cudaMemcpyAsync(ew->down.ptr<uint16_t>() + size_t(e) * dn_elems, d.data(), d.size() * 2,
                          cudaMemcpyHostToDevice, stream_),
          "upload expert");
    check(cudaStreamSynchronize(stream_), "upload expert");
  }
  check(cudaStreamSynchronize(stream_), "upload experts");
  return ExpertWeights{E, H, I, ew};
}

Tensor CudaBackend::make_vector(const Tensor& host) {
  Tensor f = host_to_f32(host);
  return upload_bytes(f.data(), DType::F32, f.shape());
}

Tensor CudaBackend::make_embedding(const Tensor& host) {
  DS_CHECK(host.ndim() == 2, "make_embedding: expected [vocab, hidden], found {}", host.shape().str());
  if (host.device() == Device::CUDA)  // generated on the device: adopted when already BF16
    return host.dtype() == DType::BF16 && host.is_contiguous() ? host : to_device(as_dtype(host, DType::BF16, false));
  if (host.dtype() == DType::BF16 && host.is_contiguous()) return upload_bytes(host.data(), DType::BF16, host.shape());
  std::vector<uint16_t> b = to_bf16(host_to_f32(host));
  return upload_bytes(b.data(), DType::BF16, host.shape());
}

Tensor CudaBackend::make_rope_table(const Tensor& host) {
  Tensor f = host_to_f32(host);
  return upload_bytes(f.data(), DType::F32, f.shape());
}

}  // namespace dsserve::cuda
