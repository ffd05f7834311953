// The per-request pushdown matcher (see matcher.h).
#include "grammar/matcher.h"

#include <algorithm>
#include <cstring>

namespace dsserve::grammar {

Matcher::Matcher(std::shared_ptr<const CompiledGrammar> grammar) : g_(std::move(grammar)) {
  const Automaton& a = g_->automaton;
  history_.push_back(close({frame(a.rule_start[size_t(a.root_rule)], kGrammarEnd)}));
}

int32_t Matcher::frame(int32_t state, int32_t parent) {
  const uint64_t key = (uint64_t(uint32_t(state)) << 32) | uint32_t(parent);
  auto [it, fresh] = index_.emplace(key, int32_t(nodes_.size()));
  if (fresh) nodes_.push_back({state, parent});
  return it->second;
}

Matcher::Position Matcher::close(std::vector<int32_t> seeds) {
  const Automaton& a = g_->automaton;
  Position p;
  ++epoch_;
  std::vector<int32_t>& out = p.frames;
  auto add = [&](int32_t f) {
    if (seen_.size() < nodes_.size()) seen_.resize(nodes_.size() * 2 + 16, 0);
    if (seen_[size_t(f)] == epoch_) return;
    seen_[size_t(f)] = epoch_;
    out.push_back(f);
  };
  for (int32_t f : seeds) add(f);
  for (size_t i = 0; i < out.size(); ++i) {
    const StackNode n = nodes_[size_t(out[i])];
    for (const RuleCall& rc : a.calls[size_t(n.state)]) {
      const int32_t ret = frame(rc.return_to, n.parent);
      add(frame(a.rule_start[size_t(rc.rule)], ret));
    }
    if (a.accepting[size_t(n.state)]) {
      if (n.parent >= 0) add(n.parent);
      else p.can_end = true;
    }
  }
  return p;
}

bool Matcher::accept_bytes(std::string_view bytes) {
  const Automaton& a = g_->automaton;
  Position cur = history_.back();
  for (char c : bytes) {
    std::vector<int32_t> next;
    for (int32_t f : cur.frames) {
      const StackNode n = nodes_[size_t(f)];
      const int32_t t = a.step(n.state, uint8_t(c));
      if (t >= 0) next.push_back(frame(t, n.parent));
    }
    if (next.empty()) return false;
    cur = close(std::move(next));
  }
  history_.push_back(std::move(cur));
  return true;
}

bool Matcher::accept_token(int32_t token) {
  if (token < 0 || token >= g_->vocab->size()) return false;
  const std::string& b = g_->vocab->bytes(token);
  if (b.empty()) return false;
  return accept_bytes(b);
}

void Matcher::rollback(int count) {
  count = std::min(count, accepted_count());
  history_.resize(history_.size() - size_t(std::max(count, 0)));
}

bool Matcher::is_complete() const {
  if (!can_end()) return false;
  for (int32_t f : history_.back().frames)
    if (g_->automaton.reads_bytes[size_t(nodes_[size_t(f)].state)]) return false;
  return true;
}

void Matcher::fill_next_token_bitmask(std::span<uint32_t> bits) const {
  const Automaton& a = g_->automaton;
  const Vocabulary& v = *g_->vocab;
  std::memset(bits.data(), 0, bits.size() * sizeof(uint32_t));
  std::vector<int32_t> states_done;
  for (int32_t f : history_.back().frames) {
    const StackNode n = nodes_[size_t(f)];
    if (!a.reads_bytes[size_t(n.state)]) continue;
    const StateTokens& st = g_->tokens_of(n.state);
    if (std::find(states_done.begin(), states_done.end(), g_->token_class[size_t(n.state)]) == states_done.end()) {
      states_done.push_back(g_->token_class[size_t(n.state)]);
      if (!st.dense.empty()) {
        const size_t w = std::min(bits.size(), st.dense.size());
        for (size_t i = 0; i < w; ++i) bits[i] |= st.dense[i];
      } else {
        for (int32_t t : st.sparse) bits[size_t(t) >> 5] |= 1u << (t & 31);
      }
    }
    for (int32_t t : st.uncertain) {
      uint32_t& word = bits[size_t(t) >> 5];
      const uint32_t bit = 1u << (t & 31);
      if (!(word & bit) && walk_accepts(a, nodes_, f, v.bytes(t))) word |= bit;
    }
  }
}

}  // namespace dsserve::grammar
