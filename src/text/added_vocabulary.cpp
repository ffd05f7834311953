// Leftmost-longest matching of added tokens with a byte trie (see added_vocabulary.h).
#include "text/added_vocabulary.h"

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "text/utf8.h"

namespace dsserve::text {
namespace {

bool is_space_byte(std::string_view s, size_t i, size_t& len) {
  // Unicode White_Space characters that lstrip/rstrip absorb (Rust's char::is_whitespace).
  static const uint32_t kSpaces[] = {0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0x85, 0xA0, 0x1680, 0x2000, 0x2001,
                                     0x2002, 0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200A,
                                     0x2028, 0x2029, 0x202F, 0x205F, 0x3000};
  size_t j = i;
  const uint32_t cp = utf8_decode(s, j);
  len = j - i;
  for (uint32_t c : kSpaces)
    if (c == cp) return true;
  return false;
}

}  // namespace

void AddedVocabulary::Trie::insert(std::string_view s, int32_t token_index) {
  int32_t node = 0;
  first_byte[static_cast<unsigned char>(s[0])] = true;
  for (unsigned char b : s) {
    if (nodes[node].child[b] < 0) {
      nodes[node].child[b] = static_cast<int32_t>(nodes.size());
      nodes.emplace_back();
    }
    node = nodes[node].child[b];
  }
  nodes[node].token_index = token_index;
}

AddedVocabulary AddedVocabulary::from_json(const nlohmann::json& added_tokens, const std::string& where) {
  AddedVocabulary av;
  if (added_tokens.is_null()) return av;
  if (!added_tokens.is_array()) fail("{}: expected an array, found {}", where, added_tokens.type_name());
  for (size_t i = 0; i < added_tokens.size(); ++i) {
    const auto& t = added_tokens[i];
    const std::string at = fmt::format("{}[{}]", where, i);
    if (!t.is_object() || !t.contains("id") || !t["id"].is_number_integer() || !t.contains("content") ||
        !t["content"].is_string())
      fail("{}: expected an object with integer \"id\" and string \"content\", found {}", at, t.dump());
    AddedToken tok{t["id"].get<int32_t>(), t["content"].get<std::string>(), t.value("special", false),
                   t.value("normalized", !t.value("special", false)), t.value("lstrip", false), t.value("rstrip", false)};
    if (tok.content.empty()) fail("{}.content: an added token cannot be empty", at);
    if (!is_valid_utf8(tok.content)) fail("{}.content: not valid UTF-8", at);
    if (t.value("single_word", false)) fail("{}.single_word: true is not supported", at);
    const auto index = static_cast<int32_t>(av.tokens_.size());
    (tok.normalized ? av.normalized_trie_ : av.raw_trie_).insert(tok.content, index);
    av.tokens_.push_back(std::move(tok));
  }
  return av;
}

int32_t AddedVocabulary::longest_at(const Trie& trie, std::string_view text, size_t pos, bool allow_special,
                                    size_t& len) const {
  int32_t best = -1;
  int32_t node = 0;
  for (size_t i = pos; i < text.size(); ++i) {
    node = trie.nodes[node].child[static_cast<unsigned char>(text[i])];
    if (node < 0) break;
    const int32_t t = trie.nodes[node].token_index;
    if (t >= 0 && (allow_special || !tokens_[t].special)) {
      best = t;
      len = i + 1 - pos;
    }
  }
  return best;
}

void AddedVocabulary::split_pass(const Trie& trie, std::string_view text, size_t begin, size_t end,
                                 bool allow_special, std::vector<Segment>& out) const {
  std::string_view window = text.substr(0, end);
  size_t plain_start = begin;
  size_t pos = begin;
  while (pos < end) {
    if (!trie.first_byte[static_cast<unsigned char>(window[pos])]) {
      ++pos;
      continue;
    }
    size_t len = 0;
    const int32_t t = longest_at(trie, window, pos, allow_special, len);
    if (t < 0) {
      ++pos;
      continue;
    }
    size_t match_begin = pos, match_end = pos + len;
    if (tokens_[t].lstrip) {
      // absorb whitespace to the left, back to the start of the pending plain text
      while (match_begin > plain_start) {
        size_t k = match_begin - 1;
        while (k > plain_start && (static_cast<unsigned char>(window[k]) & 0xC0) == 0x80) --k;
        size_t clen;
        if (!is_space_byte(window, k, clen)) break;
        match_begin = k;
      }
    }
    if (tokens_[t].rstrip) {
      size_t clen;
      while (match_end < end && is_space_byte(window, match_end, clen)) match_end += clen;
    }
    if (match_begin > plain_start) out.push_back({plain_start, match_begin, -1});
    out.push_back({match_begin, match_end, tokens_[t].id});
    pos = plain_start = match_end;
  }
  if (end > plain_start) out.push_back({plain_start, end, -1});
}

void AddedVocabulary::split(std::string_view text, bool allow_special, std::vector<Segment>& out) const {
  std::vector<Segment> first;
  split_pass(raw_trie_, text, 0, text.size(), allow_special, first);
  for (const Segment& s : first) {
    if (s.added_id >= 0) out.push_back(s);
    else split_pass(normalized_trie_, text, s.begin, s.end, allow_special, out);
  }
}

}  // namespace dsserve::text
