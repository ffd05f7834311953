// CUDA backend: recording a forward as a CUDA graph and replaying it (Backend::capture). The body
// runs once eagerly, drawing from the pool kept for captured forwards so that pool holds every
// chunk the body needs; the second run is recorded on the backend's stream in thread-local capture
// mode (each tensor-parallel rank records on its own thread) and instantiated.
#include <cuda_runtime.h>

#include "backend/cuda/cuda_backend.h"
#include "core/error.h"

namespace dsserve::cuda {

namespace {

class CudaGraphForward final : public CapturedForward {
 public:
  CudaGraphForward(cudaGraphExec_t exec, cudaStream_t stream, int device) : exec_(exec), stream_(stream), device_(device) {}
  ~CudaGraphForward() override {
    if (exec_) cudaGraphExecDestroy(exec_);
  }
  void replay() override {
    cudaError_t e = cudaGraphLaunch(exec_, stream_);
    if (e != cudaSuccess) {
      cudaGetLastError();
      fail("CUDA graph replay on device {}: {}", device_, cudaGetErrorString(e));
    }
  }

 private:
  cudaGraphExec_t exec_ = nullptr;
  cudaStream_t stream_ = nullptr;
  int device_ = 0;
};

// Points the backend's allocations at another pool for the lifetime of this object.
struct PoolSwitch {
  ScratchPool*& active;
  ScratchPool* saved;
  PoolSwitch(ScratchPool*& a, ScratchPool* to) : active(a), saved(a) { active = to; }
  ~PoolSwitch() { active = saved; }
};

}  // namespace

std::unique_ptr<CapturedForward> CudaBackend::capture(const std::function<void()>& body) {
  PoolSwitch use_graph_pool(active_pool_, &graph_pool_);
  body();  // warm-up: kernels' attributes set, cuBLASLt algorithms chosen, graph pool grown
  synchronize();
  check(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
  cudaGraph_t graph = nullptr;
  try {
    body();
  } catch (...) {
    cudaStreamEndCapture(stream_, &graph);
    if (graph) cudaGraphDestroy(graph);
    cudaGetLastError();
    throw;
  }
  cudaError_t e = cudaStreamEndCapture(stream_, &graph);
  if (e != cudaSuccess) {
    cudaGetLastError();
    fail("CUDA graph capture failed on device {}: {} (an op synchronised with the host or used another stream "
         "while being recorded)",
         device_, cudaGetErrorString(e));
  }
  cudaGraphExec_t exec = nullptr;
  e = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  if (e != cudaSuccess) {
    cudaGetLastError();
    fail("CUDA graph instantiation on device {}: {}", device_, cudaGetErrorString(e));
  }
  return std::make_unique<CudaGraphForward>(exec, stream_, device_);
}

}  // namespace dsserve::cuda
