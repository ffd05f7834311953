// Built-ins of the Jinja2 subset: filters (trim, length, tojson, string, lower, upper, default,
// join, first, last, list, int, float, abs, capitalize, title, replace, items, reverse, ...),
// tests (defined, undefined, none, string, number, mapping, sequence, iterable, boolean, true,
// false, integer, float, odd, even, divisibleby, eq/ne ...), methods of str / dict / list
// (split, strip, lstrip, rstrip, startswith, endswith, replace, items, get, keys, values, ...)
// and global functions (namespace, range, raise_exception). Unknown names are errors.
#pragma once
#include <string>

#include "core/error.h"
#include "text/jinja/value.h"

namespace dsserve::text::jinja {

// What built-ins throw: a message without location; the evaluator rethrows it as dsserve::Error
// with the template name and line.
struct BuiltinError : Error {
  using Error::Error;
};
template <typename... Args>
[[noreturn]] void builtin_fail(fmt::format_string<Args...> f, Args&&... args) {
  throw BuiltinError(fmt::format(f, std::forward<Args>(args)...));
}

Value apply_filter(const std::string& name, const Value& value, CallArgs& args);
bool apply_test(const std::string& name, const Value& value, CallArgs& args);
Value call_method(const Value& object, const std::string& method, CallArgs& args);
// Global function by name, or undefined when there is none.
Value global_function(const std::string& name);

// Python-like helpers shared with the evaluator.
int64_t python_index(int64_t index, size_t size, bool& in_range);
std::vector<Value> iterate(const Value& v);  // list items, dict keys, string characters

}  // namespace dsserve::text::jinja
