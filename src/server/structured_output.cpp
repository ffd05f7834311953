// Request fields -> grammars -> per-request constraints (see structured_output.h).
#include "server/structured_output.h"

#include <algorithm>
#include <mutex>

#include "grammar/grammar_error.h"
#include "grammar/matcher.h"
#include "server/api_error.h"
#include "server/grammar_constraint.h"

namespace dsserve::server {

void set_structured_output(std::optional<StructuredOutput>& current, StructuredOutput next) {
  if (current)
    bad_request(next.param, "'{}' and '{}' both constrain the output: send only one", current->param, next.param);
  current = std::move(next);
}

std::optional<StructuredOutput> parse_response_format(const nlohmann::json& rf) {
  if (!rf.is_object()) bad_request("response_format", "'response_format' must be an object");
  auto type_it = rf.find("type");
  const std::string type = type_it != rf.end() && type_it->is_string() ? type_it->get<std::string>() : "";
  StructuredOutput so;
  so.param = "response_format";
  if (type == "text") return std::nullopt;
  if (type == "json_object") {
    so.grammar.kind = grammar::GrammarRequest::Kind::JsonObject;
    return so;
  }
  if (type == "json_schema") {
    auto js = rf.find("json_schema");
    if (js == rf.end() || !js->is_object())
      bad_request("response_format.json_schema", "response_format of type 'json_schema' needs a 'json_schema' object");
    auto schema = js->find("schema");
    if (schema == js->end() || schema->is_null())
      bad_request("response_format.json_schema.schema", "'response_format.json_schema.schema' is required");
    so.param = "response_format.json_schema.schema";
    so.grammar.kind = grammar::GrammarRequest::Kind::JsonSchema;
    so.grammar.text = schema->dump();
    return so;
  }
  bad_request("response_format.type", "response_format type '{}' is not supported (text, json_object, json_schema)", type);
}

std::optional<StructuredOutput> parse_sglang_constraint(const nlohmann::json& obj, const std::string& prefix) {
  std::optional<StructuredOutput> out;
  auto field = [&](const char* key, grammar::GrammarRequest::Kind kind) {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return;
    StructuredOutput so;
    so.param = prefix + key;
    so.grammar.kind = kind;
    if (it->is_string()) so.grammar.text = it->get<std::string>();
    else if (kind == grammar::GrammarRequest::Kind::JsonSchema && (it->is_object() || it->is_boolean()))
      so.grammar.text = it->dump();
    else bad_request(so.param, "'{}' must be a string", so.param);
    set_structured_output(out, std::move(so));
  };
  field("json_schema", grammar::GrammarRequest::Kind::JsonSchema);
  field("regex", grammar::GrammarRequest::Kind::Regex);
  field("ebnf", grammar::GrammarRequest::Kind::Ebnf);
  if (auto it = obj.find("structural_tag"); it != obj.end() && !it->is_null())
    bad_request(prefix + "structural_tag", "'{}structural_tag' is not supported: use json_schema, regex or ebnf", prefix);
  return out;
}

StructuredOutput tool_call_output(const nlohmann::ordered_json& tools, const std::string& only_name,
                                  bool parallel_tool_calls) {
  StructuredOutput so;
  so.param = "tool_choice";
  so.grammar.kind = grammar::GrammarRequest::Kind::ToolCalls;
  so.grammar.max_calls = only_name.empty() && parallel_tool_calls ? 8 : 1;
  for (const auto& t : tools) {
    const auto& fn = t["function"];
    const std::string name = fn["name"].get<std::string>();
    if (!only_name.empty() && name != only_name) continue;
    auto params = fn.find("parameters");
    so.grammar.tools.push_back({name, params == fn.end() ? nlohmann::ordered_json(nullptr) : *params});
  }
  return so;
}

namespace {

std::shared_ptr<grammar::GrammarCache> grammar_cache(ServerContext& ctx) {
  static std::mutex mu;
  std::lock_guard lk(mu);
  if (!ctx.grammar_cache) {
    const int n = ctx.engine.vocab_size();
    std::vector<std::string> bytes(static_cast<size_t>(n));
    for (int i = 0; i < n && i < ctx.tokenizer->vocab_size(); ++i)
      if (!ctx.tokenizer->is_special(i)) bytes[size_t(i)] = ctx.tokenizer->token_bytes(i);
    ctx.grammar_cache = std::make_shared<grammar::GrammarCache>(std::make_shared<grammar::Vocabulary>(std::move(bytes)));
  }
  return ctx.grammar_cache;
}

}  // namespace

std::shared_ptr<const grammar::CompiledGrammar> compile_structured_output(ServerContext& ctx, const StructuredOutput& so) {
  if (!ctx.tokenizer)
    bad_request(so.param, "structured output needs the tokenizer (the server runs with --skip-tokenizer-init)");
  try {
    return grammar_cache(ctx)->get(so.grammar);
  } catch (const grammar::GrammarError& e) {
    throw ApiError(400, fmt::format("invalid {}: {}", so.param, e.what()), "invalid_request_error", so.param);
  }
}

std::shared_ptr<TokenConstraint> make_constraint(std::shared_ptr<const grammar::CompiledGrammar> g, bool after_think) {
  return std::make_shared<GrammarConstraint>(std::move(g), after_think);
}

}  // namespace dsserve::server
