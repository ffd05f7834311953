// Radix prefix cache over KV pages: token sequences whose latents are already in the cache, keyed
// page by page (only whole pages are cached), so requests sharing a prompt prefix reuse its pages.
// The tree holds one pool reference per page; unreferenced leaves are evicted least recently used.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <vector>

#include "runtime/page_pool.h"

namespace dsserve {

class RadixCache {
 public:
  explicit RadixCache(PagePool& pool);
  ~RadixCache();

  // Longest cached prefix of tokens[0, max_tokens), in whole pages. Appends its pages to `pages`
  // with one new reference each (the caller releases them) and returns its length in tokens.
  int64_t match(std::span<const int32_t> tokens, int64_t max_tokens, std::vector<int32_t>& pages);
  // Caches the first floor(n / page_size) pages of a sequence (tokens[i] lives in pages[i / ps]).
  // Pages already cached under the same tokens are kept as they are; new ones gain a reference.
  void insert(std::span<const int32_t> tokens, std::span<const int32_t> pages);
  // Frees up to `pages_wanted` pages held only by the tree, oldest first. Returns how many.
  int64_t evict(int64_t pages_wanted);
  void clear();  // drops every entry (flush_cache)

  int64_t cached_pages() const { return cached_pages_; }
  int64_t evictable_pages() const;  // pages only the tree holds

 private:
  struct Node;
  Node* child_for(Node* n, std::span<const int32_t> page_tokens) const;
  void collect_leaves(Node* n, std::vector<Node*>& out) const;
  void drop(Node* n);

  PagePool& pool_;
  std::unique_ptr<Node> root_;
  uint64_t clock_ = 0;
  int64_t cached_pages_ = 0;
};

}  // namespace dsserve
