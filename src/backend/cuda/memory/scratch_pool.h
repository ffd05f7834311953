// Device memory for the tensors ops create (activations, temporaries): a caching allocator over
// large cudaMalloc'd chunks. A block goes back to the pool the moment its last tensor dies and is
// handed out again to a later op. Every op runs on the backend's one stream, so a block reused by
// a later op is only written after the earlier ops that read it: freeing needs no synchronisation.
// Each decoder layer therefore reuses the memory of the one before it, and a forward of the same
// shape gets the same addresses, which is what a captured CUDA graph needs (captures draw from a
// pool of their own: see CudaBackend::capture).
#pragma once
#include <cstddef>
#include <memory>
#include <string>

namespace dsserve::cuda {

class ScratchPool {
 public:
  explicit ScratchPool(std::string name);
  ~ScratchPool();
  ScratchPool(const ScratchPool&) = delete;
  ScratchPool& operator=(const ScratchPool&) = delete;

  // `bytes` of device memory, 256-byte aligned. `keep` receives the handle whose last copy returns
  // the block to the pool.
  void* allocate(size_t bytes, std::shared_ptr<void>& keep);
  size_t capacity_bytes() const;  // held from the driver
  size_t in_use_bytes() const;    // handed out and not yet returned
  size_t peak_bytes() const;      // the most ever in use at once

 private:
  struct State;
  std::shared_ptr<State> state_;  // shared with every handle, so late frees find it
};

}  // namespace dsserve::cuda
