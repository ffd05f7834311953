// The pre-tokenizer: cuts text (already split around added tokens) into words for BPE, following
// tokenizer.json's `pre_tokenizer` (Split steps with every delimiter behaviour and `invert`,
// ByteLevel with or without its GPT-2 regex, and Sequence of those). Words are byte ranges of the
// input; the byte-level alphabet mapping itself is left to the BPE model, which works on raw bytes.
#pragma once
#include <nlohmann/json_fwd.hpp>

#include <string>
#include <string_view>
#include <vector>

#include "text/unicode_regex.h"

namespace dsserve::text {

enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

struct SplitStep {
  UnicodeRegex regex;
  SplitBehavior behavior;
  bool invert;
};

struct Word {
  size_t begin;  // byte offsets into the pre-tokenized text
  size_t end;
};

class PreTokenizer {
 public:
  // Builds from tokenizer.json's "pre_tokenizer" value (null means: the whole text is one word).
  static PreTokenizer from_json(const nlohmann::json& spec, const std::string& where);

  // Appends the words of text, in order, to out. When add_prefix_space() is true the caller
  // pre-tokenizes " " + text for text that does not start with a space (ByteLevel's option).
  void split(std::string_view text, std::vector<Word>& out) const;
  bool add_prefix_space() const { return add_prefix_space_; }

 private:
  std::vector<SplitStep> steps_;
  bool add_prefix_space_ = false;
};

}  // namespace dsserve::text
