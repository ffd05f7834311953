// The grammar engine on its own: every front end's language (checked against independent
// definitions: std::regex, exact decimal comparisons, nlohmann's JSON parser), the token masks
// against brute force (each token's bit equals whether the matcher accepts it, on the small
// vocabulary and the DeepSeek-V3 one), rollback, and the errors' positions.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <regex>

#include "grammar/grammar_error.h"
#include "grammar/grammar_test_util.h"
#include "grammar/json_numbers.h"
#include "grammar/regex.h"

using namespace dsserve;
using namespace dsserve::grammar;
using dsserve::test::compile;
using dsserve::test::random_text;
using dsserve::test::small_vocab;

namespace {

GrammarRequest req(GrammarRequest::Kind k, std::string text) {
  GrammarRequest r;
  r.kind = k;
  r.text = std::move(text);
  return r;
}

bool matches(const std::shared_ptr<const CompiledGrammar>& g, const std::string& s) {
  Matcher m(g);
  return m.accept_bytes(s) && m.can_end();
}

// Every string over `alphabet` up to max_len.
std::vector<std::string> all_strings(const std::string& alphabet, size_t max_len) {
  std::vector<std::string> out = {""};
  for (size_t i = 0; i < out.size(); ++i)
    if (out[i].size() < max_len)
      for (char c : alphabet) out.push_back(out[i] + c);
  return out;
}

// Brute force: bit t of the mask == the matcher accepts token t.
void expect_mask_exact(Matcher& m, const Vocabulary& v, const std::string& where) {
  std::vector<uint32_t> bits(size_t(v.words()));
  m.fill_next_token_bitmask(bits);
  int mismatches = 0;
  for (int t = 0; t < v.size() && mismatches < 5; ++t) {
    const bool bit = bits[size_t(t) >> 5] >> (t & 31) & 1;
    const bool ok = m.accept_token(t);
    if (ok) m.rollback(1);
    if (bit != ok) {
      ++mismatches;
      ADD_FAILURE() << where << ": token " << t << " '" << v.bytes(t) << "' mask " << bit << " accept " << ok;
    }
  }
}

}  // namespace

TEST(GrammarRegex, LanguageMatchesStdRegexOnAllShortStrings) {
  const std::vector<std::string> patterns = {"a(b|c)*d?", "[a-c]{1,3}x?", "(ab|a)(bc|c)", "a+b*", "[^ab]c|\\d{2}",
                                             "(a|b){2}(c)?", "x{0,2}y{1,}", "(?:a|)b", "[\\w-]+", "\\.?a"};
  const auto all = all_strings("abcdxy1-.", 4);
  for (const std::string& p : patterns) {
    auto g = compile(req(GrammarRequest::Kind::Regex, p), small_vocab());
    std::regex re("^(?:" + p + ")$", std::regex::ECMAScript);
    for (const std::string& s : all) EXPECT_EQ(matches(g, s), std::regex_match(s, re)) << p << " on '" << s << "'";
  }
}

TEST(GrammarRegex, UnicodeClassesAndEscapes) {
  auto g = compile(req(GrammarRequest::Kind::Regex, "[^a]\\u4e2d."), small_vocab());
  EXPECT_TRUE(matches(g, "é中x"));
  EXPECT_TRUE(matches(g, "b中文"));
  EXPECT_FALSE(matches(g, "a中x"));
  EXPECT_FALSE(matches(g, "b中\n"));
  EXPECT_FALSE(matches(g, std::string("b中\xe4\xb8")));  // a character cut in half
}

TEST(GrammarRegex, ErrorsNameTheOffset) {
  auto pos = [](const std::string& p) {
    try {
      Grammar g;
      regex_to_expr(g, p);
    } catch (const GrammarError& e) {
      return e.position();
    }
    return std::string("no error");
  };
  EXPECT_EQ(pos("ab(c"), "offset 4");
  EXPECT_EQ(pos("a(?=b)"), "offset 3");
  EXPECT_EQ(pos("(a)\\1"), "offset 3");
  EXPECT_EQ(pos("a{3,1}"), "offset 1");
  EXPECT_EQ(pos("[z-a]"), "offset 4");
  EXPECT_EQ(pos("a^b"), "offset 1");
}

