// Grammar -> pushdown automaton (see automaton.h). Steps: find the recursive rules (strongly
// connected components of the reference graph); build one NFA by continuation passing (an
// expression is built towards the state that follows it, memoised per (expression, continuation),
// so shared tails are built once), inlining non-recursive rules within the budget; split the bytes
// into classes no edge distinguishes; determinise each kept rule (byte classes and rule calls are
// the alphabet); minimise (Moore); compute what can follow each rule; reject left recursion.
#include "grammar/automaton.h"

#include <algorithm>
#include <functional>
#include <map>
#include <unordered_map>

#include "grammar/grammar_error.h"
#include "grammar/utf8_ranges.h"

namespace dsserve::grammar {

namespace {

struct NfaState {
  std::vector<int32_t> eps;
  std::vector<std::tuple<uint8_t, uint8_t, int32_t>> bytes;  // [lo, hi] -> target
  std::vector<std::pair<int32_t, int32_t>> calls;            // (rule, target)
};

class NfaBuilder {
 public:
  NfaBuilder(const Grammar& g, const CompileLimits& lim) : g_(g), lim_(lim) {
    find_recursive_rules();
    size_memo_.assign(g.num_exprs(), -1);
  }

  std::vector<NfaState> states;
  std::vector<int32_t> kept_rules;            // rules with their own automaton, in order of need
  std::vector<int32_t> rule_start, rule_final;

  // Builds every rule the root needs; returns nothing (fills the members).
  void build_all() {
    rule_start.assign(g_.num_rules(), -1);
    rule_final.assign(g_.num_rules(), -1);
    need(g_.root);
    for (size_t i = 0; i < kept_rules.size(); ++i) {
      const int32_t r = kept_rules[i];
      rule_final[r] = new_state();
      rule_start[r] = build(g_.rule_body(r), rule_final[r]);
      if (states.size() > size_t(lim_.max_states) * 4)
        throw GrammarError("the grammar is too large to compile", "rule '" + g_.rule_name(r) + "'");
    }
  }

 private:
  int32_t new_state() {
    states.emplace_back();
    return int32_t(states.size() - 1);
  }

  void need(int32_t rule) {
    if (std::find(kept_rules.begin(), kept_rules.end(), rule) == kept_rules.end()) kept_rules.push_back(rule);
  }

  void check_defined(int32_t rule) const {
    if (g_.rule_body(rule) < 0) throw GrammarError("rule '" + g_.rule_name(rule) + "' is used but never defined", "rule '" + g_.rule_name(rule) + "'");
  }

  // Rules on a cycle of references (Tarjan's strongly connected components).
  void find_recursive_rules() {
    const size_t n = g_.num_rules();
    std::vector<std::vector<int32_t>> edges(n);
    for (size_t r = 0; r < n; ++r) {
      check_defined(int32_t(r));
      std::vector<ExprId> todo = {g_.rule_body(int32_t(r))};
      std::vector<uint8_t> seen(g_.num_exprs(), 0);
      while (!todo.empty()) {
        ExprId e = todo.back();
        todo.pop_back();
        if (seen[size_t(e)]) continue;
        seen[size_t(e)] = 1;
        const Expr& x = g_.expr(e);
        if (x.kind == Expr::Kind::Ref) edges[r].push_back(x.rule);
        for (ExprId c : x.items) todo.push_back(c);
      }
    }
    recursive_.assign(n, 0);
    std::vector<int> index(n, -1), low(n, 0);
    std::vector<uint8_t> on_stack(n, 0);
    std::vector<int32_t> stack;
    int counter = 0;
    std::function<void(int32_t)> visit = [&](int32_t v) {
      index[v] = low[v] = counter++;
      stack.push_back(v);
      on_stack[v] = 1;
      for (int32_t w : edges[v]) {
        if (index[w] < 0) {
          visit(w);
          low[v] = std::min(low[v], low[w]);
        } else if (on_stack[w]) {
          low[v] = std::min(low[v], index[w]);
        }
      }
      if (low[v] == index[v]) {
        std::vector<int32_t> comp;
        int32_t w;
        do {
          w = stack.back();
          stack.pop_back();
          on_stack[w] = 0;
          comp.push_back(w);
        } while (w != v);
        const bool self = std::find(edges[v].begin(), edges[v].end(), v) != edges[v].end();
        if (comp.size() > 1 || self)
          for (int32_t c : comp) recursive_[c] = 1;
      }
    };
    for (size_t r = 0; r < n; ++r)
      if (index[r] < 0) visit(int32_t(r));
  }

