// DeepSeek-V3's tool-call format as a grammar, with each call's arguments valid against its tool's
// JSON schema:
//   <｜tool▁calls▁begin｜>(<｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\n```json\nARGS\n```<｜tool▁call▁end｜>)+<｜tool▁calls▁end｜>
// (one call, or up to max_calls). The markers are plain text to the grammar; the model's vocabulary
// has a token for each.
#pragma once
#include <nlohmann/json.hpp>

#include "grammar/expr.h"

namespace dsserve::grammar {

struct ToolSpec {
  std::string name;
  nlohmann::ordered_json parameters;  // a JSON schema; null: any object
};

// Sets g.root. Throws GrammarError naming the tool whose schema is unsupported.
void build_tool_call_grammar(Grammar& g, const std::vector<ToolSpec>& tools, int max_calls);

}  // namespace dsserve::grammar
