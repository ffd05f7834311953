// The grammar every front end (JSON schema, regex, EBNF, tool calls) produces: named rules whose
// bodies are expressions over UTF-8 text (byte strings, code point classes, sequences, choices,
// bounded or unbounded repetition, references to rules). Expressions live in one arena and may be
// shared (a DAG); the compiler (automaton.h) turns rules into byte automata.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace dsserve::grammar {

// Sorted, disjoint, non-adjacent inclusive ranges of Unicode scalar values (surrogates excluded
// when the set is encoded).
using CodepointRanges = std::vector<std::pair<uint32_t, uint32_t>>;
constexpr uint32_t kMaxCodepoint = 0x10FFFF;

CodepointRanges normalize(CodepointRanges r);
CodepointRanges complement(const CodepointRanges& r);
CodepointRanges unite(const CodepointRanges& a, const CodepointRanges& b);
CodepointRanges subtract(const CodepointRanges& a, const CodepointRanges& b);
bool contains(const CodepointRanges& r, uint32_t cp);
std::string utf8_encode(uint32_t cp);

using ExprId = int32_t;

struct Expr {
  enum class Kind { Empty, Bytes, Class, Seq, Alt, Repeat, Ref, Nothing };
  Kind kind = Kind::Empty;
  std::string bytes;           // Bytes: this exact byte string
  CodepointRanges ranges;      // Class: one code point from these, UTF-8 encoded
  std::vector<ExprId> items;   // Seq, Alt; Repeat: the one repeated item
  int min = 0, max = -1;       // Repeat: between min and max times (-1: unbounded)
  int32_t rule = -1;           // Ref
};

class Grammar {
 public:
  // Builders. `nothing()` matches no text at all (an empty choice).
  ExprId empty();
  ExprId nothing();
  ExprId bytes(std::string s);
  ExprId cls(CodepointRanges r);
  ExprId seq(std::vector<ExprId> items);
  ExprId alt(std::vector<ExprId> items);
  ExprId repeat(ExprId item, int min, int max);
  ExprId opt(ExprId item) { return repeat(item, 0, 1); }
  ExprId ref(int32_t rule);

  // A rule declared now and defined later (forward and recursive references).
  int32_t declare_rule(std::string name);
  void define_rule(int32_t rule, ExprId body);
  int32_t find_rule(const std::string& name) const;  // -1 when absent

  const Expr& expr(ExprId id) const { return exprs_[size_t(id)]; }
  size_t num_exprs() const { return exprs_.size(); }
  size_t num_rules() const { return rule_names_.size(); }
  const std::string& rule_name(int32_t r) const { return rule_names_[size_t(r)]; }
  ExprId rule_body(int32_t r) const { return rule_bodies_[size_t(r)]; }

  int32_t root = -1;  // the rule the whole text must match

 private:
  ExprId add(Expr e);
  std::vector<Expr> exprs_;
  std::vector<std::string> rule_names_;
  std::vector<ExprId> rule_bodies_;
};

}  // namespace dsserve::grammar
