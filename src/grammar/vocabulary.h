// The model's vocabulary as the grammar sees it: the bytes each token adds to the text, and a trie
// of all tokens in preorder (each node knows where its subtree ends, so a rejected prefix skips
// every token that starts with it). Tokens with no bytes (special tokens, ids the tokenizer does not
// know) are never allowed by a grammar; end-of-text tokens are the caller's business.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace dsserve::grammar {

class Vocabulary {
 public:
  struct TrieNode {
    uint8_t byte;         // the byte on the edge into this node
    int32_t depth;        // 1 for the root's children
    int32_t subtree_end;  // preorder index just past this node's subtree
    int32_t first_token;  // tokens ending here: tokens_at()[first_token, first_token + num_tokens)
    int32_t num_tokens;
  };

  // token_bytes[id]; "" marks a token no grammar allows.
  explicit Vocabulary(std::vector<std::string> token_bytes);

  int size() const { return int(bytes_.size()); }
  int words() const { return (size() + 31) / 32; }  // 32-bit words of a token bitmask
  const std::string& bytes(int32_t id) const { return bytes_[size_t(id)]; }
  const std::vector<TrieNode>& trie() const { return nodes_; }
  const std::vector<int32_t>& tokens_at() const { return tokens_at_; }
  // A fingerprint of the bytes of every token (compiled grammars are cached per vocabulary).
  uint64_t fingerprint() const { return fingerprint_; }

 private:
  std::vector<std::string> bytes_;
  std::vector<TrieNode> nodes_;
  std::vector<int32_t> tokens_at_;
  uint64_t fingerprint_ = 0;
};

}  // namespace dsserve::grammar
