// Tokenizer loading, encode and decode (see tokenizer.h).
#include "text/tokenizer.h"

#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>

#include "core/error.h"
#include "text/byte_level.h"
#include "text/utf8.h"

namespace dsserve::text {
namespace {

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail("{}: cannot open file", path);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

nlohmann::json parse_json(std::string_view text, const std::string& where) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    fail("{}: not valid JSON: {}", where, e.what());
  }
}

// tokenizer_config's bos_token / eos_token: a string or an AddedToken object with "content".
std::string config_token(const nlohmann::json& config, const char* key, const std::string& where) {
  if (!config.contains(key) || config[key].is_null()) return "";
  const auto& v = config[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  fail("{}: {}: expected a string or an object with string \"content\", found {}", where, key, v.dump());
}

void check_normalizer(const nlohmann::json& n, const std::string& where) {
  if (n.is_null()) return;
  if (n.is_object() && n.value("type", std::string()) == "Sequence" && n.contains("normalizers") &&
      n["normalizers"].is_array()) {
    for (size_t i = 0; i < n["normalizers"].size(); ++i)
      check_normalizer(n["normalizers"][i], where + ".normalizers[" + std::to_string(i) + "]");
    return;
  }
  fail("{}: unsupported normalizer {} (only an empty Sequence or null)", where, n.dump());
}

void check_decoder(const nlohmann::json& d, const std::string& where) {
  if (d.is_null()) return;
  if (d.is_object() && d.value("type", std::string()) == "ByteLevel") return;
  fail("{}: unsupported decoder {} (expected ByteLevel)", where, d.dump());
}

}  // namespace

Tokenizer Tokenizer::load(const std::string& dir) {
  const std::string tok_path = dir + "/tokenizer.json";
  const std::string cfg_path = dir + "/tokenizer_config.json";
  const std::string tok_text = read_file(tok_path);
  std::string cfg_text;
  if (std::ifstream(cfg_path).good()) cfg_text = read_file(cfg_path);
  return from_json_text(tok_text, cfg_text, tok_path);
}

// A field of the wrong JSON type that the checks below do not name (the JSON library's own
// exception) still becomes an error naming the file.
Tokenizer Tokenizer::from_json_text(std::string_view tokenizer_json, std::string_view tokenizer_config_json,
                                    const std::string& where) try {
  const nlohmann::json tj = parse_json(tokenizer_json, where);
  if (!tj.is_object()) fail("{}: expected a JSON object at top level, found {}", where, tj.type_name());
  if (!tj.contains("model")) fail("{}: missing field \"model\"", where);
  check_normalizer(tj.value("normalizer", nlohmann::json()), where + ": normalizer");
  check_decoder(tj.value("decoder", nlohmann::json()), where + ": decoder");

  Tokenizer t;
  t.pre_tokenizer_ = std::make_shared<PreTokenizer>(
      PreTokenizer::from_json(tj.value("pre_tokenizer", nlohmann::json()), where + ": pre_tokenizer"));
  t.added_ = AddedVocabulary::from_json(tj.value("added_tokens", nlohmann::json()), where + ": added_tokens");
  t.bpe_ = BpeModel::from_json(tj["model"], where + ": model");

  int32_t max_id = static_cast<int32_t>(t.bpe_.spelled_vocab().size()) - 1;
  for (const auto& a : t.added_.tokens()) max_id = std::max(max_id, a.id);
  t.text_of_id_.resize(max_id + 1);
  t.bytes_of_id_.resize(max_id + 1);
  t.kind_of_id_.assign(max_id + 1, 0);
  // As the ByteLevel decoder: a token spelled wholly in the byte alphabet decodes to those bytes,
  // any other token to its own UTF-8 text.
  auto set_token = [&](int32_t id, const std::string& spelled, uint8_t kind) {
    t.text_of_id_[id] = spelled;
    auto raw = byte_level_to_bytes(spelled);
    t.bytes_of_id_[id] = raw ? *raw : spelled;
    t.kind_of_id_[id] = kind;
    t.id_of_text_[spelled] = id;
  };
  const auto& spelled = t.bpe_.spelled_vocab();
  for (size_t id = 0; id < spelled.size(); ++id)
    if (!spelled[id].empty()) set_token(static_cast<int32_t>(id), spelled[id], 1);
  for (const auto& a : t.added_.tokens()) set_token(a.id, a.content, a.special ? 3 : 2);

  if (!tokenizer_config_json.empty()) {
    const std::string cfg_where = "tokenizer_config.json";
    const nlohmann::json cfg = parse_json(tokenizer_config_json, cfg_where);
    if (!cfg.is_object()) fail("{}: expected a JSON object, found {}", cfg_where, cfg.type_name());
    t.bos_token = config_token(cfg, "bos_token", cfg_where);
    t.eos_token = config_token(cfg, "eos_token", cfg_where);
    auto bool_field = [&](const char* key, bool dflt) {
      if (!cfg.contains(key) || cfg[key].is_null()) return dflt;
      if (!cfg[key].is_boolean()) fail("{}: {}: expected a boolean, found {}", cfg_where, key, cfg[key].dump());
      return cfg[key].get<bool>();
    };
    t.add_bos_token = bool_field("add_bos_token", false);
    t.add_eos_token = bool_field("add_eos_token", false);
    if (cfg.contains("chat_template")) {
      const auto& ct = cfg["chat_template"];
      if (ct.is_string()) {
        t.chat_template = ct.get<std::string>();
      } else if (ct.is_array()) {  // [{name, template}, ...]: take "default"
        for (const auto& e : ct)
          if (e.value("name", std::string()) == "default") t.chat_template = e.value("template", std::string());
      } else if (!ct.is_null()) {
        fail("{}: chat_template: expected a string, found {}", cfg_where, ct.type_name());
      }
    }
    auto resolve = [&](const std::string& tok, const char* key) {
      if (tok.empty()) return int32_t{-1};
      auto id = t.token_id(tok);
      if (!id) fail("{}: {} \"{}\" is not a token of tokenizer.json", cfg_where, key, tok);
      return *id;
    };
    t.bos_id = resolve(t.bos_token, "bos_token");
    t.eos_id = resolve(t.eos_token, "eos_token");
  }
  return t;
} catch (const nlohmann::json::exception& e) {
  fail("{} (with its tokenizer_config.json): a field of an unexpected JSON type or value: {}", where, e.what());
}

