// Host-side dequantization of checkpoint weights (see weight_dequant.h).
#include "backend/weight_dequant.h"

#include <cstring>

#include "core/error.h"

namespace dsserve {

const char* weight_format_name(WeightFormat f) {
  switch (f) {
    case WeightFormat::Float: return "bf16";
    case WeightFormat::BlockFp8: return "fp8";
    case WeightFormat::BlockInt8: return "int8 block";
    case WeightFormat::ChannelInt8: return "int8 channel";
    case WeightFormat::Awq: return "awq";
  }
  return "?";
}

Tensor host_to_f32(const Tensor& t) {
  DS_CHECK(t.device() == Device::CPU, "host_to_f32: tensor is not in host memory");
  Tensor out = Tensor::zeros_host(DType::F32, t.shape());
  if (t.is_contiguous()) {
    convert_to_f32(t.dtype(), t.data(), out.ptr<float>(), size_t(t.numel()));
    return out;
  }
  // Strided: convert row by row over the leading dims (last dim must be contiguous).
  DS_CHECK(t.stride(-1) == 1, "host_to_f32: last dimension must be contiguous");
  int64_t cols = t.size(-1), rows = t.numel() / std::max<int64_t>(cols, 1);
  size_t es = dtype_size(t.dtype());
  for (int64_t r = 0; r < rows; ++r) {
    int64_t off = 0, rem = r;
    for (int d = t.ndim() - 2; d >= 0; --d) {
      off += (rem % t.size(d)) * t.stride(d);
      rem /= t.size(d);
    }
    convert_to_f32(t.dtype(), static_cast<const char*>(t.data()) + off * es, out.ptr<float>() + r * cols,
                   size_t(cols));
  }
  return out;
}

namespace {

std::string label(const WeightPart& p, const char* suffix) {
  if (p.name.empty()) return std::string("weight ") + suffix;
  return p.name + (suffix[0] ? std::string(" (") + suffix + ")" : "");
}

void expect(bool ok, const WeightPart& p, const char* which, const std::string& expected, const Tensor& found) {
  DS_CHECK(ok, "{}: expected {}, found {}", label(p, which), expected,
           found.defined() ? std::string(dtype_name(found.dtype())) + " " + found.shape().str() : "no tensor");
}

bool is_float(DType t) { return t == DType::F32 || t == DType::BF16 || t == DType::F16; }

// A contiguous host copy of any host tensor's bytes (rows may be strided).
Tensor packed_bytes(const Tensor& t) {
  if (t.is_contiguous()) return t;
  DS_CHECK(t.ndim() == 2 && t.stride(1) == 1, "weight tensor {} is strided in its last dimension", t.shape().str());
  Tensor out = Tensor::zeros_host(t.dtype(), t.shape());
  const size_t row = size_t(t.size(1)) * dtype_size(t.dtype());
  for (int64_t r = 0; r < t.size(0); ++r)
    std::memcpy(static_cast<char*>(out.data()) + size_t(r) * row,
                static_cast<const char*>(t.data()) + size_t(r * t.stride(0)) * dtype_size(t.dtype()), row);
  return out;
}

}  // namespace

void check_weight_part(const WeightPart& p) {
  const Tensor& w = p.weight;
  const WeightFormat f = p.stored_format();
  DS_CHECK(w.defined() && w.ndim() == 2, "{}: expected a 2-D weight, found {}", label(p, ""),
           w.defined() ? w.shape().str() : std::string("no tensor"));
  switch (f) {
    case WeightFormat::Float:
      expect(is_float(w.dtype()), p, "", "BF16, F16 or F32", w);
      return;
    case WeightFormat::BlockFp8:
    case WeightFormat::BlockInt8: {
      if (f == WeightFormat::BlockInt8) expect(w.dtype() == DType::I8, p, "", "I8 [out, in]", w);
      const int64_t br = (w.size(0) + 127) / 128, bc = (w.size(1) + 127) / 128;
      expect(p.scale.defined() && p.scale.dtype() == DType::F32 && p.scale.shape() == Shape({br, bc}), p,
             "weight_scale_inv", fmt::format("F32 [{}, {}] for a weight of {}", br, bc, w.shape().str()), p.scale);
      return;
    }
    case WeightFormat::ChannelInt8:
      expect(w.dtype() == DType::I8, p, "", "I8 [out, in]", w);
      expect(p.scale.defined() && p.scale.dtype() == DType::F32 && p.scale.shape() == Shape({w.size(0), 1}), p,
             "weight_scale", fmt::format("F32 [{}, 1] for a weight of {}", w.size(0), w.shape().str()), p.scale);
      return;
    case WeightFormat::Awq: {
      expect(w.dtype() == DType::I32, p, "qweight", "I32 [in, out/8]", w);
      const int64_t in = w.size(0), g = p.group_size;
      DS_CHECK(g > 0 && in % g == 0, "{}: group_size {} does not divide the input width {}", label(p, "qweight"), g,
               in);
      expect(p.scale.defined() && p.scale.ndim() == 2, p, "scales", fmt::format("F16 [{}, out]", in / g), p.scale);
      const int64_t out = p.scale.size(1);
      expect(p.scale.dtype() == DType::F16 && p.scale.size(0) == in / g, p, "scales",
             fmt::format("F16 [{}, {}] (input width {} in groups of {})", in / g, out, in, g), p.scale);
      DS_CHECK(out % 8 == 0, "{}: {} output columns are not a multiple of 8 (AWQ packs 8 per int32)",
               label(p, "scales"), out);
      expect(w.size(1) == out / 8, p, "qweight", fmt::format("I32 [{}, {}] for {} output columns", in, out / 8, out),
             w);
      expect(p.zeros.defined() && p.zeros.dtype() == DType::I32 && p.zeros.shape() == Shape({in / g, out / 8}), p,
             "qzeros", fmt::format("I32 [{}, {}]", in / g, out / 8), p.zeros);
      return;
    }
  }
}

Tensor dequantize_to_f32(const WeightPart& part, int block) {
  check_weight_part(part);
  const WeightFormat f = part.stored_format();
  const Tensor& w = part.weight;
  if (f == WeightFormat::Awq) {
    const int64_t in = w.size(0), out = part.scale.size(1), g = part.group_size;
    const Tensor q = packed_bytes(w), z = packed_bytes(part.zeros);
    const Tensor s = host_to_f32(part.scale);
    Tensor o = Tensor::zeros_host(DType::F32, {out, in});
    float* dst = o.ptr<float>();
    for (int64_t k = 0; k < in; ++k) {
      const int32_t* qrow = q.ptr<int32_t>() + k * (out / 8);
      const int32_t* zrow = z.ptr<int32_t>() + (k / g) * (out / 8);
      const float* srow = s.ptr<float>() + (k / g) * out;
      for (int64_t j = 0; j < out; ++j)
        dst[j * in + k] = bf16_to_f32(f32_to_bf16(float(awq_nibble(qrow, j) - awq_nibble(zrow, j)) * srow[j]));
    }
    return o;
  }
  if (f == WeightFormat::Float) return host_to_f32(w);
  const int64_t rows = w.size(0), cols = w.size(1);
  Tensor out;
  if (f == WeightFormat::BlockFp8) {
    out = host_to_f32(w);
  } else {  // int8 values
    const Tensor q = packed_bytes(w);
    out = Tensor::zeros_host(DType::F32, w.shape());
    for (int64_t i = 0; i < rows * cols; ++i) out.ptr<float>()[i] = float(q.ptr<int8_t>()[i]);
  }
  const Tensor s = host_to_f32(part.scale);
  float* o = out.ptr<float>();
  const float* sp = s.ptr<float>();
  const int64_t bc = (cols + block - 1) / block;
  // Rounded to BF16, as DeepSeek's FP8-to-BF16 conversion of the published checkpoint does: the
  // oracle then computes exactly what the BF16 form of the same checkpoint computes.
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const float scale = f == WeightFormat::ChannelInt8 ? sp[r] : sp[(r / block) * bc + c / block];
      o[r * cols + c] = bf16_to_f32(f32_to_bf16(o[r * cols + c] * scale));
    }
  }
  return out;
}

}  // namespace dsserve