  // NFA states an expression needs when built (rules that stay rules count 1), capped.
  int64_t size_of(ExprId e) {
    if (size_memo_[size_t(e)] >= 0) return size_memo_[size_t(e)];
    const Expr& x = g_.expr(e);
    int64_t s = 1;
    switch (x.kind) {
      case Expr::Kind::Bytes: s = int64_t(x.bytes.size()); break;
      case Expr::Kind::Class: s = 4 * int64_t(x.ranges.size()) + 8; break;
      case Expr::Kind::Seq:
      case Expr::Kind::Alt:
        s = 1;
        for (ExprId c : x.items) s += size_of(c);
        break;
      case Expr::Kind::Repeat: s = size_of(x.items[0]) * std::max(1, x.max < 0 ? x.min + 1 : x.max) + 2; break;
      case Expr::Kind::Ref: s = inlined(x.rule) ? size_of(g_.rule_body(x.rule)) : 1; break;
      default: s = 1;
    }
    s = std::min<int64_t>(s, int64_t(1) << 40);
    size_memo_[size_t(e)] = s;
    return s;
  }

  bool inlined(int32_t rule) {
    if (recursive_[rule]) return false;
    auto it = inline_memo_.find(rule);
    if (it != inline_memo_.end()) return it->second;
    inline_memo_[rule] = false;  // provisional (not reached: the rule is not recursive)
    const bool ok = size_of(g_.rule_body(rule)) <= lim_.inline_budget;
    inline_memo_[rule] = ok;
    return ok;
  }

  // The start state of a fragment matching e and then continuing at `next`.
  int32_t build(ExprId e, int32_t next) {
    const uint64_t key = (uint64_t(uint32_t(e)) << 32) | uint32_t(next);
    if (auto it = memo_.find(key); it != memo_.end()) return it->second;
    const Expr& x = g_.expr(e);
    int32_t s = next;
    switch (x.kind) {
      case Expr::Kind::Empty: break;
      case Expr::Kind::Nothing: s = new_state(); break;
      case Expr::Kind::Bytes:
        for (size_t i = x.bytes.size(); i-- > 0;) {
          const int32_t n = new_state();
          const uint8_t b = uint8_t(x.bytes[i]);
          states[size_t(n)].bytes.push_back({b, b, s});
          s = n;
        }
        break;
      case Expr::Kind::Class: {
        std::vector<ByteRangeSeq> seqs;
        for (auto [lo, hi] : x.ranges) utf8_sequences(lo, hi, seqs);
        s = new_state();
        for (const ByteRangeSeq& q : seqs) {
          int32_t t = next;
          for (size_t i = q.size(); i-- > 1;) {
            const int32_t n = new_state();
            states[size_t(n)].bytes.push_back({q[i].first, q[i].second, t});
            t = n;
          }
          states[size_t(s)].bytes.push_back({q[0].first, q[0].second, t});
        }
        break;
      }
      case Expr::Kind::Seq:
        for (size_t i = x.items.size(); i-- > 0;) s = build(x.items[i], s);
        break;
      case Expr::Kind::Alt: {
        s = new_state();
        for (ExprId c : x.items) {
          const int32_t t = build(c, next);
          states[size_t(s)].eps.push_back(t);
        }
        break;
      }
      case Expr::Kind::Repeat: {
        const ExprId item = x.items[0];
        if (x.max < 0) {
          const int32_t loop = new_state();
          states[size_t(loop)].eps.push_back(next);
          const int32_t body = build(item, loop);
          states[size_t(loop)].eps.push_back(body);
          s = loop;
        } else {
          for (int k = 0; k < x.max - x.min; ++k) {
            const int32_t n = new_state();
            states[size_t(n)].eps.push_back(next);
            const int32_t body = build(item, s);
            states[size_t(n)].eps.push_back(body);
            s = n;
          }
        }
        for (int k = 0; k < x.min; ++k) s = build(item, s);
        break;
      }
      case Expr::Kind::Ref:
        if (inlined(x.rule)) {
          s = build(g_.rule_body(x.rule), next);
        } else {
          need(x.rule);
          s = new_state();
          states[size_t(s)].calls.push_back({x.rule, next});
        }
        break;
    }
    if (states.size() > size_t(lim_.max_states) * 4)
      throw GrammarError("the grammar is too large to compile (more than " + std::to_string(lim_.max_states * 4) +
                             " automaton states)",
                         "rule '" + g_.rule_name(g_.root) + "'");
    memo_[key] = s;
    return s;
  }

  const Grammar& g_;
  CompileLimits lim_;
  std::vector<uint8_t> recursive_;
  std::vector<int64_t> size_memo_;
  std::unordered_map<int32_t, bool> inline_memo_;
  std::unordered_map<uint64_t, int32_t> memo_;
};

// One rule's DFA before numbering: transitions per class, calls, accepting flags.
struct RuleDfa {
  std::vector<std::vector<int32_t>> next;  // [state][class]
  std::vector<std::vector<RuleCall>> calls;
  std::vector<uint8_t> accepting;
};

class Determinizer {
 public:
  Determinizer(const std::vector<NfaState>& nfa, const std::array<uint8_t, 256>& cls, int num_classes)
      : nfa_(nfa), cls_(cls), num_classes_(num_classes) {}

