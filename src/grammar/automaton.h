// A grammar compiled to a pushdown automaton over bytes: each rule that must stay a rule (the root
// and every recursive rule; other rules are inlined where they are used, up to a size budget)
// becomes a minimal DFA whose edges read a byte class or call another rule (push; the DFA state to
// return to rides on the stack). States of all rules share one numbering.
#pragma once
#include <array>
#include <bitset>
#include <cstdint>
#include <string>
#include <vector>

#include "grammar/expr.h"

namespace dsserve::grammar {

struct RuleCall {
  int32_t rule;      // the rule called
  int32_t return_to; // the caller's state once the called rule has matched
};

struct Automaton {
  int num_classes = 0;
  std::array<uint8_t, 256> byte_class{};  // byte -> class
  std::vector<int32_t> next;              // [state][class] -> state, -1: no edge
  std::vector<uint8_t> accepting;         // [state]: the rule may end here
  std::vector<uint8_t> reads_bytes;       // [state]: some byte edge leaves it
  std::vector<std::vector<RuleCall>> calls;  // [state]
  std::vector<int32_t> state_rule;        // [state] -> rule
  std::vector<int32_t> rule_start;        // [rule] -> start state, -1: the rule is always inlined
  std::vector<std::string> rule_names;
  std::vector<std::bitset<256>> follow;   // [rule]: bytes that can come right after the rule ends
  int32_t root_rule = -1;

  int num_states() const { return int(accepting.size()); }
  int32_t step(int32_t state, uint8_t byte) const { return next[size_t(state) * num_classes + byte_class[byte]]; }
};

struct CompileLimits {
  int inline_budget = 4000;     // NFA states: a non-recursive rule larger than this stays a rule
  int max_states = 200000;      // DFA states of the whole grammar
};

// Throws GrammarError (undefined rules, left recursion, a grammar too large, an empty language).
Automaton compile_automaton(const Grammar& g, const CompileLimits& limits = {});

}  // namespace dsserve::grammar
