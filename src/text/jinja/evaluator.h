// Tree-walking evaluation of a parsed template: variable scopes (a for loop body gets its own
// scope, as in Jinja2, so only namespace() objects carry state out of loops), output buffer,
// loop control, and the built-in filters, tests, methods and functions (builtins.h).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "text/jinja/ast.h"

namespace dsserve::text::jinja {

// The bounds on one render's work: a template is data from a checkpoint or an operator's file, and
// exceeding a bound is an error naming the line, never a hang or an exhausted memory.
struct RenderLimits {
  int64_t max_iterations = int64_t{1} << 22;  // loop bodies run, all loops together
  size_t max_output = size_t{64} << 20;        // bytes rendered
};

class Evaluator {
 public:
  explicit Evaluator(const std::string& template_name, RenderLimits limits = {})
      : name_(template_name), limits_(limits) {
    scopes_.emplace_back();
  }

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

  // Bounds that hold whatever the limits: a string built by '*', '+', '~' or replace(), and the
  // items of a range().
  static constexpr size_t kMaxString = size_t{16} << 20;
  static constexpr int kMaxNesting = 256;  // lists and dicts inside one another, in a namespace attribute
  static constexpr int64_t kMaxRangeItems = int64_t{1} << 22;
  void count_iteration(int line);

  [[noreturn]] void error(int line, const std::string& what) const;
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  std::vector<std::unordered_map<std::string, Value>> scopes_;
  RenderLimits limits_;
  std::string out_;
  int64_t iterations_ = 0;
};

}  // namespace dsserve::text::jinja
