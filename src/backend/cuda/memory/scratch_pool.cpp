// Caching allocator for op outputs (see scratch_pool.h): best fit over free blocks, blocks split
// on allocation and merged with free neighbours of the same chunk on release.
#include "backend/cuda/memory/scratch_pool.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <set>
#include <utility>
#include <vector>

#include "core/error.h"

namespace dsserve::cuda {

namespace {
constexpr size_t kAlign = 256;
constexpr size_t kMinChunk = size_t(64) << 20;
constexpr size_t kChunkRound = size_t(2) << 20;
}  // namespace

struct ScratchPool::State {
  struct Block {
    size_t bytes = 0;
    int chunk = 0;
    bool free = true;
  };
  std::string name;
  mutable std::mutex mu;
  std::vector<std::pair<char*, size_t>> chunks;
  std::map<char*, Block> blocks;                 // every block of every chunk, by address
  std::set<std::pair<size_t, char*>> free_list;  // free blocks by (size, address): best fit first
  size_t capacity = 0, in_use = 0, peak = 0;

  void add_free(char* p, const Block& b) {
    blocks[p] = b;
    free_list.insert({b.bytes, p});
  }

  void release(char* p) {
    std::lock_guard<std::mutex> lock(mu);
    auto it = blocks.find(p);
    if (it == blocks.end() || it->second.free) return;
    it->second.free = true;
    in_use -= it->second.bytes;
    // Merge with the next block, then with the previous one, when free and in the same chunk.
    auto next = std::next(it);
    if (next != blocks.end() && next->second.free && next->second.chunk == it->second.chunk &&
        p + it->second.bytes == next->first) {
      free_list.erase({next->second.bytes, next->first});
      it->second.bytes += next->second.bytes;
      blocks.erase(next);
    }
    if (it != blocks.begin()) {
      auto prev = std::prev(it);
      if (prev->second.free && prev->second.chunk == it->second.chunk && prev->first + prev->second.bytes == p) {
        free_list.erase({prev->second.bytes, prev->first});
        prev->second.bytes += it->second.bytes;
        blocks.erase(it);
        it = prev;
      }
    }
    free_list.insert({it->second.bytes, it->first});
  }
};

ScratchPool::ScratchPool(std::string name) : state_(std::make_shared<State>()) { state_->name = std::move(name); }

ScratchPool::~ScratchPool() {
  std::lock_guard<std::mutex> lock(state_->mu);
  for (auto& [p, bytes] : state_->chunks) cudaFree(p);
  state_->chunks.clear();
  state_->blocks.clear();  // handles still alive find nothing to release
  state_->free_list.clear();
}

void* ScratchPool::allocate(size_t bytes, std::shared_ptr<void>& keep) {
  State& s = *state_;
  bytes = std::max<size_t>((bytes + kAlign - 1) / kAlign * kAlign, kAlign);
  std::lock_guard<std::mutex> lock(s.mu);
  auto fit = s.free_list.lower_bound({bytes, nullptr});
  if (fit == s.free_list.end()) {
    size_t chunk_bytes = std::max({(bytes + kChunkRound - 1) / kChunkRound * kChunkRound, kMinChunk});
    void* p = nullptr;
    // A capture in progress on this thread must not record the allocation: relaxed mode lets the
    // driver allocate now, outside the graph.
    cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
    cudaThreadExchangeStreamCaptureMode(&mode);
    cudaError_t e = cudaMalloc(&p, chunk_bytes);
    cudaThreadExchangeStreamCaptureMode(&mode);
    if (e != cudaSuccess) {
      cudaGetLastError();
      fail("out of GPU memory: the {} needs another {} MiB ({} MiB held, {} MiB in use): {}", s.name,
           chunk_bytes >> 20, s.capacity >> 20, s.in_use >> 20, cudaGetErrorString(e));
    }
    s.chunks.push_back({static_cast<char*>(p), chunk_bytes});
    s.capacity += chunk_bytes;
    s.add_free(static_cast<char*>(p), {chunk_bytes, int(s.chunks.size()) - 1, true});
    fit = s.free_list.lower_bound({bytes, nullptr});
  }
  char* p = fit->second;
  s.free_list.erase(fit);
  State::Block& b = s.blocks[p];
  if (b.bytes > bytes) {  // split: the rest stays free
    s.add_free(p + bytes, {b.bytes - bytes, b.chunk, true});
    b.bytes = bytes;
  }
  b.free = false;
  s.in_use += bytes;
  s.peak = std::max(s.peak, s.in_use);
  std::weak_ptr<State> owner = state_;
  keep = std::shared_ptr<void>(p, [owner](void* q) {
    if (auto st = owner.lock()) st->release(static_cast<char*>(q));
  });
  return p;
}

size_t ScratchPool::capacity_bytes() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->capacity;
}
size_t ScratchPool::in_use_bytes() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->in_use;
}
size_t ScratchPool::peak_bytes() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->peak;
}

}  // namespace dsserve::cuda