  RuleDfa run(int32_t start, int32_t final_state, int max_states) {
    RuleDfa d;
    std::map<std::vector<int32_t>, int32_t> ids;
    std::vector<std::vector<int32_t>> sets;
    auto intern = [&](std::vector<int32_t> s) -> int32_t {
      if (s.empty()) return -1;
      closure(s);
      auto [it, fresh] = ids.emplace(s, int32_t(sets.size()));
      if (fresh) {
        sets.push_back(std::move(s));
        if (int(sets.size()) > max_states) throw GrammarError("the grammar is too large to compile", "its automaton");
      }
      return it->second;
    };
    intern({start});
    for (size_t i = 0; i < sets.size(); ++i) {
      std::vector<std::vector<int32_t>> by_class(static_cast<size_t>(num_classes_));
      std::map<int32_t, std::vector<int32_t>> by_rule;
      bool acc = false;
      for (int32_t s : sets[i]) {
        if (s == final_state) acc = true;
        for (auto [lo, hi, t] : nfa_[size_t(s)].bytes)
          for (int c = cls_[lo]; c <= cls_[hi]; ++c) by_class[size_t(c)].push_back(t);
        for (auto [r, t] : nfa_[size_t(s)].calls) by_rule[r].push_back(t);
      }
      std::vector<int32_t> row(size_t(num_classes_), -1);
      for (int c = 0; c < num_classes_; ++c) row[size_t(c)] = intern(std::move(by_class[size_t(c)]));
      std::vector<RuleCall> calls;
      for (auto& [r, ts] : by_rule) calls.push_back({r, intern(std::move(ts))});
      d.next.push_back(std::move(row));
      d.calls.push_back(std::move(calls));
      d.accepting.push_back(acc);
    }
    return d;
  }

 private:
  void closure(std::vector<int32_t>& s) {
    std::vector<int32_t> todo = s;
    s.clear();
    ++epoch_;
    if (mark_.size() < nfa_.size()) mark_.resize(nfa_.size(), 0);
    while (!todo.empty()) {
      int32_t x = todo.back();
      todo.pop_back();
      if (mark_[size_t(x)] == epoch_) continue;
      mark_[size_t(x)] = epoch_;
      s.push_back(x);
      for (int32_t y : nfa_[size_t(x)].eps) todo.push_back(y);
    }
    std::sort(s.begin(), s.end());
  }

