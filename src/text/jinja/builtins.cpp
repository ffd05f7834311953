// Filters, tests, methods and global functions of the Jinja2 subset (see builtins.h).
#include "text/jinja/builtins.h"

#include <algorithm>
#include <climits>
#include <cmath>

#include "text/jinja/evaluator.h"
#include "text/jinja/string_methods.h"
#include "text/utf8.h"

namespace dsserve::text::jinja {
namespace {

// Argument i (positional) or keyword `key`, else nullptr.
const Value* arg(const CallArgs& a, size_t i, const char* key) {
  if (i < a.positional.size()) return &a.positional[i];
  for (const auto& [k, v] : a.keyword)
    if (k == key) return &v;
  return nullptr;
}

const std::string& need_string(const Value& v, const std::string& what) {
  if (!v.is_string()) builtin_fail("{}: expected a string, found {}", what, v.type_name());
  return v.as_string();
}

int64_t need_int(const Value& v, const std::string& what) {
  if (!v.is_int()) builtin_fail("{}: expected an integer, found {}", what, v.type_name());
  return v.as_int();
}

// py_replace with its result bounded: the worst case is the replacement around every byte.
std::string bounded_replace(const std::string& s, const std::string& old, const std::string& rep, int64_t count) {
  const size_t sites = old.empty() ? s.size() + 1 : s.size() / old.size();
  const size_t limit = count < 0 ? sites : std::min(sites, static_cast<size_t>(count));
  if (rep.size() > old.size() && limit > 0 && (rep.size() - old.size()) > (Evaluator::kMaxString - std::min(s.size(), Evaluator::kMaxString)) / limit)
    builtin_fail("replace: the result could exceed {} bytes", Evaluator::kMaxString);
  return py_replace(s, old, rep, count);
}

int64_t length_of(const Value& v, const std::string& what) {
  if (v.is_string()) return static_cast<int64_t>(py_length(v.as_string()));
  if (v.is_list()) return static_cast<int64_t>(v.as_list().size());
  if (v.is_dict()) return static_cast<int64_t>(v.as_dict().items.size());
  if (v.is_undefined()) return 0;
  builtin_fail("{}: object of type '{}' has no len()", what, v.type_name());
}

Value items_of(const Value& d) {
  List out;
  for (const auto& [k, v] : d.as_dict().items) out.push_back(Value::tuple(List{Value(k), v}));
  return Value(std::move(out));
}

std::string join(const Value& seq, const std::string& sep, const Value* attribute) {
  std::string out;
  bool first = true;
  for (const Value& item : iterate(seq)) {
    if (!first) out += sep;
    first = false;
    if (attribute && attribute->is_string()) {
      const Value* v = item.is_dict() ? item.as_dict().find(attribute->as_string()) : nullptr;
      out += v ? v->str() : "";
    } else {
      out += item.str();
    }
  }
  return out;
}

bool starts_or_ends(const std::string& s, const Value& affix, bool starts, const char* what) {
  auto one = [&](const Value& a) {
    const std::string& x = need_string(a, what);
    if (x.size() > s.size()) return false;
    return starts ? s.compare(0, x.size(), x) == 0 : s.compare(s.size() - x.size(), x.size(), x) == 0;
  };
  if (affix.is_list()) {
    for (const Value& a : affix.as_list())
      if (one(a)) return true;
    return false;
  }
  return one(affix);
}

Value string_method(const std::string& s, const std::string& m, CallArgs& a) {
  auto opt_string = [&](size_t i, const char* key) -> const std::string* {
    const Value* v = arg(a, i, key);
    return v && !v->is_none() ? &need_string(*v, m) : nullptr;
  };
  if (m == "strip" || m == "lstrip" || m == "rstrip")
    return Value(py_strip(s, opt_string(0, "chars"), m == "strip" ? StripSide::kBoth : m == "lstrip" ? StripSide::kLeft : StripSide::kRight));
  if (m == "split") {
    const Value* maxsplit = arg(a, 1, "maxsplit");
    List out;
    const std::string* sep = opt_string(0, "sep");
    if (sep && sep->empty()) builtin_fail("split: empty separator");
    for (auto& piece : py_split(s, sep, maxsplit ? need_int(*maxsplit, "split") : -1)) out.push_back(Value(std::move(piece)));
    return Value(std::move(out));
  }
  if (m == "startswith" || m == "endswith") {
    const Value* affix = arg(a, 0, "prefix");
    if (!affix) builtin_fail("{}() takes at least 1 argument", m);
    return Value(starts_or_ends(s, *affix, m == "startswith", m.c_str()));
  }
  if (m == "replace") {
    const Value *old = arg(a, 0, "old"), *rep = arg(a, 1, "new"), *count = arg(a, 2, "count");
    if (!old || !rep) builtin_fail("replace() takes at least 2 arguments");
    return Value(bounded_replace(s, need_string(*old, m), need_string(*rep, m), count ? need_int(*count, m) : -1));
  }
  if (m == "lower") return Value(py_lower(s));
  if (m == "upper") return Value(py_upper(s));
  if (m == "title") return Value(py_title(s));
  if (m == "capitalize") return Value(py_capitalize(s));
  if (m == "find" || m == "count") {
    const Value* sub = arg(a, 0, "sub");
    if (!sub) builtin_fail("{}() takes at least 1 argument", m);
    const std::string& x = need_string(*sub, m);
    if (m == "find") {
      const size_t f = s.find(x);
      return Value(f == std::string::npos ? int64_t{-1} : static_cast<int64_t>(py_length(std::string_view(s).substr(0, f))));
    }
    int64_t n = 0;
    for (size_t p = s.find(x); p != std::string::npos && !x.empty(); p = s.find(x, p + x.size())) ++n;
    return Value(n);
  }
  if (m == "join") {
    const Value* seq = arg(a, 0, "iterable");
    if (!seq) builtin_fail("join() takes exactly one argument");
    return Value(join(*seq, s, nullptr));
  }
  builtin_fail("unknown method '{}' of str", m);
}

}  // namespace

int64_t python_index(int64_t index, size_t size, bool& in_range) {
  const int64_t n = static_cast<int64_t>(size);
  const int64_t i = index < 0 ? index + n : index;
  in_range = i >= 0 && i < n;
  return i;
}

std::vector<Value> iterate(const Value& v) {
  if (v.is_list()) return v.as_list();
  if (v.is_dict()) {
    std::vector<Value> keys;
    for (const auto& [k, x] : v.as_dict().items) keys.push_back(Value(k));
    return keys;
  }
  if (v.is_string()) {
    std::vector<Value> chars;
    const std::string& s = v.as_string();
    for (size_t i = 0; i < s.size();) {
      const size_t b = i;
      if (utf8_sequence_length(s, i) == 0) ++i;
      else utf8_decode(s, i);
      chars.push_back(Value(s.substr(b, i - b)));
    }
    return chars;
  }
  if (v.is_undefined()) return {};
  builtin_fail("'{}' object is not iterable", v.type_name());
}

Value call_method(const Value& obj, const std::string& m, CallArgs& a) {
  if (obj.is_string()) return string_method(obj.as_string(), m, a);
  if (obj.is_dict() && !obj.is_namespace()) {
    if (m == "items") return items_of(obj);
    if (m == "keys" || m == "values") {
      List out;
      for (const auto& [k, v] : obj.as_dict().items) out.push_back(m == "keys" ? Value(k) : v);
      return Value(std::move(out));
    }
    if (m == "get") {
      const Value* key = arg(a, 0, "key");
      if (!key) builtin_fail("get() takes at least 1 argument");
      const Value* dflt = arg(a, 1, "default");
      const Value* v = key->is_string() ? obj.as_dict().find(key->as_string()) : nullptr;
      return v ? *v : dflt ? *dflt : Value(None{});
    }
    builtin_fail("unknown method '{}' of dict", m);
  }
  if (obj.is_list()) {
    if (m == "append") {
      if (a.positional.size() != 1) builtin_fail("append() takes exactly one argument");
      obj.as_list().push_back(a.positional[0]);
      return Value(None{});
    }
    if (m == "pop") {
      List& l = obj.as_list();
      if (l.empty()) builtin_fail("pop from empty list");
      bool in_range = true;
      const int64_t i = a.positional.empty() ? static_cast<int64_t>(l.size()) - 1 : python_index(need_int(a.positional[0], "pop"), l.size(), in_range);
      if (!in_range) builtin_fail("pop index out of range");
      Value v = l[i];
      l.erase(l.begin() + i);
      return v;
    }
    if (m == "index") {
      const Value* x = arg(a, 0, "value");
      if (!x) builtin_fail("index() takes exactly one argument");
      for (size_t i = 0; i < obj.as_list().size(); ++i)
        if (obj.as_list()[i].equals(*x)) return Value(static_cast<int64_t>(i));
      builtin_fail("{} is not in list", x->repr());
    }
    builtin_fail("unknown method '{}' of list", m);
  }
  builtin_fail("'{}' object has no method '{}'", obj.type_name(), m);
}

Value apply_filter(const std::string& f, const Value& v, CallArgs& a) {
  if (f == "trim") return Value(py_strip(need_string(v, "trim"), arg(a, 0, "chars") ? &need_string(*arg(a, 0, "chars"), "trim") : nullptr, StripSide::kBoth));
  if (f == "length" || f == "count") return Value(length_of(v, f));
  if (f == "string") return Value(v.str());
  if (f == "lower") return Value(py_lower(v.str()));
  if (f == "upper") return Value(py_upper(v.str()));
  if (f == "capitalize") return Value(py_capitalize(v.str()));
  if (f == "title") return Value(py_title(v.str()));
  if (f == "safe" || f == "e" || f == "escape") {
    if (f != "safe") builtin_fail("unsupported filter '{}' (autoescaping is off)", f);
    return v;
  }
  if (f == "tojson") {
    const Value* indent = arg(a, 0, "indent");
    for (const auto& [k, x] : a.keyword)
      if (k != "indent" && k != "ensure_ascii") builtin_fail("tojson: unsupported argument '{}'", k);
    if (const Value* ea = arg(a, 99, "ensure_ascii"); ea && ea->truthy()) builtin_fail("tojson: ensure_ascii=true is not supported");
    if (indent && indent->is_int() && (indent->as_int() < 0 || indent->as_int() > 64))
      builtin_fail("tojson: indent {} is outside 0..64", indent->as_int());
    return Value(v.to_json(indent && indent->is_int() ? static_cast<int>(indent->as_int()) : -1));
  }
  if (f == "default" || f == "d") {
    const Value* dflt = arg(a, 0, "default_value");
    const Value* boolean = arg(a, 1, "boolean");
    const bool use_default = v.is_undefined() || (boolean && boolean->truthy() && !v.truthy());
    return use_default ? (dflt ? *dflt : Value(std::string())) : v;
  }
  if (f == "join") {
    const Value* sep = arg(a, 0, "d");
    return Value(join(v, sep ? need_string(*sep, "join") : std::string(), arg(a, 1, "attribute")));
  }
  if (f == "first" || f == "last") {
    std::vector<Value> items = iterate(v);
    if (items.empty()) return Value::undefined(f + " of empty sequence");
    return f == "first" ? items.front() : items.back();
  }
  if (f == "list") return Value(List(iterate(v)));
  if (f == "reverse") {
    if (v.is_string()) {
      std::vector<Value> chars = iterate(v);
      std::string out;
      for (auto it = chars.rbegin(); it != chars.rend(); ++it) out += it->as_string();
      return Value(std::move(out));
    }
    std::vector<Value> items = iterate(v);
    return Value(List(items.rbegin(), items.rend()));
  }
  if (f == "items") {
    if (v.is_undefined()) return Value(List{});
    if (!v.is_dict()) builtin_fail("items: expected a mapping, found {}", v.type_name());
    return items_of(v);
  }
  if (f == "int") {
    if (v.is_int()) return v;
    if (v.is_bool()) return Value(int64_t{v.as_bool()});
    if (v.is_float()) {
      const double x = std::trunc(v.as_number());
      if (!(x >= -0x1p63 && x < 0x1p63)) builtin_fail("int: {} does not fit in 64 bits", v.as_number());
      return Value(static_cast<int64_t>(x));
    }
    try {
      return Value(static_cast<int64_t>(std::stoll(v.str())));
    } catch (const std::exception&) {
      const Value* dflt = arg(a, 0, "default");
      return dflt ? *dflt : Value(int64_t{0});
    }
  }
  if (f == "float") {
    if (v.is_number() || v.is_bool()) return Value(v.as_number());
    try {
      return Value(std::stod(v.str()));
    } catch (const std::exception&) {
      return Value(0.0);
    }
  }
  if (f == "abs") {
    if (v.is_int()) {
      if (v.as_int() == INT64_MIN) builtin_fail("abs: integer overflow");
      return Value(v.as_int() < 0 ? -v.as_int() : v.as_int());
    }
    if (v.is_float()) return Value(std::fabs(v.as_number()));
    builtin_fail("abs: expected a number, found {}", v.type_name());
  }
  if (f == "replace") {
    const Value *old = arg(a, 0, "old"), *rep = arg(a, 1, "new"), *count = arg(a, 2, "count");
    if (!old || !rep) builtin_fail("replace filter takes 2 arguments");
    return Value(bounded_replace(v.str(), need_string(*old, f), need_string(*rep, f), count ? need_int(*count, f) : -1));
  }
  builtin_fail("unsupported filter '{}'", f);
}

bool apply_test(const std::string& t, const Value& v, CallArgs& a) {
  auto other = [&]() -> const Value& {
    if (a.positional.empty()) builtin_fail("test '{}' needs an argument", t);
    return a.positional[0];
  };
  if (t == "defined") return !v.is_undefined();
  if (t == "undefined") return v.is_undefined();
  if (t == "none") return v.is_none();
  if (t == "string") return v.is_string();
  if (t == "number") return v.is_number();
  if (t == "integer") return v.is_int();
  if (t == "float") return v.is_float();
  if (t == "boolean") return v.is_bool();
  if (t == "true") return v.is_bool() && v.as_bool();
  if (t == "false") return v.is_bool() && !v.as_bool();
  if (t == "mapping") return v.is_dict();
  if (t == "sequence") return v.is_list() || v.is_string() || v.is_dict();
  if (t == "iterable") return v.is_list() || v.is_string() || v.is_dict();
  if (t == "callable") return v.is_function();
  if (t == "odd" || t == "even") {
    if (!v.is_int()) builtin_fail("test '{}' needs an integer, found {}", t, v.type_name());
    return (v.as_int() % 2 != 0) == (t == "odd");
  }
  if (t == "divisibleby") return v.is_int() && other().is_int() && other().as_int() != 0 &&
                                  (other().as_int() == -1 || v.as_int() % other().as_int() == 0);
  if (t == "eq" || t == "equalto" || t == "==" || t == "sameas") return v.equals(other());
  if (t == "ne" || t == "!=") return !v.equals(other());
  if (t == "lower") return v.is_string() && py_lower(v.as_string()) == v.as_string();
  if (t == "upper") return v.is_string() && py_upper(v.as_string()) == v.as_string();
  if (t == "in") {
    const Value& c = other();
    if (c.is_string()) return v.is_string() && c.as_string().find(v.as_string()) != std::string::npos;
    for (const Value& x : iterate(c))
      if (x.equals(v)) return true;
    return false;
  }
  if (t == "lt" || t == "gt" || t == "le" || t == "ge") {
    const Value& o = other();
    if (!(v.is_number() && o.is_number())) builtin_fail("test '{}' needs numbers", t);
    const double x = v.as_number(), y = o.as_number();
    return t == "lt" ? x < y : t == "gt" ? x > y : t == "le" ? x <= y : x >= y;
  }
  builtin_fail("unsupported test '{}'", t);
}

Value global_function(const std::string& name) {
  if (name == "namespace" || name == "dict") {
    const bool ns = name == "namespace";
    return Value(Function([ns](CallArgs& a) -> Value {
      Value d = Value::new_dict(ns);
      for (const Value& p : a.positional) {
        if (!p.is_dict()) builtin_fail("namespace()/dict(): positional argument must be a mapping");
        for (const auto& [k, v] : p.as_dict().items) d.as_dict().set(k, v);
      }
      for (auto& [k, v] : a.keyword) d.as_dict().set(k, v);
      return d;
    }));
  }
  if (name == "range") {
    return Value(Function([](CallArgs& a) -> Value {
      if (a.positional.empty() || a.positional.size() > 3) builtin_fail("range() takes 1 to 3 integer arguments");
      for (const Value& p : a.positional)
        if (!p.is_int()) builtin_fail("range(): arguments must be integers, found {}", p.type_name());
      int64_t start = 0, stop, step = 1;
      if (a.positional.size() == 1) stop = a.positional[0].as_int();
      else {
        start = a.positional[0].as_int();
        stop = a.positional[1].as_int();
        if (a.positional.size() == 3) step = a.positional[2].as_int();
      }
      if (step == 0) builtin_fail("range() step must not be zero");
      // The length in 128 bits, so that no bound or step overflows; a list too long to walk is
      // refused before it is built.
      const __int128 span = step > 0 ? __int128{stop} - start : __int128{start} - stop;
      const __int128 n = span <= 0 ? 0 : (span + (step > 0 ? step : -__int128{step}) - 1) / (step > 0 ? step : -__int128{step});
      if (n > Evaluator::kMaxRangeItems)
        builtin_fail("range({}, {}, {}) has more than {} items", start, stop, step, Evaluator::kMaxRangeItems);
      List out;
      out.reserve(static_cast<size_t>(n));
      for (int64_t k = 0; k < static_cast<int64_t>(n); ++k) out.push_back(Value(start + k * step));
      return Value(std::move(out));
    }));
  }
  if (name == "raise_exception") {
    return Value(Function([](CallArgs& a) -> Value {
      builtin_fail("template raised an exception: {}", a.positional.empty() ? std::string() : a.positional[0].str());
    }));
  }
  return Value::undefined(name);
}

}  // namespace dsserve::text::jinja
