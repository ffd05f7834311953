// Host-side dequantization of checkpoint weights (see weight_dequant.h).
#include "backend/weight_dequant.h"

#include "core/error.h"

namespace dsserve {

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

Tensor dequantize_to_f32(const WeightPart& part, int block) {
  const Tensor& w = part.weight;
  DS_CHECK(w.ndim() == 2, "weight must be 2-D, found {}", w.shape().str());
  Tensor out = host_to_f32(w);
  bool fp8 = w.dtype() == DType::F8_E4M3 || w.dtype() == DType::F8_E5M2;
  if (!fp8) return out;
  int64_t rows = w.size(0), cols = w.size(1);
  int64_t br = (rows + block - 1) / block, bc = (cols + block - 1) / block;
  DS_CHECK(part.scale.data() != nullptr, "fp8 weight {} has no weight_scale_inv", w.shape().str());
  DS_CHECK(part.scale.shape() == Shape({br, bc}), "weight_scale_inv shape: expected [{}, {}] for weight {}, found {}",
           br, bc, w.shape().str(), part.scale.shape().str());
  Tensor s = host_to_f32(part.scale);
  float* o = out.ptr<float>();
  const float* sp = s.ptr<float>();
  // Rounded to BF16, as DeepSeek's FP8-to-BF16 conversion of the published checkpoint does: the
  // oracle then computes exactly what the BF16 form of the same checkpoint computes.
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      o[r * cols + c] = bf16_to_f32(f32_to_bf16(o[r * cols + c] * sp[(r / block) * bc + c / block]));
  return out;
}

}  // namespace dsserve
