// Structured output as requests ask for it: OpenAI's response_format (json_object, json_schema),
// SGLang's json_schema / regex / ebnf (sampling_params on /generate, top-level fields on the OpenAI
// routes), and forced tool calls (tool_choice "required" or a named function: DeepSeek-V3's
// tool-call format with arguments valid against the tool's schema). Each becomes a grammar,
// compiled once per distinct text (the server's GrammarCache), and each engine request gets its own
// constraint on it. With the deepseek-r1 reasoning parser the chat route's grammar starts after
// </think>. Bad grammars are 400s naming the field and the position.
#pragma once
#include <nlohmann/json.hpp>

#include <memory>
#include <optional>
#include <string>

#include "grammar/grammar_cache.h"
#include "runtime/token_constraint.h"
#include "server/server_context.h"

namespace dsserve::server {

// A grammar a request asks for, and the request field it came from (for errors).
struct StructuredOutput {
  grammar::GrammarRequest grammar;
  std::string param;
};

// At most one source may constrain a request: `current` is what an earlier field asked for.
void set_structured_output(std::optional<StructuredOutput>& current, StructuredOutput next);
// OpenAI's response_format (text: nothing).
std::optional<StructuredOutput> parse_response_format(const nlohmann::json& rf);
// SGLang's json_schema (a JSON string, or an object) / regex / ebnf fields of `obj`; `prefix`
// names their parent in errors ("sampling_params.").
std::optional<StructuredOutput> parse_sglang_constraint(const nlohmann::json& obj, const std::string& prefix);
// Forced tool calls over `tools` (OpenAI's list): all of them ("required"), or the named one.
StructuredOutput tool_call_output(const nlohmann::ordered_json& tools, const std::string& only_name,
                                  bool parallel_tool_calls);

// The compiled grammar (400 with the position when it is invalid or unsupported; the server must
// have a tokenizer).
std::shared_ptr<const grammar::CompiledGrammar> compile_structured_output(ServerContext& ctx, const StructuredOutput& so);
// One engine request's constraint on g; after_think: free until the text has said </think>.
std::shared_ptr<TokenConstraint> make_constraint(std::shared_ptr<const grammar::CompiledGrammar> g, bool after_think);

}  // namespace dsserve::server