std::optional<int32_t> Tokenizer::token_id(std::string_view token_text) const {
  auto it = id_of_text_.find(token_text);
  if (it == id_of_text_.end()) return std::nullopt;
  return it->second;
}

std::string_view Tokenizer::token_text(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return {};
  return text_of_id_[id];
}

bool Tokenizer::is_special(int32_t id) const { return id >= 0 && id < vocab_size() && kind_of_id_[id] == 3; }
bool Tokenizer::is_added(int32_t id) const { return id >= 0 && id < vocab_size() && kind_of_id_[id] >= 2; }

const std::string& Tokenizer::token_bytes(int32_t id) const {
  // Models pad their vocabulary beyond the tokenizer's (DeepSeek-V3: 129,280 rows for 128,815
  // tokens); ids the tokenizer does not know decode to nothing, as Hugging Face's decode does.
  static const std::string kNothing;
  if (id < 0 || id >= vocab_size() || kind_of_id_[id] == 0) return kNothing;
  return bytes_of_id_[id];
}

void Tokenizer::append_word_ids(std::string_view text, std::vector<int32_t>& ids) const {
  std::vector<Word> words;
  if (pre_tokenizer_->add_prefix_space() && text[0] != ' ') {
    const std::string spaced = " " + std::string(text);
    pre_tokenizer_->split(spaced, words);
    for (const Word& w : words) bpe_.encode_word(std::string_view(spaced).substr(w.begin, w.end - w.begin), ids);
    return;
  }
  pre_tokenizer_->split(text, words);
  for (const Word& w : words) bpe_.encode_word(text.substr(w.begin, w.end - w.begin), ids);
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special_tokens, bool allow_special) const {
  if (const size_t bad = utf8_first_invalid(text); bad != text.size())
    fail("encode: input is not valid UTF-8 (byte 0x{:02X} at offset {})", static_cast<unsigned char>(text[bad]), bad);
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 2);
  if (add_special_tokens && add_bos_token && bos_id >= 0) ids.push_back(bos_id);
  std::vector<Segment> segments;
  added_.split(text, allow_special, segments);
  for (const Segment& s : segments) {
    if (s.added_id >= 0) ids.push_back(s.added_id);
    else append_word_ids(text.substr(s.begin, s.end - s.begin), ids);
  }
  if (add_special_tokens && add_eos_token && eos_id >= 0) ids.push_back(eos_id);
  return ids;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  std::string bytes;
  for (int32_t id : ids) {
    const std::string& b = token_bytes(id);
    if (skip_special_tokens && is_special(id)) continue;
    bytes += b;
  }
  return utf8_lossy(bytes);
}

}  // namespace dsserve::text
