// Radix prefix cache (see radix_cache.h). Each node holds a run of whole pages: its tokens
// (a multiple of page_size) and their physical pages. Children are keyed by their first page's tokens.
#include "runtime/radix_cache.h"

#include <algorithm>

namespace dsserve {

struct RadixCache::Node {
  std::vector<int32_t> tokens;  // page_size * pages.size()
  std::vector<int32_t> pages;
  std::map<std::vector<int32_t>, std::unique_ptr<Node>> children;  // key: first page's tokens
  Node* parent = nullptr;
  uint64_t last_access = 0;
};

RadixCache::RadixCache(PagePool& pool) : pool_(pool), root_(std::make_unique<Node>()) {}
RadixCache::~RadixCache() { clear(); }

RadixCache::Node* RadixCache::child_for(Node* n, std::span<const int32_t> page_tokens) const {
  auto it = n->children.find(std::vector<int32_t>(page_tokens.begin(), page_tokens.end()));
  return it == n->children.end() ? nullptr : it->second.get();
}

int64_t RadixCache::match(std::span<const int32_t> tokens, int64_t max_tokens, std::vector<int32_t>& pages) {
  const int ps = pool_.page_size();
  const int64_t limit = std::min<int64_t>(max_tokens, int64_t(tokens.size())) / ps * ps;
  ++clock_;
  Node* n = root_.get();
  int64_t matched = 0;
  while (matched < limit) {
    Node* c = child_for(n, tokens.subspan(size_t(matched), size_t(ps)));
    if (!c) break;
    // Compare page by page along the child's run.
    size_t same = 0;
    while (same < c->pages.size() && matched + int64_t(same + 1) * ps <= limit &&
           std::equal(c->tokens.begin() + same * ps, c->tokens.begin() + (same + 1) * ps,
                      tokens.begin() + matched + int64_t(same) * ps))
      ++same;
    for (size_t i = 0; i < same; ++i) {
      pool_.retain(c->pages[i]);
      pages.push_back(c->pages[i]);
    }
    c->last_access = clock_;
    matched += int64_t(same) * ps;
    if (same < c->pages.size()) break;
    n = c;
  }
  for (Node* p = n; p; p = p->parent) p->last_access = clock_;
  return matched;
}

void RadixCache::insert(std::span<const int32_t> tokens, std::span<const int32_t> pages) {
  const int ps = pool_.page_size();
  const int64_t n_pages = std::min<int64_t>(int64_t(tokens.size()) / ps, int64_t(pages.size()));
  ++clock_;
  Node* n = root_.get();
  int64_t p = 0;  // pages consumed
  while (p < n_pages) {
    std::span<const int32_t> first = tokens.subspan(size_t(p * ps), size_t(ps));
    Node* c = child_for(n, first);
    if (!c) {  // a new leaf with the rest
      auto leaf = std::make_unique<Node>();
      leaf->tokens.assign(tokens.begin() + p * ps, tokens.begin() + n_pages * ps);
      leaf->pages.assign(pages.begin() + p, pages.begin() + n_pages);
      for (int32_t pg : leaf->pages) pool_.retain(pg);
      cached_pages_ += int64_t(leaf->pages.size());
      leaf->parent = n;
      leaf->last_access = clock_;
      n->children[std::vector<int32_t>(first.begin(), first.end())] = std::move(leaf);
      return;
    }
    size_t same = 0;
    while (same < c->pages.size() && p + int64_t(same) < n_pages &&
           std::equal(c->tokens.begin() + same * ps, c->tokens.begin() + (same + 1) * ps,
                      tokens.begin() + (p + int64_t(same)) * ps))
      ++same;
    if (same < c->pages.size()) {  // split c after `same` pages
      auto tail = std::make_unique<Node>();
      tail->tokens.assign(c->tokens.begin() + same * ps, c->tokens.end());
      tail->pages.assign(c->pages.begin() + same, c->pages.end());
      tail->children = std::move(c->children);
      for (auto& [k, g] : tail->children) g->parent = tail.get();
      tail->parent = c;
      tail->last_access = c->last_access;
      c->tokens.resize(same * ps);
      c->pages.resize(same);
      c->children.clear();
      std::vector<int32_t> key(tail->tokens.begin(), tail->tokens.begin() + ps);
      c->children[key] = std::move(tail);
    }
    c->last_access = clock_;
    p += int64_t(same);
    n = c;
  }
}

void RadixCache::collect_leaves(Node* n, std::vector<Node*>& out) const {
  if (n != root_.get() && n->children.empty()) out.push_back(n);
  for (auto& [k, c] : n->children) collect_leaves(c.get(), out);
}

void RadixCache::drop(Node* n) {
  for (int32_t pg : n->pages) pool_.release(pg);
  cached_pages_ -= int64_t(n->pages.size());
  Node* parent = n->parent;
  std::vector<int32_t> key(n->tokens.begin(), n->tokens.begin() + pool_.page_size());
  parent->children.erase(key);
}

int64_t RadixCache::evict(int64_t pages_wanted) {
  int64_t freed = 0;
  while (freed < pages_wanted) {
    std::vector<Node*> leaves;
    collect_leaves(root_.get(), leaves);
    // Only leaves whose every page the tree alone holds free memory when dropped.
    std::erase_if(leaves, [&](Node* l) {
      return !std::all_of(l->pages.begin(), l->pages.end(), [&](int32_t pg) { return pool_.refcount(pg) == 1; });
    });
    if (leaves.empty()) break;
    Node* oldest = *std::min_element(leaves.begin(), leaves.end(),
                                     [](Node* a, Node* b) { return a->last_access < b->last_access; });
    freed += int64_t(oldest->pages.size());
    drop(oldest);
  }
  return freed;
}

int64_t RadixCache::evictable_pages() const {
  int64_t n = 0;
  std::vector<Node*> stack{root_.get()};
  while (!stack.empty()) {
    Node* x = stack.back();
    stack.pop_back();
    for (int32_t pg : x->pages) n += pool_.refcount(pg) == 1;
    for (auto& [k, c] : x->children) stack.push_back(c.get());
  }
  return n;
}

void RadixCache::clear() {
  std::vector<Node*> leaves;
  while (true) {
    leaves.clear();
    collect_leaves(root_.get(), leaves);
    if (leaves.empty()) break;
    for (Node* l : leaves) drop(l);
  }
}

}  // namespace dsserve
