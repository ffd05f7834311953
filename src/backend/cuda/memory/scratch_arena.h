// Per-forward scratch memory of the CUDA backend: bump allocation from large cudaMalloc'd chunks,
// recycled by begin_forward(). Every tensor handed out keeps its arena's token alive, so an arena
// is only recycled when no tensor from it survives; begin_forward() takes the first such arena
// (normally the same one each forward, so a captured forward sees identical addresses) and
// coalesces its chunks into one. A tensor kept across forwards (MTP's previous hidden state, say)
// simply keeps its arena out of rotation.
#pragma once
#include <cstddef>
#include <memory>
#include <vector>

namespace dsserve::cuda {

class ScratchArena {
 public:
  ScratchArena() = default;
  ~ScratchArena();
  ScratchArena(const ScratchArena&) = delete;
  ScratchArena& operator=(const ScratchArena&) = delete;

  // Starts a forward: picks a free arena (or makes one) and rewinds it.
  void begin_forward();
  // `bytes` of device memory, 256-byte aligned, valid until the arena is recycled. `keep` receives
  // a handle that keeps the arena out of rotation while it lives.
  void* allocate(size_t bytes, std::shared_ptr<void>& keep);
  size_t capacity_bytes() const;

 private:
  struct Chunk {
    void* ptr = nullptr;
    size_t bytes = 0;
  };
  struct Arena {
    std::shared_ptr<int> token = std::make_shared<int>(0);
    std::vector<Chunk> chunks;
    size_t chunk = 0, offset = 0;  // bump position: chunk index and offset in it
  };
  void rewind(Arena& a);
  std::vector<std::unique_ptr<Arena>> arenas_;
  Arena* current_ = nullptr;
};

}  // namespace dsserve::cuda
