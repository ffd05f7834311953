// CPU backend: dense ops (embedding, RMSNorm, linear, per-head linear, RoPE, SiLU-and-mul, ...).
// Activations are float32 [rows, cols] with contiguous columns; rows may be strided views.
#include <cblas.h>

#include <cmath>
#include <cstring>

#include "backend/cpu/cpu_backend.h"
#include "core/error.h"

namespace dsserve {

namespace {
void check_rows(const Tensor& x, const char* op) {
  DS_CHECK(x.dtype() == DType::F32 && x.device() == Device::CPU, "{}: expected a host F32 tensor", op);
  DS_CHECK(x.ndim() == 2 && x.stride(1) == 1, "{}: expected [rows, cols] with contiguous cols, found {}", op,
           x.shape().str());
}
}  // namespace

void cpu_matmul_nt(const Tensor& x, const float* w, int64_t out_features, float* y) {
  int64_t rows = x.size(0), in = x.size(1);
  if (rows == 0) return;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(rows), int(out_features), int(in), 1.0f, x.ptr<float>(),
              int(x.stride(0)), w, int(in), 0.0f, y, int(out_features));
}

Tensor CpuBackend::embedding(const Tensor& table, const Tensor& ids) {
  int64_t T = ids.size(0), H = table.size(1), V = table.size(0);
  Tensor out = alloc(DType::F32, {T, H});
  for (int64_t t = 0; t < T; ++t) {
    int32_t id = ids.ptr<int32_t>()[t];
    DS_CHECK(id >= 0 && id < V, "token id {} at position {} is outside the vocabulary [0, {})", id, t, V);
    std::memcpy(out.ptr<float>() + t * H, table.ptr<float>() + int64_t(id) * H, size_t(H) * 4);
  }
  return out;
}

Tensor CpuBackend::rms_norm(const Tensor& x, const Tensor& w, float eps) {
  check_rows(x, "rms_norm");
  int64_t T = x.size(0), H = x.size(1);
  DS_CHECK(w.numel() == H, "rms_norm: weight has {} values for {} columns", w.numel(), H);
  Tensor out = alloc(DType::F32, {T, H});
  for (int64_t t = 0; t < T; ++t) {
    const float* xr = x.ptr<float>() + t * x.stride(0);
    float* o = out.ptr<float>() + t * H;
    double ss = 0;
    for (int64_t i = 0; i < H; ++i) ss += double(xr[i]) * xr[i];
    float r = float(1.0 / std::sqrt(ss / double(H) + eps));
    for (int64_t i = 0; i < H; ++i) o[i] = w.ptr<float>()[i] * (xr[i] * r);
  }
  return out;
}

Tensor CpuBackend::add_rms_norm(Tensor& residual, const Tensor& x, const Tensor& w, float eps) {
  add_inplace(residual, x);
  return rms_norm(residual, w, eps);
}

Tensor CpuBackend::linear(const Tensor& x, const LinearWeight& w) {
  check_rows(x, "linear");
  DS_CHECK(x.size(1) == w.in_features, "linear: input has {} features, weight expects {}", x.size(1), w.in_features);
  Tensor out = alloc(DType::F32, {x.size(0), w.out_features});
  cpu_matmul_nt(x, cpu_linear_weight(w).ptr<float>(), w.out_features, out.ptr<float>());
  return out;
}

Tensor CpuBackend::head_linear(const Tensor& x, const HeadWeight& w) {
  DS_CHECK(x.ndim() == 3 && x.size(1) == w.heads && x.size(2) == w.in_features && x.stride(2) == 1,
           "head_linear: input {} does not match weight [{}, {}, {}]", x.shape().str(), w.heads, w.out_features,
           w.in_features);
  int64_t T = x.size(0), n = w.heads, in = w.in_features, out_f = w.out_features;
  Tensor out = alloc(DType::F32, {T, n, out_f});
  const float* W = cpu_head_weight(w).ptr<float>();
  for (int64_t h = 0; h < n; ++h) {
    if (T == 0) break;
    // rows t of head h: x + t*stride0 + h*stride1; output rows strided by n*out.
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(T), int(out_f), int(in), 1.0f,
                x.ptr<float>() + h * x.stride(1), int(x.stride(0)), W + h * out_f * in, int(in), 0.0f,
                out.ptr<float>() + h * out_f, int(n * out_f));
  }
  return out;
}

