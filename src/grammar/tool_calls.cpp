// The DeepSeek-V3 tool-call grammar (see tool_calls.h).
#include "grammar/tool_calls.h"

#include <fmt/format.h>

#include "grammar/json_schema.h"

namespace dsserve::grammar {

void build_tool_call_grammar(Grammar& g, const std::vector<ToolSpec>& tools, int max_calls) {
  std::vector<ExprId> calls;
  for (size_t i = 0; i < tools.size(); ++i) {
    const ToolSpec& t = tools[i];
    ExprId args;
    if (t.parameters.is_null()) {
      args = json_schema_expr(g, nlohmann::ordered_json{{"type", "object"}}, fmt::format("tools[{}].function.parameters", i));
    } else {
      args = json_schema_expr(g, t.parameters, fmt::format("tools[{}].function.parameters", i));
    }
    calls.push_back(g.seq({g.bytes("<｜tool▁call▁begin｜>function<｜tool▁sep｜>" + t.name + "\n```json\n"), args,
                           g.bytes("\n```<｜tool▁call▁end｜>")}));
  }
  ExprId call = g.alt(calls);
  g.root = g.declare_rule("root");
  g.define_rule(g.root, g.seq({g.bytes("<｜tool▁calls▁begin｜>"), g.repeat(call, 1, std::max(1, max_calls)),
                               g.bytes("<｜tool▁calls▁end｜>")}));
}

}  // namespace dsserve::grammar
