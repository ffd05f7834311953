// Tree-walking evaluation of a parsed template: variable scopes (a for loop body gets its own
// scope, as in Jinja2, so only namespace() objects carry state out of loops), output buffer,
// loop control, and the built-in filters, tests, methods and functions (builtins.h).
#pragma once
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "text/jinja/ast.h"

namespace dsserve::text::jinja {

class Evaluator {
 public:
  explicit Evaluator(const std::string& template_name) : name_(template_name) { scopes_.emplace_back(); }

  void render(const Body& body);
  std::string& out() { return out_; }

  Value lookup(const std::string& name) const;
  void assign(const std::string& name, Value v) { scopes_.back()[name] = std::move(v); }
  void push_scope() { scopes_.emplace_back(); }
  void pop_scope() { scopes_.pop_back(); }

  // Loop control requested by {% break %} / {% continue %} and not yet handled.
  enum class Control { kNone, kBreak, kContinue };
  Control control = Control::kNone;
  int loop_depth = 0;

  [[noreturn]] void error(int line, const std::string& what) const;
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  std::vector<std::unordered_map<std::string, Value>> scopes_;
  std::string out_;
};

}  // namespace dsserve::text::jinja
