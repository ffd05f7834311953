// Type-checked JSON field reads (see json_fields.h).
#include "server/json_fields.h"

#include <stdexcept>

#include "server/api_error.h"
#include "text/utf8.h"

namespace dsserve::server {

json parse_json_body(const std::string& body) {
  // Checked first so that no message ever quotes the invalid byte itself.
  if (size_t bad = text::utf8_first_invalid(body); bad != body.size())
    bad_request("", "request body is not valid UTF-8: invalid byte 0x{:02x} at offset {}",
                static_cast<unsigned char>(body[bad]), bad);
  json j;
  try {
    // Nesting is bounded so that nothing later (copies, dumps, destruction) recurses without limit.
    j = json::parse(body, [&](int depth, json::parse_event_t, json&) {
      if (depth > kMaxJsonDepth) throw std::length_error("nesting");
      return true;
    });
  } catch (const json::exception& e) {  // syntax errors, and numbers beyond a double (1e400)
    bad_request("", "malformed JSON body: {}", e.what());
  } catch (const std::length_error&) {
    bad_request("", "malformed JSON body: nested deeper than {} levels", kMaxJsonDepth);
  }
  if (!j.is_object()) bad_request("", "request body must be a JSON object, found {}", json_type_name(j));
  return j;
}

std::string json_type_name(const json& j) {
  if (j.is_number_integer()) return "integer";
  if (j.is_number()) return "number";
  return j.type_name();
}

namespace {
const json* find(const json& obj, const std::string& key) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}
}  // namespace

std::optional<double> get_number(const json& obj, const std::string& key, const std::string& prefix) {
  const json* v = find(obj, key);
  if (!v) return std::nullopt;
  if (!v->is_number()) bad_request(prefix + key, "'{}{}' must be a number, found {}", prefix, key, json_type_name(*v));
  return v->get<double>();
}

std::optional<int64_t> get_integer(const json& obj, const std::string& key, const std::string& prefix) {
  const json* v = find(obj, key);
  if (!v) return std::nullopt;
  if (v->is_number_float()) {  // 3.0 is an integer; 1e300 and 2.5 are not
    double d = v->get<double>();
    if (d >= -9.2e18 && d <= 9.2e18 && d == double(int64_t(d))) return int64_t(d);
  }
  if (v->is_number_unsigned() && v->get<uint64_t>() > uint64_t(INT64_MAX))
    bad_request(prefix + key, "'{}{}' is out of range: {}", prefix, key, v->get<uint64_t>());
  if (!v->is_number_integer())
    bad_request(prefix + key, "'{}{}' must be an integer, found {}", prefix, key, json_type_name(*v));
  return v->get<int64_t>();
}

std::optional<bool> get_bool(const json& obj, const std::string& key, const std::string& prefix) {
  const json* v = find(obj, key);
  if (!v) return std::nullopt;
  if (!v->is_boolean()) bad_request(prefix + key, "'{}{}' must be a boolean, found {}", prefix, key, json_type_name(*v));
  return v->get<bool>();
}

std::optional<std::string> get_string(const json& obj, const std::string& key, const std::string& prefix) {
  const json* v = find(obj, key);
  if (!v) return std::nullopt;
  if (!v->is_string()) bad_request(prefix + key, "'{}{}' must be a string, found {}", prefix, key, json_type_name(*v));
  return v->get<std::string>();
}

std::vector<std::string> get_string_or_list(const json& obj, const std::string& key, const std::string& prefix) {
  const json* v = find(obj, key);
  if (!v) return {};
  if (v->is_string()) return {v->get<std::string>()};
  if (!v->is_array())
    bad_request(prefix + key, "'{}{}' must be a string or a list of strings, found {}", prefix, key, json_type_name(*v));
  std::vector<std::string> out;
  for (auto& e : *v) {
    if (!e.is_string())
      bad_request(prefix + key, "'{}{}' must be a string or a list of strings, found a list holding {}", prefix, key,
                  json_type_name(e));
    out.push_back(e.get<std::string>());
  }
  return out;
}

std::vector<int32_t> get_int_list(const json& obj, const std::string& key, const std::string& prefix) {
  const json* v = find(obj, key);
  if (!v) return {};
  if (!v->is_array()) bad_request(prefix + key, "'{}{}' must be a list of integers, found {}", prefix, key, json_type_name(*v));
  std::vector<int32_t> out;
  for (auto& e : *v) {
    if (!e.is_number_integer())
      bad_request(prefix + key, "'{}{}' must be a list of integers, found a list holding {}", prefix, key,
                  json_type_name(e));
    int64_t x = e.get<int64_t>();
    if (x < INT32_MIN || x > INT32_MAX) bad_request(prefix + key, "'{}{}': {} is out of range", prefix, key, x);
    out.push_back(int32_t(x));
  }
  return out;
}

void reject_unknown_fields(const json& obj, const std::set<std::string>& known, const std::string& prefix) {
  for (auto it = obj.begin(); it != obj.end(); ++it)
    if (!known.count(it.key()))
      bad_request(prefix + it.key(), "Unrecognized request argument supplied: {}{}", prefix, it.key());
}

void check_range(double v, double lo, double hi, const std::string& param) {
  if (!(v >= lo && v <= hi)) bad_request(param, "'{}' must be between {} and {}, found {}", param, lo, hi, v);
}

}  // namespace dsserve::server
