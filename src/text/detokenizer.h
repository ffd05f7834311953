// Incremental detokenizer for streaming: fed one token id at a time, returns only text that is
// final: never part of a UTF-8 character (bytes of one character arriving in several tokens are
// held until complete) and never text that may still turn out to begin a stop string. Stop strings
// spanning token boundaries are found in the decoded text and trimmed (no_stop_trim keeps them and
// the rest of the token that completed them), as SGLang does. The concatenation of all pieces
// equals Tokenizer::decode of the same ids when no stop string matches.
//
// spaces_between_special_tokens is accepted for SGLang compatibility; like Hugging Face's fast
// (tokenizer.json) tokenizers, which SGLang uses for DeepSeek models, it does not change the text.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "text/tokenizer.h"

namespace dsserve::text {

struct DetokenizeOptions {
  bool skip_special_tokens = true;
  bool spaces_between_special_tokens = true;
  std::vector<std::string> stop;  // stop strings (empty strings are ignored)
  bool no_stop_trim = false;
};

class IncrementalDetokenizer {
 public:
  IncrementalDetokenizer(const Tokenizer& tokenizer, DetokenizeOptions options);

  // Adds one token; returns the text that became final (possibly ""). After a stop string matched,
  // further tokens are ignored and return "".
  std::string push(int32_t id);
  // End of stream: returns everything still held (an incomplete character becomes U+FFFD).
  std::string finish();

  bool stopped() const { return matched_stop_.has_value(); }
  const std::optional<std::string>& matched_stop() const { return matched_stop_; }

 private:
  // Moves final text out of held_, checking stop strings; `at_end` releases every held byte.
  std::string release(bool at_end);

  const Tokenizer& tokenizer_;
  DetokenizeOptions options_;
  std::string pending_bytes_;  // an incomplete UTF-8 sequence, at most 3 bytes
  std::string held_;           // decoded text that may still begin a stop string
  std::optional<std::string> matched_stop_;
};

}  // namespace dsserve::text