TEST(GrammarNumbers, IntegerRangesExactly) {
  const auto all = all_strings("-0123456789", 4);
  std::regex canonical("^-?(0|[1-9][0-9]*)$");
  struct Case {
    std::optional<std::string> lo, hi;
    bool lo_ex, hi_ex;
  };
  for (const Case& c : std::vector<Case>{{"-15", "123", false, false}, {"0", std::nullopt, true, false},
                                         {std::nullopt, "7", false, true}, {"-9.5", "-2.5", false, false},
                                         {"5", "5", false, false}, {"10", "999", true, true}}) {
    Grammar g;
    std::optional<DecimalBound> lo, hi;
    if (c.lo) lo = parse_decimal_bound(*c.lo, c.lo_ex);
    if (c.hi) hi = parse_decimal_bound(*c.hi, c.hi_ex);
    g.root = g.declare_rule("root");
    g.define_rule(g.root, integer_range(g, lo, hi));
    auto cg = compile_grammar(g, small_vocab());
    for (const std::string& s : all) {
      bool expect = std::regex_match(s, canonical) && s != "-0";
      if (expect) {
        const double v = std::stod(s);
        if (c.lo) expect &= c.lo_ex ? v > std::stod(*c.lo) : v >= std::stod(*c.lo);
        if (c.hi) expect &= c.hi_ex ? v < std::stod(*c.hi) : v <= std::stod(*c.hi);
      }
      EXPECT_EQ(matches(cg, s), expect) << "[" << c.lo.value_or("-inf") << ", " << c.hi.value_or("inf") << "] on '" << s << "'";
    }
  }
}

TEST(GrammarNumbers, DecimalRangesExactly) {
  const auto all = all_strings("-0125.", 5);
  std::regex canonical("^-?(0|[1-9][0-9]*)(\\.[0-9]+)?$");
  struct Case {
    std::optional<std::string> lo, hi;
    bool lo_ex, hi_ex;
  };
  for (const Case& c : std::vector<Case>{{"0.5", "2.25", false, false}, {"0.5", "2.25", true, true},
                                         {"-1.5", "0", false, true}, {"0", std::nullopt, true, false},
                                         {std::nullopt, "-0.05", false, false}, {"1.2", "1.25", false, true},
                                         {"-2", "1e1", false, false}}) {
    Grammar g;
    std::optional<DecimalBound> lo, hi;
    if (c.lo) lo = parse_decimal_bound(*c.lo, c.lo_ex);
    if (c.hi) hi = parse_decimal_bound(*c.hi, c.hi_ex);
    g.root = g.declare_rule("root");
    g.define_rule(g.root, number_range(g, lo, hi));
    auto cg = compile_grammar(g, small_vocab());
    for (const std::string& s : all) {
      bool expect = std::regex_match(s, canonical) && !(s[0] == '-' && std::stod(s) == 0.0);
      if (expect) {
        const double v = std::stod(s);
        if (c.lo) expect &= c.lo_ex ? v > std::stod(*c.lo) : v >= std::stod(*c.lo);
        if (c.hi) expect &= c.hi_ex ? v < std::stod(*c.hi) : v <= std::stod(*c.hi);
      }
      EXPECT_EQ(matches(cg, s), expect) << "[" << c.lo.value_or("-inf") << ", " << c.hi.value_or("inf") << "] on '" << s << "'";
    }
  }
}

TEST(GrammarJsonSchema, RandomTextsParseAndKeepTheSchema) {
  const std::string schema = R"({
    "type": "object",
    "properties": {
      "name": {"type": "string", "maxLength": 5},
      "age": {"type": "integer", "minimum": 0, "maximum": 120},
      "tags": {"type": "array", "items": {"enum": ["a", "b", 3, null]}, "minItems": 1, "maxItems": 3},
      "ok": {"type": "boolean"},
      "score": {"type": "number", "exclusiveMinimum": 0, "maximum": 1}
    },
    "required": ["name", "tags"]
  })";
  auto g = compile(req(GrammarRequest::Kind::JsonSchema, schema), small_vocab());
  std::mt19937 rng(7);
  int ended = 0;
  for (int i = 0; i < 200; ++i) {
    bool ok = false;
    std::string text = random_text(g, rng, 400, 0.3, ok);
    if (!ok) continue;
    ++ended;
    nlohmann::ordered_json j = nlohmann::ordered_json::parse(text);  // throws on invalid JSON
    ASSERT_TRUE(j.is_object()) << text;
    ASSERT_TRUE(j.contains("name") && j["name"].is_string()) << text;
    EXPECT_LE(j["name"].get<std::string>().size(), 5u * 4) << text;
    ASSERT_TRUE(j["tags"].is_array() && !j["tags"].empty() && j["tags"].size() <= 3) << text;
    if (j.contains("age")) {
      EXPECT_TRUE(j["age"].is_number_integer() && j["age"] >= 0 && j["age"] <= 120) << text;
    }
    if (j.contains("score")) {
      EXPECT_TRUE(j["score"] > 0 && j["score"] <= 1) << text;
    }
    for (auto it = j.begin(); it != j.end(); ++it)
      EXPECT_TRUE(it.key() == "name" || it.key() == "age" || it.key() == "tags" || it.key() == "ok" || it.key() == "score")
          << text;
  }
  EXPECT_GT(ended, 150);
}

