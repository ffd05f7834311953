// The byte-level BPE model: vocabulary and merges of tokenizer.json converted to raw bytes, and the
// merge of one pre-tokenized word into token ids, lowest merge rank first (leftmost on ties), as in
// Hugging Face tokenizers. Results for repeated words are cached (thread-safe).
#pragma once
#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace dsserve::text {

struct TransparentStringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
using StringIdMap = std::unordered_map<std::string, int32_t, TransparentStringHash, std::equal_to<>>;

class BpeModel {
 public:
  // Builds from tokenizer.json's "model" value. Throws dsserve::Error naming `where` and the field.
  static BpeModel from_json(const nlohmann::json& model, const std::string& where);

  // Appends the ids of one word (raw bytes) to ids.
  void encode_word(std::string_view word, std::vector<int32_t>& ids) const;

  const StringIdMap& byte_vocab() const { return vocab_; }  // raw bytes -> id (byte-level tokens)
  // Vocabulary as spelled in tokenizer.json, indexed by id ("" for ids it does not list).
  const std::vector<std::string>& spelled_vocab() const { return spelled_of_id_; }

  BpeModel() = default;
  BpeModel(BpeModel&& o) noexcept;
  BpeModel& operator=(BpeModel&& o) noexcept;

 private:
  struct MergeResult {
    int32_t rank;
    int32_t new_id;
  };
  void merge_uncached(std::string_view word, std::vector<int32_t>& ids) const;

  StringIdMap vocab_;
  std::vector<std::string> spelled_of_id_;
  int32_t byte_id_[256];
  std::unordered_map<uint64_t, MergeResult> merges_;  // (left id << 32 | right id) -> merge

  static constexpr size_t kCacheCapacity = 1 << 18;
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>, TransparentStringHash, std::equal_to<>> cache_;
};

}  // namespace dsserve::text
