// Tensor: a typed, shaped, strided view of memory on one device, optionally keeping its storage
// alive. Views (slices, reshapes) never copy. Ops state which layouts they accept.
#pragma once
#include <array>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>

#include "core/dtype.h"

namespace dsserve {

enum class Device : uint8_t { CPU, CUDA };

constexpr int kMaxDims = 4;

struct Shape {
  int ndim = 0;
  std::array<int64_t, kMaxDims> d{};
  Shape() = default;
  Shape(std::initializer_list<int64_t> dims);
  int64_t operator[](int i) const { return d[i < 0 ? i + ndim : i]; }
  int64_t& operator[](int i) { return d[i < 0 ? i + ndim : i]; }
  int64_t numel() const;
  bool operator==(const Shape& o) const;
  std::string str() const;  // "[4, 128]"
};

class Tensor {
 public:
  Tensor() = default;
  // A contiguous view of `data` (not owned unless `storage` holds it).
  Tensor(void* data, DType dtype, Shape shape, Device device = Device::CPU,
         std::shared_ptr<void> storage = nullptr);

  // Allocates a zero-filled contiguous host tensor.
  static Tensor zeros_host(DType dtype, Shape shape);

  bool defined() const { return data_ != nullptr || (shape_.numel() == 0 && shape_.ndim > 0); }
  void* data() const { return data_; }
  template <typename T> T* ptr() const { return static_cast<T*>(data_); }
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  const Shape& shape() const { return shape_; }
  int ndim() const { return shape_.ndim; }
  int64_t size(int i) const { return shape_[i]; }
  int64_t stride(int i) const { return stride_[i < 0 ? i + shape_.ndim : i]; }
  int64_t numel() const { return shape_.numel(); }
  size_t nbytes() const { return size_t(numel()) * dtype_size(dtype_); }
  bool is_contiguous() const;
  const std::shared_ptr<void>& storage() const { return storage_; }

  // Views.
  Tensor reshape(Shape s) const;                          // contiguous tensors only
  Tensor slice(int dim, int64_t start, int64_t end) const;  // [start, end) along dim
  Tensor select(int64_t index) const;                     // index along dim 0, drops it
  Tensor unflatten(int dim, int64_t a, int64_t b) const;  // splits dim (contiguous within) into [a, b]
  Tensor merge_leading() const;                           // [a, b, ...] -> [a*b, ...] when strides allow

 private:
  void* data_ = nullptr;
  DType dtype_ = DType::F32;
  Device device_ = Device::CPU;
  Shape shape_;
  std::array<int64_t, kMaxDims> stride_{};
  std::shared_ptr<void> storage_;
};

}  // namespace dsserve
