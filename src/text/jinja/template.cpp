// Template: lex + parse once, evaluate per render (see template.h).
#include "text/jinja/template.h"

#include "core/error.h"
#include "text/jinja/evaluator.h"
#include "text/jinja/parser.h"

namespace dsserve::text::jinja {

struct Template::Parsed {
  std::string name;
  jinja::Body body;
};

Template::Template(std::string_view source, const std::string& name, LexOptions options)
    : parsed_(std::make_unique<Parsed>()) {
  parsed_->name = name;
  parsed_->body = parse(lex(source, options, name), name);
}

Template::~Template() = default;
Template::Template(Template&&) noexcept = default;
Template& Template::operator=(Template&&) noexcept = default;

std::string Template::render(const nlohmann::ordered_json& variables) const {
  if (!variables.is_object() && !variables.is_null()) fail("{}: render variables must be a JSON object, found {}", parsed_->name, variables.type_name());
  std::vector<std::pair<std::string, Value>> vars;
  vars.reserve(variables.size());
  for (auto it = variables.begin(); it != variables.end(); ++it) vars.emplace_back(it.key(), Value::from_json(it.value()));
  return render(vars);
}

std::string Template::render(const std::vector<std::pair<std::string, Value>>& variables) const {
  Evaluator ev(parsed_->name, limits_);
  for (const auto& [k, v] : variables) ev.assign(k, v);
  ev.render(parsed_->body);
  return std::move(ev.out());
}

}  // namespace dsserve::text::jinja
