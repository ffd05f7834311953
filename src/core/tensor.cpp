// Tensor views (see tensor.h).
#include "core/tensor.h"

#include <cstdlib>
#include <cstring>

#include "core/error.h"

namespace dsserve {

Shape::Shape(std::initializer_list<int64_t> dims) {
  DS_CHECK(dims.size() <= size_t(kMaxDims), "tensor rank {} exceeds {}", dims.size(), kMaxDims);
  for (int64_t v : dims) d[ndim++] = v;
}

int64_t Shape::numel() const {
  int64_t n = 1;
  for (int i = 0; i < ndim; ++i) n *= d[i];
  return n;
}

bool Shape::operator==(const Shape& o) const {
  if (ndim != o.ndim) return false;
  for (int i = 0; i < ndim; ++i)
    if (d[i] != o.d[i]) return false;
  return true;
}

std::string Shape::str() const {
  std::string s = "[";
  for (int i = 0; i < ndim; ++i) s += (i ? ", " : "") + std::to_string(d[i]);
  return s + "]";
}

Tensor::Tensor(void* data, DType dtype, Shape shape, Device device, std::shared_ptr<void> storage)
    : data_(data), dtype_(dtype), device_(device), shape_(shape), storage_(std::move(storage)) {
  int64_t s = 1;
  for (int i = shape_.ndim - 1; i >= 0; --i) {
    stride_[i] = s;
    s *= shape_.d[i];
  }
}

Tensor Tensor::zeros_host(DType dtype, Shape shape) {
  size_t bytes = size_t(shape.numel()) * dtype_size(dtype);
  void* p = std::aligned_alloc(64, (bytes + 63) / 64 * 64 + 64);
  DS_CHECK(p != nullptr, "out of host memory allocating {} bytes", bytes);
  std::memset(p, 0, bytes);
  std::shared_ptr<void> st(p, [](void* q) { std::free(q); });
  return Tensor(p, dtype, shape, Device::CPU, st);
}

bool Tensor::is_contiguous() const {
  int64_t s = 1;
  for (int i = shape_.ndim - 1; i >= 0; --i) {
    if (shape_.d[i] != 1 && stride_[i] != s) return false;
    s *= shape_.d[i];
  }
  return true;
}

Tensor Tensor::reshape(Shape s) const {
  DS_CHECK(is_contiguous(), "reshape of a non-contiguous tensor {}", shape_.str());
  DS_CHECK(s.numel() == numel(), "reshape {} -> {}: element counts differ", shape_.str(), s.str());
  return Tensor(data_, dtype_, s, device_, storage_);
}

Tensor Tensor::slice(int dim, int64_t start, int64_t end) const {
  if (dim < 0) dim += shape_.ndim;
  DS_CHECK(dim >= 0 && dim < shape_.ndim && 0 <= start && start <= end && end <= shape_.d[dim],
           "slice [{}, {}) of dim {} out of range for {}", start, end, dim, shape_.str());
  Tensor t = *this;
  t.data_ = static_cast<char*>(data_) + start * stride_[dim] * int64_t(dtype_size(dtype_));
  t.shape_.d[dim] = end - start;
  return t;
}

Tensor Tensor::select(int64_t index) const {
  DS_CHECK(shape_.ndim >= 1 && index >= 0 && index < shape_.d[0], "select {} out of range for {}", index,
           shape_.str());
  Tensor t = *this;
  t.data_ = static_cast<char*>(data_) + index * stride_[0] * int64_t(dtype_size(dtype_));
  for (int i = 0; i + 1 < shape_.ndim; ++i) {
    t.shape_.d[i] = shape_.d[i + 1];
    t.stride_[i] = stride_[i + 1];
  }
  t.shape_.ndim--;
  return t;
}

Tensor Tensor::unflatten(int dim, int64_t a, int64_t b) const {
  if (dim < 0) dim += shape_.ndim;
  DS_CHECK(dim >= 0 && dim < shape_.ndim && a * b == shape_.d[dim] && shape_.ndim < kMaxDims,
           "unflatten dim {} of {} into [{}, {}]", dim, shape_.str(), a, b);
  Tensor t = *this;
  for (int i = shape_.ndim; i > dim + 1; --i) {
    t.shape_.d[i] = shape_.d[i - 1];
    t.stride_[i] = stride_[i - 1];
  }
  t.shape_.d[dim] = a;
  t.shape_.d[dim + 1] = b;
  t.stride_[dim + 1] = stride_[dim];
  t.stride_[dim] = stride_[dim] * b;
  t.shape_.ndim++;
  return t;
}

Tensor Tensor::merge_leading() const {
  DS_CHECK(shape_.ndim >= 2 && stride_[0] == shape_.d[1] * stride_[1], "merge_leading: {} is not mergeable",
           shape_.str());
  Tensor t = *this;
  t.shape_.d[0] = shape_.d[0] * shape_.d[1];
  t.stride_[0] = stride_[1];
  for (int i = 1; i + 1 < shape_.ndim; ++i) {
    t.shape_.d[i] = shape_.d[i + 1];
    t.stride_[i] = stride_[i + 1];
  }
  t.shape_.ndim--;
  return t;
}

}  // namespace dsserve
