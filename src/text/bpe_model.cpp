// BPE vocabulary loading and the rank-ordered merge loop (see bpe_model.h).
#include "text/bpe_model.h"

#include <nlohmann/json.hpp>

#include <queue>

#include "core/error.h"
#include "text/byte_level.h"

namespace dsserve::text {

BpeModel::BpeModel(BpeModel&& o) noexcept
    : vocab_(std::move(o.vocab_)), spelled_of_id_(std::move(o.spelled_of_id_)), merges_(std::move(o.merges_)),
      cache_(std::move(o.cache_)) {
  std::copy(std::begin(o.byte_id_), std::end(o.byte_id_), byte_id_);
}

BpeModel& BpeModel::operator=(BpeModel&& o) noexcept {
  vocab_ = std::move(o.vocab_);
  spelled_of_id_ = std::move(o.spelled_of_id_);
  merges_ = std::move(o.merges_);
  cache_ = std::move(o.cache_);
  std::copy(std::begin(o.byte_id_), std::end(o.byte_id_), byte_id_);
  return *this;
}

BpeModel BpeModel::from_json(const nlohmann::json& model, const std::string& where) {
  if (!model.is_object()) fail("{}: expected an object, found {}", where, model.type_name());
  const std::string type = model.value("type", std::string("BPE"));
  if (type != "BPE") fail("{}.type: expected \"BPE\", found \"{}\"", where, type);
  if (model.contains("dropout") && !model["dropout"].is_null()) fail("{}.dropout: BPE dropout is not supported", where);
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (model.contains(key) && !model[key].is_null() && !model[key].get<std::string>().empty())
      fail("{}.{}: not supported, expected null", where, key);
  if (model.value("byte_fallback", false)) fail("{}.byte_fallback: not supported for a byte-level BPE", where);
  if (model.value("ignore_merges", false)) fail("{}.ignore_merges: not supported", where);
  if (!model.contains("vocab") || !model["vocab"].is_object()) fail("{}.vocab: expected an object", where);
  if (!model.contains("merges") || !model["merges"].is_array()) fail("{}.merges: expected an array", where);

  BpeModel bpe;
  const auto& vocab = model["vocab"];
  bpe.vocab_.reserve(vocab.size());
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0)
      fail("{}.vocab[\"{}\"]: expected a non-negative integer id, found {}", where, it.key(), it.value().dump());
    const auto id = it.value().get<int32_t>();
    if (static_cast<size_t>(id) >= bpe.spelled_of_id_.size()) bpe.spelled_of_id_.resize(id + 1);
    bpe.spelled_of_id_[id] = it.key();
    // Tokens outside the byte-level alphabet (e.g. special tokens listed in the vocabulary) can
    // never come out of a merge of bytes; they stay reachable only as added tokens.
    if (auto raw = byte_level_to_bytes(it.key())) bpe.vocab_.emplace(std::move(*raw), id);
  }
  for (int b = 0; b < 256; ++b) {
    auto it = bpe.vocab_.find(std::string(1, static_cast<char>(b)));
    if (it == bpe.vocab_.end()) fail("{}.vocab: no token for byte 0x{:02X}: a byte-level vocabulary needs all 256", where, b);
    bpe.byte_id_[b] = it->second;
  }

  const auto& merges = model["merges"];
  bpe.merges_.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& m = merges[rank];
    std::string left, right;
    if (m.is_string()) {
      const std::string s = m.get<std::string>();
      const size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
        fail("{}.merges[{}]: expected \"LEFT RIGHT\", found \"{}\"", where, rank, s);
      left = s.substr(0, sp);
      right = s.substr(sp + 1);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      left = m[0];
      right = m[1];
    } else {
      fail("{}.merges[{}]: expected \"LEFT RIGHT\" or [LEFT, RIGHT], found {}", where, rank, m.dump());
    }
    auto find = [&](const std::string& spelled) {
      auto raw = byte_level_to_bytes(spelled);
      auto it = raw ? bpe.vocab_.find(*raw) : bpe.vocab_.end();
      if (it == bpe.vocab_.end()) fail("{}.merges[{}]: \"{}\" is not in the vocabulary", where, rank, spelled);
      return it;
    };
    const auto l = find(left), r = find(right);
    auto merged = bpe.vocab_.find(l->first + r->first);
    if (merged == bpe.vocab_.end())
      fail("{}.merges[{}]: merged token \"{}{}\" is not in the vocabulary", where, rank, left, right);
    const uint64_t key = (static_cast<uint64_t>(l->second) << 32) | static_cast<uint32_t>(r->second);
    bpe.merges_.insert_or_assign(key, MergeResult{static_cast<int32_t>(rank), merged->second});  // as HF: last wins
  }
  return bpe;
}


void BpeModel::encode_word(std::string_view word, std::vector<int32_t>& ids) const {
  if (word.size() == 1) {
    ids.push_back(byte_id_[static_cast<unsigned char>(word[0])]);
    return;
  }
  {
    std::lock_guard lock(cache_mutex_);
    if (auto it = cache_.find(word); it != cache_.end()) {
      ids.insert(ids.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t first = ids.size();
  merge_uncached(word, ids);
  std::lock_guard lock(cache_mutex_);
  if (cache_.size() < kCacheCapacity)
    cache_.emplace(std::string(word), std::vector<int32_t>(ids.begin() + static_cast<ptrdiff_t>(first), ids.end()));
}

void BpeModel::merge_uncached(std::string_view word, std::vector<int32_t>& ids) const {
  struct Symbol {
    int32_t id;
    int32_t prev, next;  // neighbours, -1 at the ends
    bool alive;
  };
  struct Candidate {
    int32_t rank, pos, new_id;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  const int32_t n = static_cast<int32_t>(word.size());
  std::vector<Symbol> symbols(n);
  for (int32_t i = 0; i < n; ++i)
    symbols[i] = {byte_id_[static_cast<unsigned char>(word[i])], i - 1, i + 1 < n ? i + 1 : -1, true};

  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue;
  auto consider = [&](int32_t pos) {
    const int32_t next = symbols[pos].next;
    if (next < 0) return;
    const uint64_t key = (static_cast<uint64_t>(symbols[pos].id) << 32) | static_cast<uint32_t>(symbols[next].id);
    if (auto it = merges_.find(key); it != merges_.end()) queue.push({it->second.rank, pos, it->second.new_id});
  };
  for (int32_t i = 0; i + 1 < n; ++i) consider(i);

  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    Symbol& left = symbols[c.pos];
    if (!left.alive || left.next < 0) continue;
    Symbol& right = symbols[left.next];
    const uint64_t key = (static_cast<uint64_t>(left.id) << 32) | static_cast<uint32_t>(right.id);
    auto it = merges_.find(key);
    if (it == merges_.end() || it->second.new_id != c.new_id) continue;  // stale candidate
    left.id = c.new_id;
    right.alive = false;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = c.pos;
    if (left.prev >= 0) consider(left.prev);
    consider(c.pos);
  }
  for (int32_t i = 0; i >= 0; i = symbols[i].next) ids.push_back(symbols[i].id);
}

}  // namespace dsserve::text
