// Python str operations the templates use, on UTF-8 strings with code-point semantics: strip
// family (Python's whitespace set), split (with and without separator), replace, startswith /
// endswith, ASCII case mapping, title and capitalize.
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace dsserve::text::jinja {

enum class StripSide { kBoth, kLeft, kRight };
// chars == nullptr strips Python whitespace; otherwise any code point of *chars.
std::string py_strip(std::string_view s, const std::string* chars, StripSide side);
// sep == nullptr splits on runs of whitespace, dropping empty pieces.
std::vector<std::string> py_split(std::string_view s, const std::string* sep, int64_t maxsplit);
std::string py_replace(std::string_view s, std::string_view old, std::string_view replacement, int64_t count);
std::string py_lower(std::string_view s);
std::string py_upper(std::string_view s);
std::string py_capitalize(std::string_view s);
std::string py_title(std::string_view s);
size_t py_length(std::string_view s);  // code points

}  // namespace dsserve::text::jinja
