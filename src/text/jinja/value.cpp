// Value conversions: from JSON, Python-style truthiness, str(), repr(), equality and tojson.
#include "text/jinja/value.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "core/error.h"

namespace dsserve::text::jinja {
namespace {

std::string python_float(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  std::string s = fmt::format("{}", d);
  if (s.find_first_of(".en") == std::string::npos) s += ".0";
  return s;
}

std::string python_string_repr(const std::string& s) {
  const bool use_double = s.find('\'') != std::string::npos && s.find('"') == std::string::npos;
  const char q = use_double ? '"' : '\'';
  std::string out(1, q);
  for (unsigned char c : s) {
    if (c == static_cast<unsigned char>(q) || c == '\\') { out += '\\'; out += static_cast<char>(c); }
    else if (c == '\n') out += "\\n";
    else if (c == '\r') out += "\\r";
    else if (c == '\t') out += "\\t";
    else if (c < 0x20 || c == 0x7F) out += fmt::format("\\x{:02x}", c);
    else out += static_cast<char>(c);
  }
  out += q;
  return out;
}

void json_string(std::string& out, const std::string& s) {
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) out += fmt::format("\\u{:04x}", c);
        else out += static_cast<char>(c);
    }
  }
  out += '"';
}

}  // namespace

Value Value::new_dict(bool is_namespace) {
  auto d = std::make_shared<Dict>();
  d->is_namespace = is_namespace;
  return Value(std::move(d));
}

