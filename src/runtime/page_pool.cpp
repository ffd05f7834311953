// Page pool and sequence page tables (see page_pool.h).
#include "runtime/page_pool.h"

#include "core/error.h"

namespace dsserve {

PagePool::PagePool(int64_t num_pages, int page_size) : page_size_(page_size), refs_(size_t(num_pages), 0) {
  DS_CHECK(num_pages > 0 && page_size > 0, "page pool: {} pages of {} tokens", num_pages, page_size);
  free_.reserve(size_t(num_pages));
  for (int64_t p = num_pages - 1; p >= 0; --p) free_.push_back(int32_t(p));
}

bool PagePool::allocate(int64_t n, std::vector<int32_t>& out) {
  if (n > num_free()) return false;
  for (int64_t i = 0; i < n; ++i) {
    int32_t p = free_.back();
    free_.pop_back();
    refs_[p] = 1;
    out.push_back(p);
  }
  return true;
}

void PagePool::retain(int32_t page) {
  DS_CHECK(page >= 0 && page < num_pages() && refs_[page] > 0, "retain of page {} which is not allocated", page);
  ++refs_[page];
}

void PagePool::release(int32_t page) {
  DS_CHECK(page >= 0 && page < num_pages() && refs_[page] > 0, "release of page {} which is not allocated", page);
  if (--refs_[page] == 0) free_.push_back(page);
}

void PagePool::release(std::span<const int32_t> pages) {
  for (int32_t p : pages) release(p);
}

bool SequencePages::reserve(PagePool& pool, int64_t new_length) {
  int64_t need = (new_length + pool.page_size() - 1) / pool.page_size() - int64_t(pages.size());
  if (need > 0 && !pool.allocate(need, pages)) return false;
  length = std::max(length, new_length);
  return true;
}

void SequencePages::release_all(PagePool& pool) {
  pool.release(pages);
  pages.clear();
  length = 0;
}

}  // namespace dsserve
