// One engine request's constraint (runtime/token_constraint.h) on a compiled grammar: a matcher,
// and for reasoning models a free phase that lasts until the text says </think> (the grammar then
// applies to what follows; a token that closes the reasoning may carry the output's first bytes,
// after optional whitespace, and is allowed only if the grammar accepts them).
#pragma once
#include <memory>
#include <vector>

#include "grammar/matcher.h"
#include "runtime/token_constraint.h"

namespace dsserve::server {

class GrammarConstraint final : public TokenConstraint {
 public:
  GrammarConstraint(std::shared_ptr<const grammar::CompiledGrammar> g, bool after_think);

  bool fill_next_tokens(std::span<uint32_t> allowed) override;
  bool can_end() const override { return thinking_ || m_.can_end(); }
  bool is_complete() const override { return !thinking_ && m_.is_complete(); }
  bool accept(int32_t token) override;
  void rollback(int tokens) override;

  bool thinking() const { return thinking_; }

 private:
  struct Before {
    bool thinking;
    int matched;
    int matcher_steps;
  };
  // While thinking: where "</think>" ends within `bytes` read after `matched` tag bytes (npos:
  // nowhere); `matched` becomes the tag bytes matched at the end.
  static size_t scan_tag(std::string_view bytes, int& matched);

  grammar::Matcher m_;
  bool thinking_;
  int matched_ = 0;
  std::vector<Before> history_;
  const std::vector<int32_t>* closers_ = nullptr;  // tokens holding '>' (they may close the reasoning)
};

}  // namespace dsserve::server
