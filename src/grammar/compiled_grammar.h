// A grammar ready to constrain decoding: its pushdown automaton and, for every state that reads
// bytes, the tokens it allows whatever the stack below it holds (a bitmask or a list), plus the
// few tokens whose fate depends on that stack (they may run past the end of the state's rule and
// are checked against the real stack at run time), as XGrammar does. States that no string of up
// to the longest token's length tells apart share one set (long bounded repetitions make many such
// states). Sets are computed at compile time within a time budget, the rest once on first use.
// Shared by every request that uses the same grammar.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "grammar/automaton.h"
#include "grammar/expr.h"
#include "grammar/vocabulary.h"

namespace dsserve::grammar {

struct StateTokens {
  std::vector<uint32_t> dense;       // bitmask over the vocabulary, or empty: see sparse
  std::vector<int32_t> sparse;       // tokens allowed (when dense is empty)
  std::vector<int32_t> uncertain;    // tokens to check against the stack
};

class CompiledGrammar {
 public:
  Automaton automaton;
  std::shared_ptr<const Vocabulary> vocab;
  // States that no string as long as the longest token tells apart share their token sets.
  std::vector<int32_t> token_class;  // [state]
  double automaton_ms = 0, masks_ms = 0;
  int eager_classes = 0;             // token sets computed at compile time (the rest on first use)

  // The token sets of a state that reads bytes; computed on first use when compilation left them
  // (thread-safe).
  const StateTokens& tokens_of(int32_t state) const;
  int num_classes() const { return int(class_state_.size()); }
  size_t memory_bytes() const;

 private:
  friend std::shared_ptr<const CompiledGrammar> compile_grammar(const Grammar&, std::shared_ptr<const Vocabulary>,
                                                                const CompileLimits&);
  StateTokens compute(int32_t cls) const;

  std::vector<int32_t> class_state_;                        // [class] -> a state of it
  std::vector<uint8_t> rule_calls_;                         // [rule]: the rule's states call rules
  mutable std::vector<std::unique_ptr<StateTokens>> sets_;  // [class]
  mutable std::unique_ptr<std::atomic<bool>[]> ready_;      // [class]
  mutable std::mutex mu_;
};

// Compiles g for vocab (throws GrammarError).
std::shared_ptr<const CompiledGrammar> compile_grammar(const Grammar& g, std::shared_ptr<const Vocabulary> vocab,
                                                       const CompileLimits& limits = {});

}  // namespace dsserve::grammar