TEST(GrammarJsonSchema, RecursiveRefAndAdditionalProperties) {
  const std::string schema = R"({
    "$defs": {"node": {"type": "object", "properties": {"v": {"type": "integer", "minimum": 0, "maximum": 9},
                        "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}, "maxItems": 2}},
                        "required": ["v"]}},
    "type": "object",
    "properties": {"root": {"$ref": "#/$defs/node"}},
    "required": ["root"],
    "additionalProperties": {"type": "integer"}
  })";
  auto g = compile(req(GrammarRequest::Kind::JsonSchema, schema), small_vocab());
  EXPECT_TRUE(matches(g, R"({"root":{"v":1,"kids":[{"v":2},{"v":3,"kids":[]}]},"x":5})"));
  EXPECT_FALSE(matches(g, R"({"root":{"v":1},"root":5})"));  // an extra member may not reuse a declared name
  EXPECT_FALSE(matches(g, R"({"root":{"v":10}})"));
  EXPECT_FALSE(matches(g, R"({"root":{"v":1,"kids":[{"v":2},{"v":3},{"v":4}]}})"));
  EXPECT_FALSE(matches(g, R"({ "root":{"v":1}})"));  // compact: no whitespace
  std::mt19937 rng(3);
  for (int i = 0; i < 50; ++i) {
    bool ok = false;
    std::string text = random_text(g, rng, 300, 0.5, ok);
    if (ok) {
      EXPECT_NO_THROW(nlohmann::json::parse(text)) << text;
    }
  }
}

TEST(GrammarJsonSchema, UnsupportedKeywordsAreErrorsWithTheirPointer) {
  auto pos = [](const std::string& s) {
    try {
      compile(req(GrammarRequest::Kind::JsonSchema, s), small_vocab());
    } catch (const GrammarError& e) {
      return e.position();
    }
    return std::string("no error");
  };
  EXPECT_EQ(pos(R"({"type":"object","properties":{"a":{"type":"number","multipleOf":2}}})"), "/properties/a/multipleOf");
  EXPECT_EQ(pos(R"({"type":"array","uniqueItems":true})"), "/uniqueItems");
  EXPECT_EQ(pos(R"({"type":"string","format":"hostname"})"), "/format");
  EXPECT_EQ(pos(R"({"not":{}})"), "/not");
  EXPECT_EQ(pos(R"({"$ref":"#/$defs/missing"})"), "/$ref");
  EXPECT_EQ(pos(R"({"type":"string", "pattern":"a(b"})"), "/pattern");
  EXPECT_EQ(pos(R"({"type": "object",)"), "offset 19");  // nlohmann's count of bytes read
  EXPECT_EQ(pos(R"({"type":"integer","minimum":5,"maximum":4})"), "/");
}

TEST(GrammarEbnf, LanguageAndErrors) {
  const std::string text = R"(
    root ::= "[" (item ("," item)*)? "]"   # a list
    item ::= num | "'" [a-z]{1,3} "'" | root
    num ::= [1-9] [0-9]*
  )";
  auto g = compile(req(GrammarRequest::Kind::Ebnf, text), small_vocab());
  EXPECT_TRUE(matches(g, "[]"));
  EXPECT_TRUE(matches(g, "[1,'ab',[20,[]]]"));
  EXPECT_FALSE(matches(g, "[01]"));
  EXPECT_FALSE(matches(g, "['abcd']"));
  auto pos = [](const std::string& t) {
    try {
      compile(req(GrammarRequest::Kind::Ebnf, t), small_vocab());
    } catch (const GrammarError& e) {
      return e.position();
    }
    return std::string("no error");
  };
  EXPECT_EQ(pos("root ::= a\n"), "line 1, column 10");        // undefined rule
  EXPECT_EQ(pos("root ::= \"a\"\nx ::= (\"b\"\n"), "line 3, column 1");
  EXPECT_EQ(pos("start ::= \"a\"\n"), "line 1, column 1");     // no root
  EXPECT_EQ(pos("root ::= root \"a\" | \"b\"\n"), "rule 'root'");  // left recursion
}

TEST(GrammarMatcher, MaskEqualsBruteForceOnSmallVocab) {
  const std::string schema = R"({"type":"object","properties":{"a":{"type":"array","items":{"$ref":"#"},"maxItems":2},
                                 "s":{"type":"string","maxLength":3},"n":{"type":"number"}}})";
  for (const GrammarRequest& r : {req(GrammarRequest::Kind::JsonSchema, schema), req(GrammarRequest::Kind::JsonObject, ""),
                                  req(GrammarRequest::Kind::Ebnf, "root ::= (\"ab\" x)* \"c\"\nx ::= [a-c] | \"\" | \"a\" x \"b\"\n")}) {
    auto g = compile(r, small_vocab());
    std::mt19937 rng(11);
    for (int walk = 0; walk < 20; ++walk) {
      Matcher m(g);
      std::vector<uint32_t> bits(size_t(small_vocab()->words()));
      for (int step = 0; step < 30; ++step) {
        expect_mask_exact(m, *small_vocab(), "walk " + std::to_string(walk) + " step " + std::to_string(step));
        m.fill_next_token_bitmask(bits);
        std::vector<int32_t> allowed;
        for (int t = 0; t < small_vocab()->size(); ++t)
          if (bits[size_t(t) >> 5] >> (t & 31) & 1) allowed.push_back(t);
        if (allowed.empty()) break;
        ASSERT_TRUE(m.accept_token(allowed[rng() % allowed.size()]));
      }
    }
  }
}

