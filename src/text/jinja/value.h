// Runtime values of the Jinja2 subset: undefined, none, bool, int, float, string, list, dict
// (insertion-ordered, as Python's), namespace (a dict whose attributes `set` may assign) and
// built-in functions. Lists and dicts are shared by reference, as in Python. Also Python's str()
// and repr() of values and HF transformers' tojson.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace dsserve::text::jinja {

class Value;
using List = std::vector<Value>;
struct Dict;
// Positional and keyword arguments of a call.
struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
};
using Function = std::function<Value(CallArgs&)>;

struct Undefined {
  std::string name;  // what was looked up, for error messages
};
struct None {};

class Value {
 public:
  using Storage = std::variant<Undefined, None, bool, int64_t, double, std::string, std::shared_ptr<List>,
                               std::shared_ptr<Dict>, std::shared_ptr<Function>>;
  Value() : v_(Undefined{}) {}
  Value(None) : v_(None{}) {}
  Value(bool b) : v_(b) {}
  Value(int v) : v_(static_cast<int64_t>(v)) {}
  Value(int64_t v) : v_(v) {}
  Value(double v) : v_(v) {}
  Value(std::string s) : v_(std::move(s)) {}
  Value(const char* s) : v_(std::string(s)) {}
  Value(List l) : v_(std::make_shared<List>(std::move(l))) {}
  Value(std::shared_ptr<Dict> d) : v_(std::move(d)) {}
  Value(Function f) : v_(std::make_shared<Function>(std::move(f))) {}
  static Value undefined(std::string name) { Value v; v.v_ = Undefined{std::move(name)}; return v; }
  static Value tuple(List l) { Value v(std::move(l)); v.tuple_ = true; return v; }
  static Value from_json(const nlohmann::ordered_json& j);
  static Value new_dict(bool is_namespace = false);

  bool is_undefined() const { return std::holds_alternative<Undefined>(v_); }
  bool is_none() const { return std::holds_alternative<None>(v_); }
  bool is_bool() const { return std::holds_alternative<bool>(v_); }
  bool is_int() const { return std::holds_alternative<int64_t>(v_); }
  bool is_float() const { return std::holds_alternative<double>(v_); }
  bool is_number() const { return is_int() || is_float(); }
  bool is_string() const { return std::holds_alternative<std::string>(v_); }
  bool is_list() const { return std::holds_alternative<std::shared_ptr<List>>(v_); }
  bool is_dict() const { return std::holds_alternative<std::shared_ptr<Dict>>(v_); }
  bool is_function() const { return std::holds_alternative<std::shared_ptr<Function>>(v_); }
  bool is_namespace() const;
  // How deep lists and dicts nest under this value (0 for a scalar) and whether `dict` is among
  // them; walked without recursion, so a deep value cannot exhaust the stack.
  struct Reach {
    int depth = 0;
    bool holds = false;
  };
  Reach reach(const Dict* dict) const;

  bool as_bool() const { return std::get<bool>(v_); }
  int64_t as_int() const { return std::get<int64_t>(v_); }
  double as_number() const { return is_int() ? static_cast<double>(as_int()) : is_bool() ? as_bool() : std::get<double>(v_); }
  const std::string& as_string() const { return std::get<std::string>(v_); }
  List& as_list() const { return *std::get<std::shared_ptr<List>>(v_); }
  Dict& as_dict() const { return *std::get<std::shared_ptr<Dict>>(v_); }
  const Function& as_function() const { return *std::get<std::shared_ptr<Function>>(v_); }
  const std::string& undefined_name() const { return std::get<Undefined>(v_).name; }

  bool truthy() const;
  // Python type name, for error messages.
  std::string type_name() const;
  // Python str(): what {{ value }} prints ("" for undefined).
  std::string str() const;
  // Python repr(), used inside lists and dicts.
  std::string repr() const;
  // json.dumps(value, ensure_ascii=False, indent=indent) as transformers' tojson filter.
  std::string to_json(int indent = -1) const;
  bool equals(const Value& other) const;

 private:
  void dump_json(std::string& out, int indent, int depth) const;
  Storage v_;
  bool tuple_ = false;  // a list that prints as a Python tuple
};

struct Dict {
  std::vector<std::pair<std::string, Value>> items;
  bool is_namespace = false;
  const Value* find(std::string_view key) const {
    for (const auto& [k, v] : items)
      if (k == key) return &v;
    return nullptr;
  }
  void set(const std::string& key, Value v) {
    for (auto& [k, old] : items)
      if (k == key) {
        old = std::move(v);
        return;
      }
    items.emplace_back(key, std::move(v));
  }
};

}  // namespace dsserve::text::jinja
