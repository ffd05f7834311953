// Syntax tree of the Jinja2 subset: expressions (evaluate to a Value) and statements (write
// output). Nodes only hold structure; evaluator.cpp gives them meaning.
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "text/jinja/value.h"

namespace dsserve::text::jinja {

class Evaluator;

struct Expr {
  int line = 0;
  virtual ~Expr() = default;
  virtual Value eval(Evaluator& ev) const = 0;
};
using ExprPtr = std::unique_ptr<Expr>;

struct Arguments {
  std::vector<ExprPtr> positional;
  std::vector<std::pair<std::string, ExprPtr>> keyword;
};

struct LiteralExpr : Expr {
  Value value;
  Value eval(Evaluator& ev) const override;
};
struct NameExpr : Expr {
  std::string name;
  Value eval(Evaluator& ev) const override;
};
struct ListExpr : Expr {
  std::vector<ExprPtr> items;
  bool is_tuple = false;
  Value eval(Evaluator& ev) const override;
};
struct DictExpr : Expr {
  std::vector<std::pair<ExprPtr, ExprPtr>> items;
  Value eval(Evaluator& ev) const override;
};
struct AttributeExpr : Expr {  // obj.name
  ExprPtr object;
  std::string name;
  Value eval(Evaluator& ev) const override;
};
struct IndexExpr : Expr {  // obj[index]
  ExprPtr object, index;
  Value eval(Evaluator& ev) const override;
};
struct SliceExpr : Expr {  // obj[start:stop:step], each part optional
  ExprPtr object, start, stop, step;
  Value eval(Evaluator& ev) const override;
};
struct CallExpr : Expr {  // callee(args); obj.method(args) when callee is an AttributeExpr
  ExprPtr callee;
  Arguments args;
  Value eval(Evaluator& ev) const override;
};
struct FilterExpr : Expr {  // value | name(args)
  ExprPtr value;
  std::string name;
  Arguments args;
  Value eval(Evaluator& ev) const override;
};
struct TestExpr : Expr {  // value is [not] name(args)
  ExprPtr value;
  std::string name;
  Arguments args;
  bool negated = false;
  Value eval(Evaluator& ev) const override;
};
struct UnaryExpr : Expr {  // not, -, +
  std::string op;
  ExprPtr operand;
  Value eval(Evaluator& ev) const override;
};
struct BinaryExpr : Expr {  // and or + - * / // % ** ~ == != < > <= >= in "not in"
  std::string op;
  ExprPtr left, right;
  Value eval(Evaluator& ev) const override;
};
struct ConditionalExpr : Expr {  // then if condition else otherwise
  ExprPtr condition, then, otherwise;
  Value eval(Evaluator& ev) const override;
};

struct Stmt {
  int line = 0;
  virtual ~Stmt() = default;
  virtual void render(Evaluator& ev) const = 0;
};
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

struct TextStmt : Stmt {
  std::string text;
  void render(Evaluator& ev) const override;
};
struct OutputStmt : Stmt {  // {{ expr }}
  ExprPtr expr;
  void render(Evaluator& ev) const override;
};
struct IfStmt : Stmt {
  std::vector<std::pair<ExprPtr, Body>> branches;  // if and elif
  Body otherwise;
  void render(Evaluator& ev) const override;
};
struct ForStmt : Stmt {
  std::vector<std::string> targets;  // one name, or several to unpack
  ExprPtr iterable;
  ExprPtr filter;  // optional "if" clause
  Body body, otherwise;
  void render(Evaluator& ev) const override;
};
struct SetStmt : Stmt {  // {% set name = expr %}, {% set ns.attr = expr %}, {% set name %}...{% endset %}
  std::string name;
  std::string attribute;  // non-empty for namespace assignment
  std::vector<std::string> unpack;  // {% set a, b = expr %}
  ExprPtr value;
  Body block;  // used when value is null
  void render(Evaluator& ev) const override;
};
struct LoopControlStmt : Stmt {  // break / continue
  bool is_break = false;
  void render(Evaluator& ev) const override;
};

}  // namespace dsserve::text::jinja
