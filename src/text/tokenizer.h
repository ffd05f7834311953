// The DeepSeek tokenizer: loads a checkpoint's tokenizer.json and tokenizer_config.json and turns
// text into token ids and back, agreeing exactly with Hugging Face tokenizers. Added tokens are
// found first, the rest is pre-tokenized (regex Split steps, PCRE2) and merged by byte-level BPE.
// Thread-safe for concurrent encode/decode after load.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "text/added_vocabulary.h"
#include "text/bpe_model.h"
#include "text/pre_tokenizer.h"

namespace dsserve::text {

class Tokenizer {
 public:
  // Reads DIR/tokenizer.json and (optional) DIR/tokenizer_config.json. Throws dsserve::Error with
  // the file and field on malformed input.
  static Tokenizer load(const std::string& dir);
  // From the two documents' text (tokenizer_config may be empty).
  static Tokenizer from_json_text(std::string_view tokenizer_json, std::string_view tokenizer_config_json,
                                  const std::string& where = "tokenizer.json");

  // Token ids of text (valid UTF-8, else dsserve::Error). add_special_tokens prepends bos (and
  // appends eos) as tokenizer_config asks; allow_special=false treats special-token text as text.
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens = false,
                              bool allow_special = true) const;
  // Text of ids; bytes that are not UTF-8 become U+FFFD. Unknown ids are an error.
  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens = false) const;
  // Raw bytes a token contributes to decoded text (may be part of a UTF-8 character).
  const std::string& token_bytes(int32_t id) const;  // empty for ids the tokenizer does not know

  int vocab_size() const { return static_cast<int>(text_of_id_.size()); }
  std::optional<int32_t> token_id(std::string_view token_text) const;
  // The token as spelled in tokenizer.json (byte-level alphabet for BPE tokens); "" if unknown.
  std::string_view token_text(int32_t id) const;
  bool is_special(int32_t id) const;
  bool is_added(int32_t id) const;

  int32_t bos_id = -1, eos_id = -1;  // -1 when the config names none
  std::string bos_token, eos_token;
  bool add_bos_token = false, add_eos_token = false;
  std::string chat_template;  // tokenizer_config.json "chat_template" ("" when absent)

 private:
  void append_word_ids(std::string_view text, std::vector<int32_t>& ids) const;

  BpeModel bpe_;
  AddedVocabulary added_;
  std::shared_ptr<PreTokenizer> pre_tokenizer_;
  std::vector<std::string> text_of_id_;   // spelled token per id
  std::vector<std::string> bytes_of_id_;  // decoded bytes per id
  std::vector<uint8_t> kind_of_id_;       // 0 unknown, 1 BPE, 2 added, 3 added special
  StringIdMap id_of_text_;
};

}  // namespace dsserve::text
