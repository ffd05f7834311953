// The per-state token sets of a compiled grammar (see compiled_grammar.h). For each state that reads
// bytes, the vocabulary trie is walked in preorder from that state with a boundary below it: a
// token whose bytes can all be read without leaving the state's rule is allowed; one that can only
// go on by leaving the rule (its rule may end after at least one byte, and the next byte can follow
// the rule somewhere) is uncertain; the rest are rejected, and a rejected prefix skips its subtree.
// Rules without calls walk one DFA state per trie depth; rules with calls walk sets of stacks.
// States equivalent up to the longest token share one walk; walks beyond a compile-time budget
// happen on first use.
#include <algorithm>
#include <chrono>
#include <unordered_map>

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

// Classes of states no string of at most `depth` bytes tells apart (Moore's refinement stopped at
// that depth, or earlier once stable): same rule, same ends, same calls, same moves. Signatures are
// 128-bit hashes of (class, the classes moved to).
std::vector<int32_t> bounded_classes(const Automaton& a, int depth) {
  const size_t n = size_t(a.num_states());
  struct Key {
    uint64_t h1, h2;
    bool operator==(const Key& o) const { return h1 == o.h1 && h2 == o.h2; }
  };
  struct KeyHash {
    size_t operator()(const Key& k) const { return size_t(k.h1 ^ (k.h2 * 0x9E3779B97F4A7C15ull)); }
  };
  auto mix = [](uint64_t h, uint64_t v, uint64_t m) {
    h ^= v + m + (h << 6) + (h >> 2);
    return h * 0xBF58476D1CE4E5B9ull ^ (h >> 31);
  };
  std::vector<int32_t> part(n), next(n);
  // Each state's moves grouped by target: (a hash of the byte classes leading there, target).
  std::vector<std::vector<std::pair<uint64_t, int32_t>>> moves(n);
  for (size_t st = 0; st < n; ++st) {
    std::vector<std::pair<int32_t, uint64_t>> by_target;
    for (int c = 0; c < a.num_classes; ++c) {
      const int32_t t = a.next[st * size_t(a.num_classes) + size_t(c)];
      if (t < 0) continue;
      auto it = std::find_if(by_target.begin(), by_target.end(), [&](auto& e) { return e.first == t; });
      if (it == by_target.end()) by_target.push_back({t, mix(0, uint64_t(c) + 1, 5)});
      else it->second = mix(it->second, uint64_t(c) + 1, 5);
    }
    for (auto& [t, h] : by_target) moves[st].push_back({h, t});
  }
  auto renumber = [&](auto key_of, std::vector<int32_t>& out) {
    std::unordered_map<Key, int32_t, KeyHash> ids;
    for (size_t st = 0; st < n; ++st) out[st] = ids.emplace(key_of(st), int32_t(ids.size())).first->second;
    return ids.size();
  };
  size_t count = renumber([&](size_t st) {
    return Key{mix(uint64_t(a.state_rule[st]), a.accepting[st], 1), mix(uint64_t(a.state_rule[st]) * 3 + 1, a.accepting[st], 7)};
  }, part);
  for (int it = 0; it < depth; ++it) {
    const size_t c2 = renumber([&](size_t st) {
      uint64_t h1 = uint64_t(part[st]) + 1, h2 = uint64_t(part[st]) * 31 + 17;
      uint64_t s1 = 0, s2 = 0;  // order-free sums over the moves
      for (auto& [classes, t] : moves[st]) {
        s1 += mix(classes, uint64_t(part[size_t(t)]) + 1, 11);
        s2 += mix(classes * 0x94D049BB133111EBull, uint64_t(part[size_t(t)]) + 3, 13);
      }
      h1 = mix(h1, s1, 17);
      h2 = mix(h2, s2, 19);
      for (const RuleCall& rc : a.calls[st]) {
        h1 = mix(h1, uint64_t(rc.rule) << 32 | uint32_t(part[size_t(rc.return_to)]), 99);
        h2 = mix(h2, uint64_t(part[size_t(rc.return_to)]) << 32 | uint32_t(rc.rule), 101);
      }
      return Key{h1, h2};
    }, next);
    part.swap(next);
    if (c2 == count) break;
    count = c2;
  }
  return part;
}

constexpr double kEagerBudgetMs = 40;  // token sets computed at compile time; the rest on first use

}  // namespace

