// Byte walks over explicit stacks (see stack_walk.h).
#include "grammar/stack_walk.h"

#include <algorithm>

namespace dsserve::grammar {

void walk_closure(const Automaton& a, const std::vector<StackNode>& nodes, std::vector<WalkConfig>& configs,
                  WalkFlags& flags) {
  for (size_t i = 0; i < configs.size(); ++i) {
    const int32_t top = configs[i].local.back();
    auto add = [&](WalkConfig c) {
      if (std::find(configs.begin(), configs.end(), c) == configs.end()) configs.push_back(std::move(c));
    };
    for (const RuleCall& rc : a.calls[size_t(top)]) {
      WalkConfig c = configs[i];
      c.local.back() = rc.return_to;
      c.local.push_back(a.rule_start[size_t(rc.rule)]);
      add(std::move(c));
    }
    if (!a.accepting[size_t(top)]) continue;
    if (configs[i].local.size() > 1) {
      WalkConfig c = configs[i];
      c.local.pop_back();
      add(std::move(c));
    } else if (configs[i].base >= 0) {
      const StackNode& n = nodes[size_t(configs[i].base)];
      add(WalkConfig{{n.state}, n.parent});
    } else if (configs[i].base == kGrammarEnd) {
      flags.at_end = true;
    } else {
      flags.at_boundary = true;
    }
  }
}

std::vector<WalkConfig> walk_byte(const Automaton& a, const std::vector<StackNode>& nodes,
                                  const std::vector<WalkConfig>& configs, uint8_t byte, WalkFlags& flags) {
  std::vector<WalkConfig> out;
  for (const WalkConfig& c : configs) {
    const int32_t t = a.step(c.local.back(), byte);
    if (t < 0) continue;
    WalkConfig n = c;
    n.local.back() = t;
    if (std::find(out.begin(), out.end(), n) == out.end()) out.push_back(std::move(n));
  }
  walk_closure(a, nodes, out, flags);
  return out;
}

bool walk_accepts(const Automaton& a, const std::vector<StackNode>& nodes, int32_t node, std::string_view bytes) {
  std::vector<WalkConfig> configs = {WalkConfig{{nodes[size_t(node)].state}, nodes[size_t(node)].parent}};
  WalkFlags flags;
  walk_closure(a, nodes, configs, flags);
  for (char b : bytes) {
    configs = walk_byte(a, nodes, configs, uint8_t(b), flags);
    if (configs.empty()) return false;
  }
  return true;
}

}  // namespace dsserve::grammar
