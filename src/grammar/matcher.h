// One request's position in a compiled grammar: the set of pushdown stacks (persistent frames,
// shared and interned) that the text so far can be in. It says which tokens may come next (a
// bitmask over the vocabulary), takes the token chosen, can undo the last tokens (speculative
// drafts), and says whether the text may end here. Not thread-safe; one per request.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "grammar/compiled_grammar.h"
#include "grammar/stack_walk.h"

namespace dsserve::grammar {

class Matcher {
 public:
  explicit Matcher(std::shared_ptr<const CompiledGrammar> grammar);

  // Sets the bit of every token that may come next (bit t % 32 of word t / 32) and clears the
  // others; `bits` holds vocab().words() words. End-of-text tokens are not included: see can_end().
  void fill_next_token_bitmask(std::span<uint32_t> bits) const;
  // Advances over the token's bytes; false (and no change) when the grammar does not allow them.
  bool accept_token(int32_t token);
  bool accept_bytes(std::string_view bytes);
  // Undoes the last `count` accepted tokens (or byte strings).
  void rollback(int count);
  int accepted_count() const { return int(history_.size()) - 1; }

  bool can_end() const { return history_.back().can_end; }
  // The text may end here and nothing else may follow.
  bool is_complete() const;

  const CompiledGrammar& grammar() const { return *g_; }

 private:
  struct Position {
    std::vector<int32_t> frames;  // closed: calls expanded, ended rules popped
    bool can_end = false;
  };
  int32_t frame(int32_t state, int32_t parent);
  Position close(std::vector<int32_t> seeds);

  std::shared_ptr<const CompiledGrammar> g_;
  std::vector<StackNode> nodes_;
  std::unordered_map<uint64_t, int32_t> index_;
  std::vector<Position> history_;  // back(): now
  mutable std::vector<uint32_t> seen_;
  mutable uint32_t epoch_ = 0;
};

}  // namespace dsserve::grammar