Value Value::from_json(const nlohmann::ordered_json& j) {
  switch (j.type()) {
    case nlohmann::ordered_json::value_t::null: return Value(None{});
    case nlohmann::ordered_json::value_t::boolean: return Value(j.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer: return Value(j.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned: return Value(static_cast<int64_t>(j.get<uint64_t>()));
    case nlohmann::ordered_json::value_t::number_float: return Value(j.get<double>());
    case nlohmann::ordered_json::value_t::string: return Value(j.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      List l;
      l.reserve(j.size());
      for (const auto& e : j) l.push_back(from_json(e));
      return Value(std::move(l));
    }
    case nlohmann::ordered_json::value_t::object: {
      Value d = new_dict();
      d.as_dict().items.reserve(j.size());
      for (auto it = j.begin(); it != j.end(); ++it) d.as_dict().items.emplace_back(it.key(), from_json(it.value()));
      return d;
    }
    default: return Value(None{});
  }
}

bool Value::is_namespace() const { return is_dict() && as_dict().is_namespace; }

Value::Reach Value::reach(const Dict* dict) const {
  Reach r;
  std::vector<std::pair<const Value*, int>> todo{{this, 0}};
  while (!todo.empty()) {
    const auto [v, depth] = todo.back();
    todo.pop_back();
    if (v->is_list()) {
      r.depth = std::max(r.depth, depth + 1);
      for (const Value& e : v->as_list()) todo.emplace_back(&e, depth + 1);
    } else if (v->is_dict()) {
      r.depth = std::max(r.depth, depth + 1);
      if (&v->as_dict() == dict) r.holds = true;
      for (const auto& item : v->as_dict().items) todo.emplace_back(&item.second, depth + 1);
    }
  }
  return r;
}

bool Value::truthy() const {
  if (is_undefined() || is_none()) return false;
  if (is_bool()) return as_bool();
  if (is_int()) return as_int() != 0;
  if (is_float()) return std::get<double>(v_) != 0.0;
  if (is_string()) return !as_string().empty();
  if (is_list()) return !as_list().empty();
  if (is_dict()) return !as_dict().items.empty();
  return true;
}

std::string Value::type_name() const {
  if (is_undefined()) return "undefined";
  if (is_none()) return "NoneType";
  if (is_bool()) return "bool";
  if (is_int()) return "int";
  if (is_float()) return "float";
  if (is_string()) return "str";
  if (is_list()) return "list";
  if (is_namespace()) return "Namespace";
  if (is_dict()) return "dict";
  return "function";
}

std::string Value::str() const {
  if (is_undefined()) return "";
  if (is_string()) return as_string();
  return repr();
}

std::string Value::repr() const {
  if (is_undefined()) return "";
  if (is_none()) return "None";
  if (is_bool()) return as_bool() ? "True" : "False";
  if (is_int()) return std::to_string(as_int());
  if (is_float()) return python_float(std::get<double>(v_));
  if (is_string()) return python_string_repr(as_string());
  if (is_list()) {
    std::string out = tuple_ ? "(" : "[";
    for (size_t i = 0; i < as_list().size(); ++i) out += (i ? ", " : "") + as_list()[i].repr();
    if (tuple_ && as_list().size() == 1) out += ",";
    return out + (tuple_ ? ")" : "]");
  }
  if (is_dict()) {
    std::string out = is_namespace() ? "<Namespace {" : "{";
    bool first = true;
    for (const auto& [k, v] : as_dict().items) {
      out += (first ? "" : ", ") + python_string_repr(k) + ": " + v.repr();
      first = false;
    }
    return out + (is_namespace() ? "}>" : "}");
  }
  return "<function>";
}

bool Value::equals(const Value& o) const {
  if (is_number() && o.is_number()) {
    if (is_int() && o.is_int()) return as_int() == o.as_int();
    return as_number() == o.as_number();
  }
  if ((is_bool() && o.is_number()) || (is_number() && o.is_bool())) return as_number() == o.as_number();
  if (v_.index() != o.v_.index()) return false;
  if (is_undefined() || is_none()) return true;
  if (is_bool()) return as_bool() == o.as_bool();
  if (is_string()) return as_string() == o.as_string();
  if (is_list()) {
    const List &a = as_list(), &b = o.as_list();
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
      if (!a[i].equals(b[i])) return false;
    return true;
  }
  if (is_dict()) {
    const Dict &a = as_dict(), &b = o.as_dict();
    if (a.items.size() != b.items.size()) return false;
    for (const auto& [k, v] : a.items) {
      const Value* w = b.find(k);
      if (!w || !v.equals(*w)) return false;
    }
    return true;
  }
  return &as_function() == &o.as_function();
}

std::string Value::to_json(int indent) const {
  std::string out;
  dump_json(out, indent, 0);
  return out;
}

void Value::dump_json(std::string& out, int indent, int depth) const {
  auto newline = [&](int d) {
    if (indent < 0) return;
    out += '\n';
    out.append(static_cast<size_t>(indent * d), ' ');
  };
  const char* item_sep = indent < 0 ? ", " : ",";
  if (is_undefined()) fail("tojson: cannot serialize an undefined value ('{}')", undefined_name());
  if (is_none()) out += "null";
  else if (is_bool()) out += as_bool() ? "true" : "false";
  else if (is_int()) out += std::to_string(as_int());
  else if (is_float()) {
    const double d = std::get<double>(v_);
    out += std::isnan(d) ? "NaN" : std::isinf(d) ? (d > 0 ? "Infinity" : "-Infinity") : python_float(d);
  } else if (is_string()) json_string(out, as_string());
  else if (is_list()) {
    const List& l = as_list();
    if (l.empty()) { out += "[]"; return; }
    out += '[';
    for (size_t i = 0; i < l.size(); ++i) {
      if (i) out += item_sep;
      newline(depth + 1);
      l[i].dump_json(out, indent, depth + 1);
    }
    newline(depth);
    out += ']';
  } else if (is_dict()) {
    const Dict& d = as_dict();
    if (d.items.empty()) { out += "{}"; return; }
    out += '{';
    for (size_t i = 0; i < d.items.size(); ++i) {
      if (i) out += item_sep;
      newline(depth + 1);
      json_string(out, d.items[i].first);
      out += ": ";
      d.items[i].second.dump_json(out, indent, depth + 1);
    }
    newline(depth);
    out += '}';
  } else {
    fail("tojson: cannot serialize a function");
  }
}

}  // namespace dsserve::text::jinja