StateTokens CompiledGrammar::compute(int32_t cls) const {
  const int32_t s = class_state_[size_t(cls)];
  Collector c{*vocab, {}, {}};
  if (rule_calls_[size_t(automaton.state_rule[size_t(s)])]) walk_stacks(automaton, s, c);
  else walk_plain(automaton, s, c);
  StateTokens st;
  const int words = vocab->words();
  if (c.accepted.size() > size_t(words)) {
    st.dense.assign(size_t(words), 0);
    for (int32_t t : c.accepted) st.dense[size_t(t) >> 5] |= 1u << (t & 31);
  } else {
    st.sparse = std::move(c.accepted);
  }
  st.uncertain = std::move(c.uncertain);
  return st;
}

const StateTokens& CompiledGrammar::tokens_of(int32_t state) const {
  const int32_t cls = token_class[size_t(state)];
  if (!ready_[size_t(cls)].load(std::memory_order_acquire)) {
    std::lock_guard lk(mu_);
    if (!ready_[size_t(cls)].load(std::memory_order_relaxed)) {
      sets_[size_t(cls)] = std::make_unique<StateTokens>(compute(cls));
      ready_[size_t(cls)].store(true, std::memory_order_release);
    }
  }
  return *sets_[size_t(cls)];
}

size_t CompiledGrammar::memory_bytes() const {
  size_t b = automaton.next.size() * 4 + automaton.accepting.size() * 8 + token_class.size() * 4;
  std::lock_guard lk(mu_);
  for (const auto& t : sets_)
    if (t) b += t->dense.size() * 4 + t->sparse.size() * 4 + t->uncertain.size() * 4;
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
  cg->rule_calls_.assign(a.rule_start.size(), 0);
  for (int32_t s = 0; s < a.num_states(); ++s)
    if (!a.calls[size_t(s)].empty()) cg->rule_calls_[size_t(a.state_rule[size_t(s)])] = 1;
  int longest = 1;
  for (int32_t t = 0; t < cg->vocab->size(); ++t) longest = std::max(longest, int(cg->vocab->bytes(t).size()));
  cg->token_class = bounded_classes(a, longest + 1);
  const int32_t classes = cg->token_class.empty() ? 0 : *std::max_element(cg->token_class.begin(), cg->token_class.end()) + 1;
  cg->class_state_.assign(size_t(classes), -1);
  for (int32_t s = a.num_states() - 1; s >= 0; --s) cg->class_state_[size_t(cg->token_class[size_t(s)])] = s;
  cg->sets_.resize(size_t(classes));
  cg->ready_ = std::make_unique<std::atomic<bool>[]>(size_t(classes));
  // Eagerly, in breadth-first order from the root's start (where requests begin), within the budget.
  std::vector<uint8_t> seen(size_t(a.num_states()), 0);
  std::vector<int32_t> order = {a.rule_start[size_t(a.root_rule)]};
  seen[size_t(order[0])] = 1;
  for (size_t i = 0; i < order.size(); ++i) {
    const int32_t s = order[i];
    auto visit = [&](int32_t t) {
      if (t >= 0 && !seen[size_t(t)]) seen[size_t(t)] = 1, order.push_back(t);
    };
    for (int c = 0; c < a.num_classes; ++c) visit(a.next[size_t(s) * size_t(a.num_classes) + size_t(c)]);
    for (const RuleCall& rc : a.calls[size_t(s)]) visit(a.rule_start[size_t(rc.rule)]), visit(rc.return_to);
  }
  for (int32_t s : order) {
    if (std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t1).count() > kEagerBudgetMs) break;
    if (!a.reads_bytes[size_t(s)]) continue;
    const int32_t cls = cg->token_class[size_t(s)];
    if (cg->ready_[size_t(cls)]) continue;
    cg->sets_[size_t(cls)] = std::make_unique<StateTokens>(cg->compute(cls));
    cg->ready_[size_t(cls)] = true;
    ++cg->eager_classes;
  }
  auto t2 = std::chrono::steady_clock::now();
  cg->automaton_ms = std::chrono::duration<double, std::milli>(t1 - t0).count();
  cg->masks_ms = std::chrono::duration<double, std::milli>(t2 - t1).count();
  return cg;
}

}  // namespace dsserve::grammar
