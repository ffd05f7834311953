// Per-forward scratch arena (see scratch_arena.h).
#include "backend/cuda/memory/scratch_arena.h"

#include <cuda_runtime.h>

#include <algorithm>

#include "backend/cuda/cuda_check.h"
#include "core/error.h"

namespace dsserve::cuda {

namespace {
constexpr size_t kAlign = 256;
constexpr size_t kMinChunk = size_t(64) << 20;
}  // namespace

ScratchArena::~ScratchArena() {
  for (auto& a : arenas_)
    for (auto& c : a->chunks) cudaFree(c.ptr);
}

void ScratchArena::rewind(Arena& a) {
  if (a.chunks.size() > 1) {  // coalesce: one chunk as large as all of them
    size_t total = 0;
    for (auto& c : a.chunks) {
      total += c.bytes;
      cuda_check(cudaFree(c.ptr), "cudaFree of a scratch chunk");
    }
    a.chunks.clear();
    Chunk c;
    c.bytes = total;
    cuda_check(cudaMalloc(&c.ptr, total), "cudaMalloc of the per-forward scratch");
    a.chunks.push_back(c);
  }
  a.chunk = 0;
  a.offset = 0;
}

void ScratchArena::begin_forward() {
  for (auto& a : arenas_) {
    if (a->token.use_count() == 1) {
      current_ = a.get();
      rewind(*current_);
      return;
    }
  }
  arenas_.push_back(std::make_unique<Arena>());
  current_ = arenas_.back().get();
}

void* ScratchArena::allocate(size_t bytes, std::shared_ptr<void>& keep) {
  if (!current_) begin_forward();
  Arena& a = *current_;
  bytes = std::max<size_t>((bytes + kAlign - 1) / kAlign * kAlign, kAlign);
  while (a.chunk < a.chunks.size() && a.offset + bytes > a.chunks[a.chunk].bytes) {
    ++a.chunk;
    a.offset = 0;
  }
  if (a.chunk == a.chunks.size()) {
    size_t have = 0;
    for (auto& c : a.chunks) have += c.bytes;
    Chunk c;
    c.bytes = std::max({bytes, kMinChunk, have});
    cudaError_t e = cudaMalloc(&c.ptr, c.bytes);
    if (e != cudaSuccess) {
      cudaGetLastError();
      fail("out of GPU memory: the per-forward scratch needs another {} MiB ({} MiB held): {}", c.bytes >> 20,
           have >> 20, cudaGetErrorString(e));
    }
    a.chunks.push_back(c);
    a.offset = 0;
  }
  void* p = static_cast<char*>(a.chunks[a.chunk].ptr) + a.offset;
  a.offset += bytes;
  keep = std::shared_ptr<void>(a.token, p);
  return p;
}

size_t ScratchArena::capacity_bytes() const {
  size_t total = 0;
  for (auto& a : arenas_)
    for (auto& c : a->chunks) total += c.bytes;
  return total;
}

}  // namespace dsserve::cuda
