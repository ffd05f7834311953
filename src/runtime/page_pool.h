// The pool of latent-cache pages: allocation, reference counts (a page shared by several sequences
// or held by the prefix cache stays allocated until its last holder releases it), and each
// sequence's page table.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

namespace dsserve {

class PagePool {
 public:
  PagePool(int64_t num_pages, int page_size);

  int page_size() const { return page_size_; }
  int64_t num_pages() const { return int64_t(refs_.size()); }
  int64_t num_free() const { return int64_t(free_.size()); }

  // n fresh pages with one reference each, or false (nothing allocated) when fewer are free.
  bool allocate(int64_t n, std::vector<int32_t>& out);
  void retain(int32_t page);
  void release(int32_t page);
  void release(std::span<const int32_t> pages);
  int refcount(int32_t page) const { return refs_[page]; }

 private:
  int page_size_;
  std::vector<int32_t> refs_;
  std::vector<int32_t> free_;  // stack of free pages, lowest index on top
};

// The cache pages of one sequence: logical page i of the sequence lives in physical page pages[i].
struct SequencePages {
  std::vector<int32_t> pages;
  int64_t length = 0;  // tokens whose latents are (or are being) written

  // Grows the page list to hold new_length tokens; false (nothing changed) when the pool is short.
  bool reserve(PagePool& pool, int64_t new_length);
  int32_t slot(int64_t token, int page_size) const {
    return pages[token / page_size] * page_size + int32_t(token % page_size);
  }
  void release_all(PagePool& pool);
};

}  // namespace dsserve
