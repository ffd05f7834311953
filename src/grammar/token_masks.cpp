// The per-state token sets of a compiled grammar (see compiled_grammar.h). For each state that reads
// bytes, the vocabulary trie is walked in preorder from that state with a boundary below it: a
// token whose bytes can all be read without leaving the state's rule is allowed; one that can only
// go on by leaving the rule (its rule may end after at least one byte, and the next byte can follow
// the rule somewhere) is uncertain; the rest are rejected, and a rejected prefix skips its subtree.
// Rules without calls walk one DFA state per trie depth; rules with calls walk sets of stacks.
#include <chrono>

#include "grammar/compiled_grammar.h"
#include "grammar/stack_walk.h"

namespace dsserve::grammar {

namespace {

struct Collector {
  const Vocabulary& v;
  std::vector<int32_t> accepted, uncertain;

  void accept_node(const Vocabulary::TrieNode& n) {
    for (int32_t k = 0; k < n.num_tokens; ++k) accepted.push_back(v.tokens_at()[size_t(n.first_token + k)]);
  }
  void uncertain_subtree(int32_t i) {
    const auto& nodes = v.trie();
    for (int32_t j = i; j < nodes[size_t(i)].subtree_end; ++j)
      for (int32_t k = 0; k < nodes[size_t(j)].num_tokens; ++k)
        uncertain.push_back(v.tokens_at()[size_t(nodes[size_t(j)].first_token + k)]);
  }
};

// A rule without calls: one state per depth.
void walk_plain(const Automaton& a, int32_t start, Collector& out) {
  const auto& nodes = out.v.trie();
  const auto& follow = a.follow[size_t(a.state_rule[size_t(start)])];
  std::vector<int32_t> state(64, -1);
  std::vector<uint8_t> escape(64, 0);
  state[0] = start;
  for (size_t i = 0; i < nodes.size();) {
    const Vocabulary::TrieNode& n = nodes[i];
    const size_t d = size_t(n.depth);
    if (d >= state.size()) state.resize(d * 2, -1), escape.resize(d * 2, 0);
    const int32_t from = state[d - 1];
    const bool esc = escape[d - 1] || (d >= 2 && a.accepting[size_t(from)] && follow.test(n.byte));
    const int32_t t = a.step(from, n.byte);
    if (t < 0) {
      if (esc) out.uncertain_subtree(int32_t(i));
      i = size_t(n.subtree_end);
      continue;
    }
    state[d] = t;
    escape[d] = esc;
    out.accept_node(n);
    ++i;
  }
}

// A rule with calls: sets of stacks per depth.
void walk_stacks(const Automaton& a, int32_t start, Collector& out) {
  const auto& nodes = out.v.trie();
  const std::vector<StackNode> none;
  std::vector<std::vector<WalkConfig>> sets(64);
  std::vector<uint8_t> escape(64, 0), boundary(64, 0);
  sets[0] = {WalkConfig{{start}, kBoundary}};
  WalkFlags f0;
  walk_closure(a, none, sets[0], f0);
  boundary[0] = f0.at_boundary;
  const auto& follow = a.follow[size_t(a.state_rule[size_t(start)])];
  for (size_t i = 0; i < nodes.size();) {
    const Vocabulary::TrieNode& n = nodes[i];
    const size_t d = size_t(n.depth);
    if (d >= sets.size()) sets.resize(d * 2), escape.resize(d * 2, 0), boundary.resize(d * 2, 0);
    const bool esc = escape[d - 1] || (d >= 2 && boundary[d - 1] && follow.test(n.byte));
    WalkFlags f;
    sets[d] = walk_byte(a, none, sets[d - 1], n.byte, f);
    if (sets[d].empty()) {
      if (esc) out.uncertain_subtree(int32_t(i));
      i = size_t(n.subtree_end);
      continue;
    }
    escape[d] = esc;
    boundary[d] = f.at_boundary;
    out.accept_node(n);
    ++i;
  }
}

}  // namespace

size_t CompiledGrammar::memory_bytes() const {
  size_t b = automaton.next.size() * 4 + automaton.accepting.size() * 8;
  for (const StateTokens& t : tokens) b += t.dense.size() * 4 + t.sparse.size() * 4 + t.uncertain.size() * 4;
  return b;
}

std::shared_ptr<const CompiledGrammar> compile_grammar(const Grammar& g, std::shared_ptr<const Vocabulary> vocab,
                                                       const CompileLimits& limits) {
  auto t0 = std::chrono::steady_clock::now();
  auto cg = std::make_shared<CompiledGrammar>();
  cg->automaton = compile_automaton(g, limits);
  cg->vocab = std::move(vocab);
  auto t1 = std::chrono::steady_clock::now();
  const Automaton& a = cg->automaton;
  std::vector<uint8_t> rule_calls(a.rule_start.size(), 0);
  for (int32_t s = 0; s < a.num_states(); ++s)
    if (!a.calls[size_t(s)].empty()) rule_calls[size_t(a.state_rule[size_t(s)])] = 1;
  cg->tokens.resize(size_t(a.num_states()));
  const int words = cg->vocab->words();
  for (int32_t s = 0; s < a.num_states(); ++s) {
    if (!a.reads_bytes[size_t(s)]) continue;
    Collector c{*cg->vocab, {}, {}};
    if (rule_calls[size_t(a.state_rule[size_t(s)])]) walk_stacks(a, s, c);
    else walk_plain(a, s, c);
    StateTokens& st = cg->tokens[size_t(s)];
    if (c.accepted.size() > size_t(words)) {
      st.dense.assign(size_t(words), 0);
      for (int32_t t : c.accepted) st.dense[size_t(t) >> 5] |= 1u << (t & 31);
    } else {
      st.sparse = std::move(c.accepted);
    }
    st.uncertain = std::move(c.uncertain);
  }
  auto t2 = std::chrono::steady_clock::now();
  cg->automaton_ms = std::chrono::duration<double, std::milli>(t1 - t0).count();
  cg->masks_ms = std::chrono::duration<double, std::milli>(t2 - t1).count();
  return cg;
}

}  // namespace dsserve::grammar
