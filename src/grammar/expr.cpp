// Grammar builders and code point range arithmetic (see expr.h).
#include "grammar/expr.h"

#include <algorithm>

namespace dsserve::grammar {

CodepointRanges normalize(CodepointRanges r) {
  std::sort(r.begin(), r.end());
  CodepointRanges out;
  for (auto [lo, hi] : r) {
    if (lo > hi) continue;
    if (!out.empty() && lo <= out.back().second + 1) out.back().second = std::max(out.back().second, hi);
    else out.push_back({lo, hi});
  }
  return out;
}

CodepointRanges complement(const CodepointRanges& r) {
  CodepointRanges out;
  uint32_t next = 0;
  for (auto [lo, hi] : r) {
    if (lo > next) out.push_back({next, lo - 1});
    next = hi + 1;
  }
  if (next <= kMaxCodepoint) out.push_back({next, kMaxCodepoint});
  return out;
}

CodepointRanges unite(const CodepointRanges& a, const CodepointRanges& b) {
  CodepointRanges all = a;
  all.insert(all.end(), b.begin(), b.end());
  return normalize(std::move(all));
}

CodepointRanges subtract(const CodepointRanges& a, const CodepointRanges& b) {
  CodepointRanges nb = complement(b), out;
  for (auto [lo, hi] : a)
    for (auto [l2, h2] : nb) {
      uint32_t l = std::max(lo, l2), h = std::min(hi, h2);
      if (l <= h) out.push_back({l, h});
    }
  return normalize(std::move(out));
}

bool contains(const CodepointRanges& r, uint32_t cp) {
  for (auto [lo, hi] : r)
    if (cp >= lo && cp <= hi) return true;
  return false;
}

std::string utf8_encode(uint32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s += char(cp);
  } else if (cp < 0x800) {
    s += char(0xC0 | (cp >> 6));
    s += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    s += char(0xE0 | (cp >> 12));
    s += char(0x80 | ((cp >> 6) & 0x3F));
    s += char(0x80 | (cp & 0x3F));
  } else {
    s += char(0xF0 | (cp >> 18));
    s += char(0x80 | ((cp >> 12) & 0x3F));
    s += char(0x80 | ((cp >> 6) & 0x3F));
    s += char(0x80 | (cp & 0x3F));
  }
  return s;
}

ExprId Grammar::add(Expr e) {
  exprs_.push_back(std::move(e));
  return ExprId(exprs_.size() - 1);
}

ExprId Grammar::empty() { return add(Expr{}); }

ExprId Grammar::nothing() {
  Expr e;
  e.kind = Expr::Kind::Nothing;
  return add(std::move(e));
}

ExprId Grammar::bytes(std::string s) {
  if (s.empty()) return empty();
  Expr e;
  e.kind = Expr::Kind::Bytes;
  e.bytes = std::move(s);
  return add(std::move(e));
}

ExprId Grammar::cls(CodepointRanges r) {
  Expr e;
  e.kind = Expr::Kind::Class;
  e.ranges = normalize(std::move(r));
  if (e.ranges.empty()) return nothing();
  return add(std::move(e));
}

ExprId Grammar::seq(std::vector<ExprId> items) {
  std::vector<ExprId> kept;
  for (ExprId i : items) {
    if (expr(i).kind == Expr::Kind::Nothing) return nothing();
    if (expr(i).kind != Expr::Kind::Empty) kept.push_back(i);
  }
  if (kept.empty()) return empty();
  if (kept.size() == 1) return kept[0];
  Expr e;
  e.kind = Expr::Kind::Seq;
  e.items = std::move(kept);
  return add(std::move(e));
}

ExprId Grammar::alt(std::vector<ExprId> items) {
  std::vector<ExprId> kept;
  for (ExprId i : items)
    if (expr(i).kind != Expr::Kind::Nothing) kept.push_back(i);
  if (kept.empty()) return nothing();
  if (kept.size() == 1) return kept[0];
  Expr e;
  e.kind = Expr::Kind::Alt;
  e.items = std::move(kept);
  return add(std::move(e));
}

ExprId Grammar::repeat(ExprId item, int min, int max) {
  if (max == 0) return empty();
  if (min == 1 && max == 1) return item;
  if (expr(item).kind == Expr::Kind::Nothing) return min == 0 ? empty() : nothing();
  Expr e;
  e.kind = Expr::Kind::Repeat;
  e.items = {item};
  e.min = min;
  e.max = max;
  return add(std::move(e));
}

ExprId Grammar::ref(int32_t rule) {
  Expr e;
  e.kind = Expr::Kind::Ref;
  e.rule = rule;
  return add(std::move(e));
}

int32_t Grammar::declare_rule(std::string name) {
  rule_names_.push_back(std::move(name));
  rule_bodies_.push_back(-1);
  return int32_t(rule_names_.size() - 1);
}

void Grammar::define_rule(int32_t rule, ExprId body) { rule_bodies_[size_t(rule)] = body; }

int32_t Grammar::find_rule(const std::string& name) const {
  for (size_t i = 0; i < rule_names_.size(); ++i)
    if (rule_names_[i] == name) return int32_t(i);
  return -1;
}

}  // namespace dsserve::grammar
