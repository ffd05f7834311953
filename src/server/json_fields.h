// Type-checked reads of request JSON fields: each getter names the field in its 400 error
// ("'temperature' must be a number, found string"), so validation code stays one line per field.
#pragma once
#include <nlohmann/json.hpp>

#include <optional>
#include <set>
#include <string>
#include <vector>

namespace dsserve::server {

using json = nlohmann::json;

// The deepest nesting of arrays and objects a request body may have.
constexpr int kMaxJsonDepth = 64;

// Parses a request body: 400 "malformed JSON" on syntax errors, numbers beyond a double and
// nesting deeper than kMaxJsonDepth; 400 unless it is an object.
json parse_json_body(const std::string& body);

std::string json_type_name(const json& j);

// Absent or null -> nullopt; wrong type -> 400 naming `prefix + key`.
std::optional<double> get_number(const json& obj, const std::string& key, const std::string& prefix = "");
std::optional<int64_t> get_integer(const json& obj, const std::string& key, const std::string& prefix = "");
std::optional<bool> get_bool(const json& obj, const std::string& key, const std::string& prefix = "");
std::optional<std::string> get_string(const json& obj, const std::string& key, const std::string& prefix = "");
// A string or a list of strings (the `stop` field).
std::vector<std::string> get_string_or_list(const json& obj, const std::string& key, const std::string& prefix = "");
std::vector<int32_t> get_int_list(const json& obj, const std::string& key, const std::string& prefix = "");

// 400 "Unrecognized request argument supplied: x" for a field outside `known` (as OpenAI answers).
void reject_unknown_fields(const json& obj, const std::set<std::string>& known, const std::string& prefix = "");

// 400 unless lo <= v <= hi.
void check_range(double v, double lo, double hi, const std::string& param);

}  // namespace dsserve::server
