// A grammar ready to constrain decoding: its pushdown automaton and, for every state that reads
// bytes, the tokens it allows whatever the stack below it holds (a bitmask or a list), plus the
// few tokens whose fate depends on that stack (they may run past the end of the state's rule and
// are checked against the real stack at run time), as XGrammar does. Immutable once built: shared
// by every request that uses the same grammar.
#pragma once
#include <cstdint>
#include <memory>
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

struct CompiledGrammar {
  Automaton automaton;
  std::shared_ptr<const Vocabulary> vocab;
  std::vector<StateTokens> tokens;   // [state]
  double automaton_ms = 0, masks_ms = 0;

  size_t memory_bytes() const;
};

// Compiles g for vocab (throws GrammarError).
std::shared_ptr<const CompiledGrammar> compile_grammar(const Grammar& g, std::shared_ptr<const Vocabulary> vocab,
                                                       const CompileLimits& limits = {});

}  // namespace dsserve::grammar
