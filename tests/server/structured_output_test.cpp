// Structured output in the server: request fields -> grammars (one source at most, errors naming the
// field), and a request's constraint with the reasoning phase (free until </think>, then the
// grammar; a token that closes the reasoning must carry bytes the grammar accepts; rollback).
#include <gtest/gtest.h>

#include "grammar/grammar_cache.h"
#include "server/api_error.h"
#include "server/grammar_constraint.h"
#include "server/request_parsing.h"

using namespace dsserve;
using namespace dsserve::server;

namespace {

std::shared_ptr<const grammar::Vocabulary> vocab() {
  static auto v = [] {
    std::vector<std::string> t;
    for (int b = 0; b < 256; ++b) t.push_back(std::string(1, char(b)));
    for (const char* s : {"</think>", "think", "</", ">{", ">x", ">\n\n", "{\"", "\"}", "ok", "</think>\n{"}) t.push_back(s);
    t.push_back("");  // a special token
    return std::make_shared<grammar::Vocabulary>(std::move(t));
  }();
  return v;
}

int32_t id_of(const std::string& s) {
  for (int32_t i = 256; i < vocab()->size(); ++i)
    if (vocab()->bytes(i) == s) return i;
  return uint8_t(s[0]);
}

bool allowed(const std::vector<uint32_t>& bits, int32_t t) { return bits[size_t(t) >> 5] >> (t & 31) & 1; }

std::shared_ptr<const grammar::CompiledGrammar> object_grammar() {
  grammar::GrammarRequest r;
  r.kind = grammar::GrammarRequest::Kind::JsonSchema;
  r.text = R"({"type":"object","properties":{"a":{"type":"string","maxLength":2}},"required":["a"]})";
  return grammar::compile_grammar(grammar::build_grammar(r), vocab());
}

}  // namespace

TEST(StructuredOutput, RequestFieldsBecomeGrammars) {
  ChatRequest c = parse_chat_request(json::parse(R"({"messages":[{"role":"user","content":"x"}],
      "response_format":{"type":"json_schema","json_schema":{"name":"n","schema":{"type":"integer"}}}})"));
  ASSERT_TRUE(c.common.structured);
  EXPECT_EQ(c.common.structured->grammar.kind, grammar::GrammarRequest::Kind::JsonSchema);
  EXPECT_EQ(c.common.structured->grammar.text, R"({"type":"integer"})");
  c = parse_chat_request(json::parse(R"({"messages":[{"role":"user","content":"x"}],"response_format":{"type":"text"}})"));
  EXPECT_FALSE(c.common.structured);
  c = parse_chat_request(json::parse(R"({"messages":[{"role":"user","content":"x"}],"tool_choice":"required",
      "tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}},{"type":"function","function":{"name":"g"}}]})"));
  ASSERT_TRUE(c.common.structured);
  EXPECT_EQ(c.common.structured->grammar.kind, grammar::GrammarRequest::Kind::ToolCalls);
  EXPECT_EQ(c.common.structured->grammar.tools.size(), 2u);
  EXPECT_EQ(c.common.structured->grammar.max_calls, 8);
  NativeGenerateRequest g = parse_generate_request(json::parse(R"({"text":["a","b"],"sampling_params":[{"regex":"a+"},{"ebnf":"root ::= \"x\""}]})"), 16);
  ASSERT_TRUE(g.items[0].structured && g.items[1].structured);
  EXPECT_EQ(g.items[0].structured->param, "sampling_params[0].regex");
  EXPECT_EQ(g.items[1].structured->grammar.kind, grammar::GrammarRequest::Kind::Ebnf);
}

TEST(StructuredOutput, OnlyOneSourceAndClearErrors) {
  auto param_of = [](const char* body, bool chat) {
    try {
      if (chat) parse_chat_request(json::parse(body));
      else parse_generate_request(json::parse(body), 16);
    } catch (const ApiError& e) {
      EXPECT_EQ(e.status, 400);
      return e.param.value_or("");
    }
    return std::string("no error");
  };
  EXPECT_EQ(param_of(R"({"messages":[{"role":"user","content":"x"}],"regex":"a","response_format":{"type":"json_object"}})", true),
            "response_format");
  EXPECT_EQ(param_of(R"({"text":"a","sampling_params":{"json_schema":"{}","regex":"a"}})", false), "sampling_params.regex");
  EXPECT_EQ(param_of(R"({"text":"a","sampling_params":{"structural_tag":"{}"}})", false), "sampling_params.structural_tag");
  EXPECT_EQ(param_of(R"({"messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema"}})", true),
            "response_format.json_schema");
  EXPECT_EQ(param_of(R"({"messages":[{"role":"user","content":"x"}],"response_format":{"type":"grammar"}})", true),
            "response_format.type");
}

TEST(GrammarConstraintTest, GrammarFromTheStart) {
  GrammarConstraint c(object_grammar(), false);
  std::vector<uint32_t> bits(size_t(vocab()->words()));
  ASSERT_TRUE(c.fill_next_tokens(bits));
  EXPECT_TRUE(allowed(bits, id_of("{\"")));
  EXPECT_FALSE(allowed(bits, id_of("ok")));
  EXPECT_FALSE(c.can_end());
  EXPECT_FALSE(c.accept(id_of("ok")));
  for (const char* t : {"{\"", "a", "\"", ":", "\"", "x", "\"}"}) ASSERT_TRUE(c.accept(id_of(t))) << t;
  EXPECT_TRUE(c.can_end());
  EXPECT_TRUE(c.is_complete());
  c.rollback(1);
  EXPECT_FALSE(c.can_end());
}

TEST(GrammarConstraintTest, FreeUntilThinkEndsThenTheGrammar) {
  GrammarConstraint c(object_grammar(), true);
  std::vector<uint32_t> bits(size_t(vocab()->words()));
  EXPECT_TRUE(c.can_end());
  EXPECT_FALSE(c.is_complete());
  // Thinking: free, except tokens that close the reasoning with bytes the grammar cannot start with.
  ASSERT_TRUE(c.accept(id_of("ok")));
  ASSERT_TRUE(c.accept(id_of("</")));
  ASSERT_TRUE(c.accept(id_of("think")));
  ASSERT_TRUE(c.fill_next_tokens(bits));
  EXPECT_TRUE(allowed(bits, id_of(">")));
  EXPECT_TRUE(allowed(bits, id_of(">{")));
  EXPECT_TRUE(allowed(bits, id_of(">\n\n")));
  EXPECT_FALSE(allowed(bits, id_of(">x")));
  EXPECT_TRUE(allowed(bits, id_of("ok")));
  ASSERT_TRUE(c.accept(id_of(">{")));
  EXPECT_FALSE(c.thinking());
  ASSERT_TRUE(c.fill_next_tokens(bits));
  EXPECT_TRUE(allowed(bits, id_of("\"")));
  EXPECT_FALSE(allowed(bits, id_of("{\"")));
  EXPECT_FALSE(c.can_end());
  c.rollback(1);
  EXPECT_TRUE(c.thinking());
  ASSERT_TRUE(c.accept(id_of(">")));
  EXPECT_FALSE(c.thinking());
  ASSERT_TRUE(c.accept(id_of("{\"")));
  // Before any tag, the whole </think> token also switches.
  GrammarConstraint d(object_grammar(), true);
  ASSERT_TRUE(d.accept(id_of("</think>\n{")));
  EXPECT_FALSE(d.thinking());
  EXPECT_TRUE(d.accept(id_of("\"")));
  EXPECT_FALSE(d.accept(vocab()->size() - 1));  // a special token once the grammar applies
}
