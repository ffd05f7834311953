// A parsed Jinja2 template of the supported subset, rendered many times with different variables.
// Parse errors and unsupported syntax name the template and line; so do render-time errors.
#pragma once
#include <nlohmann/json.hpp>

#include <memory>
#include <string>
#include <string_view>

#include "text/jinja/evaluator.h"
#include "text/jinja/lexer.h"
#include "text/jinja/value.h"

namespace dsserve::text::jinja {



class Template {
 public:
  Template(std::string_view source, const std::string& name = "template", LexOptions options = {});
  ~Template();
  Template(Template&&) noexcept;
  Template& operator=(Template&&) noexcept;

  // Renders with the top-level variables of `variables` (a JSON object, order preserved).
  std::string render(const nlohmann::ordered_json& variables) const;
  // Renders with variables already converted to values.
  std::string render(const std::vector<std::pair<std::string, Value>>& variables) const;

  // The bounds of every later render (RenderLimits' defaults unless set).
  void set_limits(RenderLimits limits) { limits_ = limits; }

 private:
  struct Parsed;
  std::unique_ptr<Parsed> parsed_;
  RenderLimits limits_;
};

}  // namespace dsserve::text::jinja
