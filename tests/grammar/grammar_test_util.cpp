// Grammar test helpers (see grammar_test_util.h).
#include "grammar/grammar_test_util.h"

#include "common/test_paths.h"
#include "text/tokenizer.h"

namespace dsserve::test {

std::shared_ptr<const grammar::Vocabulary> small_vocab() {
  static std::shared_ptr<const grammar::Vocabulary> v = [] {
    std::vector<std::string> t;
    for (int b = 0; b < 256; ++b) t.push_back(std::string(1, char(b)));
    for (const char* s : {"{\"", "\":", "\",", "\"}", "\"]", "},", "}]", "]}", "true", "false", "null", ",\"", "\":\"",
                          "ab", "abc", "name", "age", "12", "123", "0.", ".5", "-1", "e+", "\\n", "\\u00", "\\\"", "  ",
                          "\n", "hello", " world", "[{", "\"\"", "{}", "[]", "é", "中文", "\xe4\xb8", "\xad", "2024-",
                          "01-", "T1", ":00", "Z\"", "@", ".com", "<｜tool▁calls▁begin｜>", "<｜tool▁call▁begin｜>",
                          "<｜tool▁sep｜>", "<｜tool▁call▁end｜>", "<｜tool▁calls▁end｜>", "function", "\n```json\n",
                          "\n```", "```"})
      t.push_back(s);
    t.push_back("");  // a special token: never allowed
    return std::make_shared<grammar::Vocabulary>(std::move(t));
  }();
  return v;
}

std::shared_ptr<const grammar::Vocabulary> deepseek_vocab() {
  static std::shared_ptr<const grammar::Vocabulary> v = []() -> std::shared_ptr<const grammar::Vocabulary> {
    const std::string dir = npm_tokenizer_dir();
    if (dir.empty()) return nullptr;
    text::Tokenizer tok = text::Tokenizer::load(dir);
    std::vector<std::string> t(129280);
    for (int i = 0; i < tok.vocab_size() && i < 129280; ++i)
      if (!tok.is_special(i)) t[size_t(i)] = tok.token_bytes(i);
    return std::make_shared<grammar::Vocabulary>(std::move(t));
  }();
  return v;
}

std::shared_ptr<const grammar::CompiledGrammar> compile(const grammar::GrammarRequest& r,
                                                        std::shared_ptr<const grammar::Vocabulary> v) {
  return grammar::compile_grammar(grammar::build_grammar(r), std::move(v));
}

std::string random_text(const std::shared_ptr<const grammar::CompiledGrammar>& g, std::mt19937& rng, int max_tokens,
                        double p_end, bool& ok) {
  grammar::Matcher m(g);
  const auto& v = *g->vocab;
  std::vector<uint32_t> bits(size_t(v.words()));
  std::string out;
  for (int step = 0; step < max_tokens; ++step) {
    if (m.can_end() && (m.is_complete() || std::uniform_real_distribution<double>(0, 1)(rng) < p_end)) {
      ok = true;
      return out;
    }
    m.fill_next_token_bitmask(bits);
    std::vector<int32_t> allowed;
    for (int t = 0; t < v.size(); ++t)
      if (bits[size_t(t) >> 5] >> (t & 31) & 1) allowed.push_back(t);
    if (allowed.empty()) break;
    const int32_t t = allowed[std::uniform_int_distribution<size_t>(0, allowed.size() - 1)(rng)];
    if (!m.accept_token(t)) break;
    out += v.bytes(t);
  }
  ok = false;
  return "";
}

}  // namespace dsserve::test