void CpuBackend::rope_inplace(Tensor& x, const Tensor& positions, const Tensor& table) {
  DS_CHECK(x.ndim() == 3 && x.stride(2) == 1, "rope: expected [T, n, d] with contiguous d, found {}",
           x.shape().str());
  int64_t T = x.size(0), n = x.size(1), d = x.size(2), P = table.size(0);
  DS_CHECK(table.size(1) == d, "rope: table has {} columns for rope dim {}", table.size(1), d);
  for (int64_t t = 0; t < T; ++t) {
    int32_t pos = positions.ptr<int32_t>()[t];
    DS_CHECK(pos >= 0 && pos < P, "rope: position {} outside the table's {} positions", pos, P);
    const float* cs = table.ptr<float>() + int64_t(pos) * d;
    for (int64_t h = 0; h < n; ++h) {
      float* v = x.ptr<float>() + t * x.stride(0) + h * x.stride(1);
      for (int64_t i = 0; i < d / 2; ++i) {
        float c = cs[2 * i], s = cs[2 * i + 1], a = v[2 * i], b = v[2 * i + 1];
        v[2 * i] = a * c - b * s;
        v[2 * i + 1] = a * s + b * c;
      }
    }
  }
}

Tensor CpuBackend::silu_mul(const Tensor& gate_up) {
  check_rows(gate_up, "silu_mul");
  int64_t T = gate_up.size(0), I = gate_up.size(1) / 2;
  Tensor out = alloc(DType::F32, {T, I});
  for (int64_t t = 0; t < T; ++t) {
    const float* g = gate_up.ptr<float>() + t * gate_up.stride(0);
    float* o = out.ptr<float>() + t * I;
    for (int64_t i = 0; i < I; ++i) o[i] = g[i] / (1.0f + std::exp(-g[i])) * g[I + i];
  }
  return out;
}

void CpuBackend::add_inplace(Tensor& x, const Tensor& y) {
  check_rows(x, "add");
  check_rows(y, "add");
  DS_CHECK(x.shape() == y.shape(), "add: shapes {} and {} differ", x.shape().str(), y.shape().str());
  for (int64_t t = 0; t < x.size(0); ++t) {
    float* a = x.ptr<float>() + t * x.stride(0);
    const float* b = y.ptr<float>() + t * y.stride(0);
    for (int64_t i = 0; i < x.size(1); ++i) a[i] += b[i];
  }
}

Tensor CpuBackend::gather_rows(const Tensor& x, const Tensor& rows) {
  check_rows(x, "gather_rows");
  int64_t R = rows.numel(), C = x.size(1);
  Tensor out = alloc(DType::F32, {R, C});
  for (int64_t r = 0; r < R; ++r) {
    int32_t i = rows.ptr<int32_t>()[r];
    DS_CHECK(i >= 0 && i < x.size(0), "gather_rows: row {} of {}", i, x.size(0));
    std::memcpy(out.ptr<float>() + r * C, x.ptr<float>() + i * x.stride(0), size_t(C) * 4);
  }
  return out;
}

Tensor CpuBackend::concat_cols(const Tensor& a, const Tensor& b) {
  check_rows(a, "concat_cols");
  check_rows(b, "concat_cols");
  DS_CHECK(a.size(0) == b.size(0), "concat_cols: {} vs {} rows", a.size(0), b.size(0));
  int64_t T = a.size(0), A = a.size(1), B = b.size(1);
  Tensor out = alloc(DType::F32, {T, A + B});
  for (int64_t t = 0; t < T; ++t) {
    std::memcpy(out.ptr<float>() + t * (A + B), a.ptr<float>() + t * a.stride(0), size_t(A) * 4);
    std::memcpy(out.ptr<float>() + t * (A + B) + A, b.ptr<float>() + t * b.stride(0), size_t(B) * 4);
  }
  return out;
}

Tensor CpuBackend::contiguous(const Tensor& x) {
  check_rows(x, "contiguous");
  int64_t T = x.size(0), C = x.size(1);
  Tensor out = alloc(DType::F32, {T, C});
  for (int64_t t = 0; t < T; ++t)
    std::memcpy(out.ptr<float>() + t * C, x.ptr<float>() + t * x.stride(0), size_t(C) * 4);
  return out;
}

}  // namespace dsserve
