// CUDA backend: the machine's ceilings, measured on this GPU (Backend::measure_ceilings): a 2 GiB
// device-to-device copy (bytes read + written per second), and cuBLASLt's BF16 and FP8 (block-scaled,
// activations already quantized; Hopper kernel set only, else 0) rates on 8192^3 products. Each is the median of 5 timed runs after 2
// warm-ups, timed with events on the backend's stream.
#include <algorithm>
#include <functional>
#include <vector>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"

namespace dsserve::cuda {

namespace {

double median_ms(cudaStream_t s, const std::function<void()>& fn) {
  cudaEvent_t a, b;
  cuda_check(cudaEventCreate(&a), "cudaEventCreate");
  cuda_check(cudaEventCreate(&b), "cudaEventCreate");
  std::vector<double> t;
  for (int i = 0; i < 7; ++i) {
    cuda_check(cudaEventRecord(a, s), "cudaEventRecord");
    fn();
    cuda_check(cudaEventRecord(b, s), "cudaEventRecord");
    cuda_check(cudaEventSynchronize(b), "ceilings (an operation failed)");
    float ms = 0;
    cuda_check(cudaEventElapsedTime(&ms, a, b), "cudaEventElapsedTime");
    if (i >= 2) t.push_back(ms);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace

DeviceCeilings CudaBackend::measure_ceilings() {
  DeviceCeilings c;
  {
    const int64_t n = int64_t(1) << 30;  // 2 GiB of BF16
    Tensor src = random_weight(DType::BF16, {n}, {}), dst = alloc(DType::BF16, {n});
    const double ms = median_ms(stream_, [&] {
      check(cudaMemcpyAsync(dst.data(), src.data(), src.nbytes(), cudaMemcpyDeviceToDevice, stream_), "copy");
    });
    c.copy_gbs = 2.0 * double(src.nbytes()) / ms / 1e6;
  }
  const int64_t n = 8192;
  const double flops = 2.0 * double(n) * n * n;
  for (bool fp8 : {false, true}) {
    if (fp8 && !hopper_kernels()) break;  // the sm80 kernel set has no FP8 products: fp8_tflops stays 0
    const DType dt = fp8 ? DType::F8_E4M3 : DType::BF16;
    Tensor w = random_weight(dt, {n, n}, {1, true, 1.0f, 0.0f}), x = random_weight(dt, {n, n}, {2, true, 1.0f, 0.0f});
    Tensor d = alloc(DType::BF16, {n, n});
    Tensor ws = random_weight(DType::F32, {n / 128, fp8_weight_scale_ld(n)}, {3, false, 0.0f, 0.01f});
    Tensor xs = random_weight(DType::F32, {n / 128, n}, {4, false, 0.0f, 0.01f});
    GemmArgs a;
    a.kind = fp8 ? GemmKind::Fp8BlockScaled : GemmKind::Bf16;
    a.m = a.n = a.k = n;
    a.w = w.data(), a.x = x.data(), a.d = d.data();
    a.ldw = a.ldx = a.ldd = n;
    a.d_type = CUDA_R_16BF;
    if (fp8) a.w_scale = ws.ptr<float>(), a.x_scale = xs.ptr<float>();
    const double ms = median_ms(stream_, [&] { gemm_->run(a); });
    (fp8 ? c.fp8_tflops : c.bf16_tflops) = flops / ms / 1e9;
  }
  return c;
}

}  // namespace dsserve::cuda
