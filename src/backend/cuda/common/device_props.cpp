// Cached device properties (see device_props.h).
#include "backend/cuda/common/device_props.h"

#include <cuda_runtime.h>

#include <atomic>

namespace dsserve::cuda {

namespace {
constexpr int kMaxDevices = 64;

template <class Query>
int cached(std::atomic<int> (&cache)[kMaxDevices], int fallback, Query query) {
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= kMaxDevices) {
    cudaGetLastError();
    return fallback;
  }
  int v = cache[dev].load(std::memory_order_relaxed);
  if (v == 0) {
    v = query(dev);
    if (v <= 0) {
      cudaGetLastError();
      return fallback;
    }
    cache[dev].store(v, std::memory_order_relaxed);
  }
  return v;
}
}  // namespace

int current_sm_count() {
  static std::atomic<int> cache[kMaxDevices];
  return cached(cache, 132, [](int dev) {
    int n = 0;
    return cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) == cudaSuccess ? n : 0;
  });
}

int current_compute_capability() {
  static std::atomic<int> cache[kMaxDevices];
  return cached(cache, 0, [](int dev) {
    int major = 0, minor = 0;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess)
      return 0;
    return 10 * major + minor;
  });
}

}  // namespace dsserve::cuda
