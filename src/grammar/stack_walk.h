// Walking bytes through the pushdown automaton from explicit stacks: the token-mask precomputation
// (from one state, with a boundary below it) and the matcher's check of a token that may leave the
// current rule (from a state with the matcher's real stack below it) share it.
#pragma once
#include <cstdint>
#include <string_view>
#include <vector>

#include "grammar/automaton.h"

namespace dsserve::grammar {

// A frame of a persistent stack: a state and the frame to continue with once its rule ends.
struct StackNode {
  int32_t state;
  int32_t parent;  // -1: the grammar's end
};

constexpr int32_t kGrammarEnd = -1;  // below the root rule
constexpr int32_t kBoundary = -2;    // below the state a precomputation starts from

// local.back() is the current state; local[i] (i < back) the states to return to, innermost last;
// base is the persistent frame that continues once local[0]'s rule ends (or a sentinel).
struct WalkConfig {
  std::vector<int32_t> local;
  int32_t base;
  bool operator==(const WalkConfig& o) const { return base == o.base && local == o.local; }
};

struct WalkFlags {
  bool at_end = false;       // some configuration may end the grammar here
  bool at_boundary = false;  // some configuration may leave the precomputed state's rule here
};

// Expands calls and rule ends (pops) of `configs` in place, without duplicates.
void walk_closure(const Automaton& a, const std::vector<StackNode>& nodes, std::vector<WalkConfig>& configs,
                  WalkFlags& flags);
// The configurations after reading `byte` (closed), from closed `configs`.
std::vector<WalkConfig> walk_byte(const Automaton& a, const std::vector<StackNode>& nodes,
                                  const std::vector<WalkConfig>& configs, uint8_t byte, WalkFlags& flags);
// Whether all of `bytes` can be read from the frame `node` (with its stack).
bool walk_accepts(const Automaton& a, const std::vector<StackNode>& nodes, int32_t node, std::string_view bytes);

}  // namespace dsserve::grammar
