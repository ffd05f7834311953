// The vocabulary's preorder trie (see vocabulary.h): tokens sorted by their bytes, one node per
// distinct prefix, built with a stack of the current path.
#include "grammar/vocabulary.h"

#include <algorithm>
#include <numeric>

namespace dsserve::grammar {

Vocabulary::Vocabulary(std::vector<std::string> token_bytes) : bytes_(std::move(token_bytes)) {
  uint64_t h = 1469598103934665603ull;
  for (const std::string& b : bytes_) {
    for (unsigned char c : b) h = (h ^ c) * 1099511628211ull;
    h = (h ^ 0x1ff) * 1099511628211ull;
  }
  fingerprint_ = h;

  std::vector<int32_t> order;
  for (size_t i = 0; i < bytes_.size(); ++i)
    if (!bytes_[i].empty()) order.push_back(int32_t(i));
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return bytes_[size_t(a)] < bytes_[size_t(b)] || (bytes_[size_t(a)] == bytes_[size_t(b)] && a < b);
  });
  std::vector<int32_t> path;  // node indices of the current prefix
  const std::string* prev = nullptr;
  for (int32_t id : order) {
    const std::string& s = bytes_[size_t(id)];
    size_t lcp = 0;
    if (prev)
      while (lcp < s.size() && lcp < prev->size() && s[lcp] == (*prev)[lcp]) ++lcp;
    while (path.size() > lcp) {
      nodes_[size_t(path.back())].subtree_end = int32_t(nodes_.size());
      path.pop_back();
    }
    for (size_t k = lcp; k < s.size(); ++k) {
      nodes_.push_back({uint8_t(s[k]), int32_t(k + 1), -1, int32_t(tokens_at_.size()), 0});
      path.push_back(int32_t(nodes_.size() - 1));
    }
    TrieNode& end = nodes_[size_t(path.back())];
    if (end.num_tokens == 0) end.first_token = int32_t(tokens_at_.size());
    tokens_at_.push_back(id);
    ++end.num_tokens;
    prev = &s;
  }
  while (!path.empty()) {
    nodes_[size_t(path.back())].subtree_end = int32_t(nodes_.size());
    path.pop_back();
  }
}

}  // namespace dsserve::grammar