  const std::vector<NfaState>& nfa_;
  const std::array<uint8_t, 256>& cls_;
  int num_classes_;
  std::vector<uint32_t> mark_;
  uint32_t epoch_ = 0;
};

}  // namespace

Automaton compile_automaton(const Grammar& g, const CompileLimits& limits) {
  if (g.root < 0) throw GrammarError("the grammar has no root rule", "the grammar");
  NfaBuilder nb(g, limits);
  nb.build_all();

  // Byte classes: bytes no edge tells apart share a class.
  std::array<bool, 257> boundary{};
  boundary[0] = true;
  for (const NfaState& s : nb.states)
    for (auto [lo, hi, t] : s.bytes) boundary[lo] = true, boundary[size_t(hi) + 1] = true;
  Automaton a;
  int c = -1;
  for (int b = 0; b < 256; ++b) {
    if (boundary[size_t(b)]) ++c;
    a.byte_class[size_t(b)] = uint8_t(c);
  }
  a.num_classes = c + 1;

  // Determinise and minimise each kept rule, then number all states.
  const size_t R = g.num_rules();
  a.rule_start.assign(R, -1);
  a.follow.assign(R, {});
  for (size_t r = 0; r < R; ++r) a.rule_names.push_back(g.rule_name(int32_t(r)));
  a.root_rule = g.root;
  Determinizer det(nb.states, a.byte_class, a.num_classes);
  std::vector<std::pair<int32_t, RuleDfa>> dfas;
  int total = 0;
  for (int32_t r : nb.kept_rules) {
    RuleDfa d = det.run(nb.rule_start[r], nb.rule_final[r], limits.max_states);
    a.rule_start[size_t(r)] = total;
    total += int(d.accepting.size());
    if (total > limits.max_states)
      throw GrammarError("the grammar is too large to compile (more than " + std::to_string(limits.max_states) +
                             " automaton states)",
                         "rule '" + g.rule_name(r) + "'");
    dfas.push_back({r, std::move(d)});
  }
  a.next.assign(size_t(total) * size_t(a.num_classes), -1);
  a.accepting.assign(size_t(total), 0);
  a.reads_bytes.assign(size_t(total), 0);
  a.calls.assign(size_t(total), {});
  a.state_rule.assign(size_t(total), -1);
  for (auto& [r, d] : dfas) {
    const int32_t base = a.rule_start[size_t(r)];
    for (size_t s = 0; s < d.accepting.size(); ++s) {
      const size_t gs = size_t(base) + s;
      a.accepting[gs] = d.accepting[s];
      a.state_rule[gs] = r;
      for (int k = 0; k < a.num_classes; ++k) {
        int32_t t = d.next[s][size_t(k)];
        if (t >= 0) {
          a.next[gs * size_t(a.num_classes) + size_t(k)] = base + t;
          a.reads_bytes[gs] = 1;
        }
      }
      for (const RuleCall& rc : d.calls[s])
        if (rc.return_to >= 0) a.calls[gs].push_back({rc.rule, base + rc.return_to});
    }
  }

  // Nullable rules (can end without reading a byte), then left recursion: a rule that can call
  // itself before reading a byte would make the pushdown closure endless.
  auto empty_reach = [&](int32_t start, const std::vector<uint8_t>& nullable, std::vector<int32_t>* called) {
    std::vector<int32_t> todo = {start};
    std::vector<uint8_t> seen(size_t(total), 0);
    bool ends = false;
    while (!todo.empty()) {
      int32_t s = todo.back();
      todo.pop_back();
      if (seen[size_t(s)]) continue;
      seen[size_t(s)] = 1;
      if (a.accepting[size_t(s)]) ends = true;
      for (const RuleCall& rc : a.calls[size_t(s)]) {
        if (called) called->push_back(rc.rule);
        if (nullable[size_t(rc.rule)]) todo.push_back(rc.return_to);
      }
    }
    return ends;
  };
  std::vector<uint8_t> nullable(R, 0);
  for (bool changed = true; changed;) {
    changed = false;
    for (auto& [r, d] : dfas)
      if (!nullable[size_t(r)] && empty_reach(a.rule_start[size_t(r)], nullable, nullptr)) nullable[size_t(r)] = changed = true;
  }
  for (auto& [r, d] : dfas) {
    std::vector<uint8_t> seen(R, 0);
    std::vector<int32_t> todo = {r};
    while (!todo.empty()) {
      int32_t x = todo.back();
      todo.pop_back();
      std::vector<int32_t> called;
      empty_reach(a.rule_start[size_t(x)], nullable, &called);
      for (int32_t y : called) {
        if (y == r) throw GrammarError("left recursion: rule '" + g.rule_name(r) + "' can reach itself before matching any text", "rule '" + g.rule_name(r) + "'");
        if (!seen[size_t(y)]) seen[size_t(y)] = 1, todo.push_back(y);
      }
    }
  }

  // First bytes from each state (through calls), then what can follow each rule; both fixpoints.
  std::vector<std::bitset<256>> first(static_cast<size_t>(total));
  for (int32_t s = 0; s < total; ++s)
    for (int b = 0; b < 256; ++b)
      if (a.step(s, uint8_t(b)) >= 0) first[size_t(s)].set(size_t(b));
  for (bool changed = true; changed;) {
    changed = false;
    for (int32_t s = 0; s < total; ++s) {
      std::bitset<256> f = first[size_t(s)];
      for (const RuleCall& rc : a.calls[size_t(s)]) {
        f |= first[size_t(a.rule_start[size_t(rc.rule)])];
        if (nullable[size_t(rc.rule)]) f |= first[size_t(rc.return_to)];
      }
      if (f != first[size_t(s)]) first[size_t(s)] = f, changed = true;
    }
  }
  auto first_of = [&](int32_t s) { return first[size_t(s)]; };
  for (bool changed = true; changed;) {
    changed = false;
    for (int32_t s = 0; s < total; ++s)
      for (const RuleCall& rc : a.calls[size_t(s)]) {
        std::bitset<256> f = first_of(rc.return_to);
        if (empty_reach(rc.return_to, nullable, nullptr)) f |= a.follow[size_t(a.state_rule[size_t(s)])];
        if ((a.follow[size_t(rc.rule)] | f) != a.follow[size_t(rc.rule)]) {
          a.follow[size_t(rc.rule)] |= f;
          changed = true;
        }
      }
  }
  bool any = false;
  for (int32_t s = 0; s < total && !any; ++s) any = a.reads_bytes[size_t(s)] || a.accepting[size_t(s)] || !a.calls[size_t(s)].empty();
  if (!any) throw GrammarError("the grammar matches no text at all", "rule '" + g.rule_name(g.root) + "'");
  return a;
}

}  // namespace dsserve::grammar