TEST(GrammarMatcher, MaskEqualsBruteForceOnDeepSeekVocab) {
  auto v = dsserve::test::deepseek_vocab();
  if (!v) GTEST_SKIP() << "DeepSeek-V3 tokenizer absent: run scripts/setup.sh";
  auto g = compile(req(GrammarRequest::Kind::JsonSchema,
                       R"({"type":"object","properties":{"name":{"type":"string","maxLength":8},
                           "kids":{"type":"array","items":{"$ref":"#"},"maxItems":3},"n":{"type":"integer"}},
                           "required":["name"]})"),
                   v);
  std::mt19937 rng(5);
  Matcher m(g);
  std::vector<uint32_t> bits(size_t(v->words()));
  for (int step = 0; step < 12; ++step) {
    expect_mask_exact(m, *v, "step " + std::to_string(step));
    m.fill_next_token_bitmask(bits);
    std::vector<int32_t> allowed;
    for (int t = 0; t < v->size(); ++t)
      if (bits[size_t(t) >> 5] >> (t & 31) & 1) allowed.push_back(t);
    ASSERT_FALSE(allowed.empty());
    ASSERT_TRUE(m.accept_token(allowed[rng() % allowed.size()]));
  }
}

TEST(GrammarMatcher, RollbackRestoresTheMask) {
  auto g = compile(req(GrammarRequest::Kind::JsonObject, ""), small_vocab());
  Matcher m(g);
  const auto& v = *small_vocab();
  std::vector<uint32_t> before(size_t(v.words())), after(size_t(v.words()));
  ASSERT_TRUE(m.accept_bytes("{\"a\":"));
  m.fill_next_token_bitmask(before);
  EXPECT_FALSE(m.can_end());
  ASSERT_TRUE(m.accept_bytes("[1,"));
  ASSERT_TRUE(m.accept_bytes("{}]}"));
  EXPECT_TRUE(m.can_end());
  EXPECT_TRUE(m.is_complete());
  EXPECT_FALSE(m.accept_bytes("x"));
  m.rollback(2);
  m.fill_next_token_bitmask(after);
  EXPECT_EQ(before, after);
  EXPECT_EQ(m.accepted_count(), 1);
}

TEST(GrammarToolCalls, DeepSeekFormatWithValidArguments) {
  GrammarRequest r;
  r.kind = GrammarRequest::Kind::ToolCalls;
  r.max_calls = 2;
  r.tools = {{"get_weather", nlohmann::ordered_json::parse(R"({"type":"object","properties":{"city":{"type":"string","maxLength":4}},"required":["city"]})")},
             {"noop", nullptr}};
  auto g = compile(r, small_vocab());
  EXPECT_TRUE(matches(g, "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{\"city\":\"Oslo\"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>"));
  EXPECT_TRUE(matches(g, "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>noop\n```json\n{}\n```<｜tool▁call▁end｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>noop\n```json\n{\"x\":[]}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>"));
  EXPECT_FALSE(matches(g, "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{\"town\":\"Oslo\"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>"));
  EXPECT_FALSE(matches(g, "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>other\n```json\n{}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>"));
}

TEST(GrammarCache, CompilesOncePerDistinctText) {
  GrammarCache cache(small_vocab(), 2);
  bool hit = true;
  auto a = cache.get(req(GrammarRequest::Kind::Regex, "a+"), &hit);
  EXPECT_FALSE(hit);
  auto b = cache.get(req(GrammarRequest::Kind::Regex, "a+"), &hit);
  EXPECT_TRUE(hit);
  EXPECT_EQ(a.get(), b.get());
  cache.get(req(GrammarRequest::Kind::Regex, "b+"), &hit);
  cache.get(req(GrammarRequest::Kind::Regex, "c+"), &hit);
  EXPECT_EQ(cache.size(), 2u);
  cache.get(req(GrammarRequest::Kind::Regex, "a+"), &hit);
  EXPECT_FALSE(hit);  // evicted
}
