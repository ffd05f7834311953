// CUDA backend: recording a forward as a CUDA graph and replaying it (Backend::capture). The body
// runs once eagerly, drawing from the pool kept for captured forwards so that pool holds every
// chunk the body needs; the second run is recorded on the backend's stream in thread-local capture
// mode (each tensor-parallel rank records on its own thread) and instantiated. Also the layer marks
// of Backend::layer_mark: events recorded on the stream (as external event nodes inside a capture),
// and the kernel nodes a captured forward holds between them.
#include <cuda_runtime.h>

#include <map>

#include "backend/cuda/cuda_backend.h"
#include "core/error.h"

namespace dsserve::cuda {

namespace {

class CudaGraphForward final : public CapturedForward {
 public:
  CudaGraphForward(cudaGraphExec_t exec, cudaStream_t stream, int device, std::vector<int> kernels,
                   std::shared_ptr<std::vector<int>> replayed_kernels)
      : exec_(exec), stream_(stream), device_(device), kernels_(std::move(kernels)),
        replayed_kernels_(std::move(replayed_kernels)) {}
  ~CudaGraphForward() override {
    if (exec_) cudaGraphExecDestroy(exec_);
  }
  void replay() override {
    cudaError_t e = cudaGraphLaunch(exec_, stream_);
    if (e != cudaSuccess) {
      cudaGetLastError();
      fail("CUDA graph replay on device {}: {}", device_, cudaGetErrorString(e));
    }
    *replayed_kernels_ = kernels_;
  }

 private:
  cudaGraphExec_t exec_ = nullptr;
  cudaStream_t stream_ = nullptr;
  int device_ = 0;
  std::vector<int> kernels_;  // between consecutive layer marks (empty: recorded without marks)
  std::shared_ptr<std::vector<int>> replayed_kernels_;
};

// Kernel nodes between consecutive external event-record nodes (the layer marks) of a captured
// graph, walking its nodes in dependency order. Empty when it has fewer than two marks.
std::vector<int> kernels_between_marks(cudaGraph_t graph) {
  size_t n = 0, m = 0;
  if (cudaGraphGetNodes(graph, nullptr, &n) != cudaSuccess ||
      cudaGraphGetEdges(graph, nullptr, nullptr, nullptr, &m) != cudaSuccess) {
    cudaGetLastError();
    return {};
  }
  std::vector<cudaGraphNode_t> nodes(n), from(m), to(m);
  if (cudaGraphGetNodes(graph, nodes.data(), &n) != cudaSuccess ||
      (m > 0 && cudaGraphGetEdges(graph, from.data(), to.data(), nullptr, &m) != cudaSuccess)) {
    cudaGetLastError();
    return {};
  }
  std::map<cudaGraphNode_t, int> index, indegree;
  for (size_t i = 0; i < n; ++i) index[nodes[i]] = int(i), indegree[nodes[i]] = 0;
  std::vector<std::vector<int>> out(n);
  for (size_t e = 0; e < m; ++e) {
    out[size_t(index[from[e]])].push_back(index[to[e]]);
    ++indegree[to[e]];
  }
  std::vector<int> ready, order;
  for (size_t i = 0; i < n; ++i)
    if (indegree[nodes[i]] == 0) ready.push_back(int(i));
  while (!ready.empty()) {  // Kahn's order; a stream capture is a chain, so the order is its issue order
    const int i = ready.front();
    ready.erase(ready.begin());
    order.push_back(i);
    for (int j : out[size_t(i)])
      if (--indegree[nodes[size_t(j)]] == 0) ready.push_back(j);
  }
  std::vector<int> counts;
  int kernels = 0, marks = 0;
  for (int i : order) {
    cudaGraphNodeType type{};
    if (cudaGraphNodeGetType(nodes[size_t(i)], &type) != cudaSuccess) {
      cudaGetLastError();
      return {};
    }
    if (type == cudaGraphNodeTypeEventRecord) {
      if (marks++ > 0) counts.push_back(kernels);
      kernels = 0;
    } else if (type == cudaGraphNodeTypeKernel) {
      ++kernels;
    }
  }
  return counts;
}

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
  std::vector<int> kernels = layer_profiling_ ? kernels_between_marks(graph) : std::vector<int>{};
  cudaGraphExec_t exec = nullptr;
  e = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  if (e != cudaSuccess) {
    cudaGetLastError();
    fail("CUDA graph instantiation on device {}: {}", device_, cudaGetErrorString(e));
  }
  return std::make_unique<CudaGraphForward>(exec, stream_, device_, std::move(kernels), replayed_kernels_);
}

void CudaBackend::layer_mark(int index) {
  if (!layer_profiling_ || index < 0) return;
  while (int(layer_events_.size()) <= index) {
    cudaEvent_t ev = nullptr;
    check(cudaEventCreate(&ev), "cudaEventCreate (layer mark)");
    layer_events_.push_back(ev);
  }
  if (index == 0) {
    marks_ = 0;
    replayed_kernels_->clear();  // an eager forward: no kernel counts
  }
  marks_ = std::max(marks_, index + 1);
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  check(cudaStreamIsCapturing(stream_, &status), "cudaStreamIsCapturing");
  check(status == cudaStreamCaptureStatusActive
            ? cudaEventRecordWithFlags(layer_events_[size_t(index)], stream_, cudaEventRecordExternal)
            : cudaEventRecord(layer_events_[size_t(index)], stream_),
        "layer mark");
}

Backend::LayerProfile CudaBackend::layer_profile() {
  LayerProfile p;
  if (marks_ < 2) return p;
  synchronize();
  for (int i = 0; i + 1 < marks_; ++i) {
    float ms = 0;
    check(cudaEventElapsedTime(&ms, layer_events_[size_t(i)], layer_events_[size_t(i + 1)]), "layer mark times");
    p.seconds.push_back(ms * 1e-3);
  }
  if (int(replayed_kernels_->size()) == marks_ - 1) p.kernels = *replayed_kernels_;
  return p;
}

}  // namespace dsserve::cuda
