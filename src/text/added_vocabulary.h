// Added tokens (tokenizer.json "added_tokens"): found in the text before pre-tokenization, leftmost
// match first and the longest at that position, in two passes as Hugging Face does (tokens with
// normalized=false on the raw text, then tokens with normalized=true on what is left). Special
// tokens are matched only when the caller allows it. lstrip/rstrip absorb neighbouring whitespace.
#pragma once
#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace dsserve::text {

struct AddedToken {
  int32_t id;
  std::string content;
  bool special;
  bool normalized;
  bool lstrip;
  bool rstrip;
};

// A stretch of the input: either an added token or text for the pre-tokenizer and BPE.
struct Segment {
  size_t begin, end;   // byte range in the input
  int32_t added_id;    // -1 for plain text
};

class AddedVocabulary {
 public:
  static AddedVocabulary from_json(const nlohmann::json& added_tokens, const std::string& where);

  // Cuts text into segments, in order; plain-text segments are never empty.
  void split(std::string_view text, bool allow_special, std::vector<Segment>& out) const;

  const std::vector<AddedToken>& tokens() const { return tokens_; }

 private:
  struct TrieNode {
    int32_t child[256];
    int32_t token_index = -1;  // index into tokens_ of the token ending here
    TrieNode() { std::fill(std::begin(child), std::end(child), -1); }
  };
  struct Trie {
    std::vector<TrieNode> nodes{1};
    bool first_byte[256] = {};
    void insert(std::string_view s, int32_t token_index);
  };
  // Longest token of `trie` starting at text[pos] (allowed by allow_special); -1 when none.
  int32_t longest_at(const Trie& trie, std::string_view text, size_t pos, bool allow_special, size_t& len) const;
  void split_pass(const Trie& trie, std::string_view text, size_t begin, size_t end, bool allow_special,
                  std::vector<Segment>& out) const;

  std::vector<AddedToken> tokens_;
  Trie raw_trie_;         // normalized == false
  Trie normalized_trie_;  // normalized == true
};

}  // namespace dsserve::text
