// Fuzzes the grammar compiler and matcher (structured output): the first byte picks the front end
// (JSON schema, regex, EBNF), the rest is its text. A bad grammar must be a GrammarError; a good one
// is compiled for a small vocabulary (every byte plus multi-byte tokens) and walked for up to 48
// tokens chosen by the input, checking at every step that the token mask says exactly which
// tokens accept_token takes, and that rollback returns to the same mask.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "grammar/grammar_cache.h"
#include "grammar/grammar_error.h"
#include "grammar/matcher.h"

using namespace dsserve::grammar;

namespace {

std::shared_ptr<const Vocabulary> vocab() {
  static std::shared_ptr<const Vocabulary> v = [] {
    std::vector<std::string> t;
    for (int b = 0; b < 256; ++b) t.push_back(std::string(1, char(b)));
    for (const char* s : {"{\"", "\":", "\",", "\"}", "\"]", "},", "true", "false", "null", "ab", "abc", "12", "0.",
                          "-1", "e+", "\\n", "\\u00", "  ", "\n", "[{", "\"\"", "é", "中文", "\xe4\xb8", "2024-", "T1"})
      t.push_back(s);
    t.push_back("");  // a special token: never allowed
    return std::make_shared<Vocabulary>(std::move(t));
  }();
  return v;
}

bool allowed(const std::vector<uint32_t>& bits, int t) { return bits[size_t(t) >> 5] >> (t & 31) & 1; }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  GrammarRequest r;
  switch (data[0] % 3) {
    case 0: r.kind = GrammarRequest::Kind::JsonSchema; break;
    case 1: r.kind = GrammarRequest::Kind::Regex; break;
    default: r.kind = GrammarRequest::Kind::Ebnf; break;
  }
  r.text.assign(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::shared_ptr<const CompiledGrammar> g;
  try {
    CompileLimits limits;
    limits.max_states = 20000;
    g = compile_grammar(build_grammar(r), vocab(), limits);
  } catch (const GrammarError&) {
    return 0;
  }
  const Vocabulary& v = *vocab();
  Matcher m(g);
  std::vector<uint32_t> bits(size_t(v.words())), again(bits.size());
  uint32_t pick = 2166136261u;
  for (size_t i = 0; i < size; ++i) pick = (pick ^ data[i]) * 16777619u;
  for (int step = 0; step < 48; ++step) {
    m.fill_next_token_bitmask(bits);
    std::vector<int32_t> ok;
    for (int t = 0; t < v.size(); ++t) {
      const bool took = m.accept_token(t);
      if (took != allowed(bits, t)) abort();  // the mask and the matcher disagree
      if (took) {
        ok.push_back(t);
        m.rollback(1);
      }
    }
    m.fill_next_token_bitmask(again);
    if (again != bits) abort();  // rollback did not restore the position
    if (ok.empty()) break;
    pick = pick * 1664525u + 1013904223u;
    m.accept_token(ok[(pick >> 8) % ok.size()]);
  }
  return 0;
}
