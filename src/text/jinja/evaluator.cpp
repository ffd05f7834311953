// Evaluation of expressions and rendering of statements (see evaluator.h, ast.h).
#include "text/jinja/evaluator.h"

#include <algorithm>
#include <climits>
#include <cmath>

#include "core/error.h"
#include "text/jinja/builtins.h"
#include "text/utf8.h"

namespace dsserve::text::jinja {
namespace {

// Evaluates call arguments.
CallArgs evaluate(const Arguments& a, Evaluator& ev) {
  CallArgs args;
  args.positional.reserve(a.positional.size());
  for (const auto& e : a.positional) args.positional.push_back(e->eval(ev));
  for (const auto& [k, e] : a.keyword) args.keyword.emplace_back(k, e->eval(ev));
  return args;
}

// Runs a built-in, turning its BuiltinError into a located dsserve::Error.
template <typename F>
auto located(Evaluator& ev, int line, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const BuiltinError& e) {
    ev.error(line, e.what());
  }
}

std::vector<uint32_t> code_points(const std::string& s) {
  std::vector<uint32_t> cps;
  for (size_t i = 0; i < s.size();) cps.push_back(utf8_decode(s, i));
  return cps;
}

// An int or bool operand as an integer (bools count as 0 and 1, as in Python).
int64_t integer(const Value& v) { return v.is_int() ? v.as_int() : int64_t{v.as_bool()}; }

// Integer arithmetic as Python does it, except that a result beyond 64 bits is an error.
Value integer_arithmetic(const std::string& op, int64_t x, int64_t y, Evaluator& ev, int line) {
  int64_t r = 0;
  bool overflow = false;
  if (op == "+") overflow = __builtin_add_overflow(x, y, &r);
  else if (op == "-") overflow = __builtin_sub_overflow(x, y, &r);
  else if (op == "*") overflow = __builtin_mul_overflow(x, y, &r);
  else if (op == "**") {
    if (y < 0) return Value(std::pow(static_cast<double>(x), static_cast<double>(y)));
    r = 1;
    for (int64_t base = x, e = y; e > 0 && !overflow; e >>= 1) {
      if (e & 1) overflow = __builtin_mul_overflow(r, base, &r);
      if (e > 1 && !overflow) overflow = __builtin_mul_overflow(base, base, &base);
    }
  } else {
    if (y == 0) ev.error(line, fmt::format("division by zero in '{}'", op));
    if (op == "/") return Value(static_cast<double>(x) / static_cast<double>(y));
    if (x == INT64_MIN && y == -1) overflow = true;  // the one quotient that does not fit
    else if (op == "//" || op == "%") {
      int64_t q = x / y, m = x % y;
      if (m != 0 && ((m < 0) != (y < 0))) --q, m += y;  // floor division, as in Python
      r = op == "//" ? q : m;
    }
  }
  if (overflow) ev.error(line, fmt::format("integer overflow in {} {} {}", x, op, y));
  return Value(r);
}

Value arithmetic(const std::string& op, const Value& a, const Value& b, Evaluator& ev, int line) {
  const bool numbers = (a.is_number() || a.is_bool()) && (b.is_number() || b.is_bool());
  if (numbers && !a.is_float() && !b.is_float() && (op == "+" || op == "-" || op == "*" || op == "**" ||
                                                     op == "/" || op == "//" || op == "%"))
    return integer_arithmetic(op, integer(a), integer(b), ev, line);
  if (op == "+") {
    if (numbers) return Value(a.as_number() + b.as_number());
    if (a.is_string() && b.is_string()) {
      if (a.as_string().size() + b.as_string().size() > Evaluator::kMaxString)
        ev.error(line, fmt::format("string concatenation longer than {} bytes", Evaluator::kMaxString));
      return Value(a.as_string() + b.as_string());
    }
    if (a.is_list() && b.is_list()) {
      List l = a.as_list();
      l.insert(l.end(), b.as_list().begin(), b.as_list().end());
      return Value(std::move(l));
    }
  } else if (op == "*" && ((a.is_string() && b.is_int()) || (a.is_int() && b.is_string()))) {
    const std::string& s = a.is_string() ? a.as_string() : b.as_string();
    const int64_t k = std::max<int64_t>(0, a.is_int() ? a.as_int() : b.as_int());
    if (!s.empty() && static_cast<uint64_t>(k) > Evaluator::kMaxString / s.size())
      ev.error(line, fmt::format("string repetition longer than {} bytes", Evaluator::kMaxString));
    std::string out;
    out.reserve(s.size() * static_cast<size_t>(k));
    for (int64_t i = 0; i < k; ++i) out += s;
    return Value(std::move(out));
  } else if (numbers) {
    const double x = a.as_number(), y = b.as_number();
    if (op == "-") return Value(x - y);
    if (op == "*") return Value(x * y);
    if (op == "**") return Value(std::pow(x, y));
    if (y == 0) ev.error(line, fmt::format("division by zero in '{}'", op));
    if (op == "/") return Value(x / y);
    if (op == "//") return Value(std::floor(x / y));
    if (op == "%") {
      const double m = std::fmod(x, y);
      return Value(m != 0 && ((m < 0) != (y < 0)) ? m + y : m);
    }
  } else if (op == "%" && a.is_string()) {
    ev.error(line, "unsupported construct: '%' string formatting");
  }
  ev.error(line, fmt::format("unsupported operand types for {}: '{}' and '{}'", op, a.type_name(), b.type_name()));
}

int compare(const Value& a, const Value& b, const std::string& op, Evaluator& ev, int line) {
  if ((a.is_number() || a.is_bool()) && (b.is_number() || b.is_bool())) {
    const double x = a.as_number(), y = b.as_number();
    return x < y ? -1 : x > y ? 1 : 0;
  }
  if (a.is_string() && b.is_string()) return a.as_string().compare(b.as_string()) < 0 ? -1 : a.as_string() == b.as_string() ? 0 : 1;
  ev.error(line, fmt::format("'{}' not supported between '{}' and '{}'", op, a.type_name(), b.type_name()));
}

bool contains(const Value& container, const Value& item, Evaluator& ev, int line) {
  if (container.is_string()) {
    if (!item.is_string()) ev.error(line, fmt::format("'in <string>' requires string as left operand, not {}", item.type_name()));
    return container.as_string().find(item.as_string()) != std::string::npos;
  }
  if (container.is_list()) {
    for (const Value& v : container.as_list())
      if (v.equals(item)) return true;
    return false;
  }
  if (container.is_dict()) return item.is_string() && container.as_dict().find(item.as_string()) != nullptr;
  if (container.is_undefined()) ev.error(line, fmt::format("'{}' is undefined", container.undefined_name()));
  ev.error(line, fmt::format("argument of type '{}' is not iterable", container.type_name()));
}

Value loop_object(size_t index, size_t length, const std::vector<Value>& items) {
  Value loop = Value::new_dict();
  Dict& d = loop.as_dict();
  d.items.reserve(10);
  d.items.emplace_back("index", Value(static_cast<int64_t>(index + 1)));
  d.items.emplace_back("index0", Value(static_cast<int64_t>(index)));
  d.items.emplace_back("revindex", Value(static_cast<int64_t>(length - index)));
  d.items.emplace_back("revindex0", Value(static_cast<int64_t>(length - index - 1)));
  d.items.emplace_back("first", Value(index == 0));
  d.items.emplace_back("last", Value(index + 1 == length));
  d.items.emplace_back("length", Value(static_cast<int64_t>(length)));
  d.items.emplace_back("previtem", index > 0 ? items[index - 1] : Value::undefined("loop.previtem"));
  d.items.emplace_back("nextitem", index + 1 < length ? items[index + 1] : Value::undefined("loop.nextitem"));
  d.items.emplace_back("cycle", Value(Function([index](CallArgs& a) -> Value {
                         if (a.positional.empty()) builtin_fail("loop.cycle() needs at least one argument");
                         return a.positional[index % a.positional.size()];
                       })));
  return loop;
}

}  // namespace

void Evaluator::error(int line, const std::string& what) const { fail("{} line {}: {}", name_, line, what); }

Value Evaluator::lookup(const std::string& name) const {
  for (size_t i = scopes_.size(); i-- > 0;) {
    auto it = scopes_[i].find(name);
    if (it != scopes_[i].end()) return it->second;
  }
  Value f = global_function(name);
  return f.is_undefined() ? Value::undefined(name) : f;
}

void Evaluator::render(const Body& body) {
  for (const auto& s : body) {
    s->render(*this);
    if (out_.size() > limits_.max_output)
      fail("{}: the rendered text exceeds the limit of {} bytes", name_, limits_.max_output);
    if (control != Control::kNone) return;
  }
}

void Evaluator::count_iteration(int line) {
  if (++iterations_ > limits_.max_iterations)
    error(line, fmt::format("more than {} loop iterations: the template does too much work", limits_.max_iterations));
}

// ------------------------------------------------------------------ expressions
Value LiteralExpr::eval(Evaluator&) const { return value; }
Value NameExpr::eval(Evaluator& ev) const { return ev.lookup(name); }

Value ListExpr::eval(Evaluator& ev) const {
  List l;
  l.reserve(items.size());
  for (const auto& e : items) l.push_back(e->eval(ev));
  return is_tuple ? Value::tuple(std::move(l)) : Value(std::move(l));
}

Value DictExpr::eval(Evaluator& ev) const {
  Value d = Value::new_dict();
  for (const auto& [k, v] : items) {
    Value key = k->eval(ev);
    if (!key.is_string()) ev.error(line, fmt::format("dict keys must be strings here, found {}", key.type_name()));
    d.as_dict().set(key.as_string(), v->eval(ev));
  }
  return d;
}

Value AttributeExpr::eval(Evaluator& ev) const {
  Value obj = object->eval(ev);
  if (obj.is_undefined()) ev.error(line, fmt::format("'{}' is undefined (reading attribute '{}')", obj.undefined_name(), name));
  if (obj.is_dict())
    if (const Value* v = obj.as_dict().find(name)) return *v;
  return Value::undefined(name);
}

Value IndexExpr::eval(Evaluator& ev) const {
  Value obj = object->eval(ev);
  Value key = index->eval(ev);
  if (obj.is_undefined()) ev.error(line, fmt::format("'{}' is undefined (reading an item)", obj.undefined_name()));
  if (obj.is_dict()) {
    if (key.is_string())
      if (const Value* v = obj.as_dict().find(key.as_string())) return *v;
    return Value::undefined(key.str());
  }
  if ((obj.is_list() || obj.is_string()) && (key.is_int() || key.is_bool())) {
    bool in_range = false;
    if (obj.is_list()) {
      const int64_t i = python_index(static_cast<int64_t>(key.as_number()), obj.as_list().size(), in_range);
      return in_range ? obj.as_list()[i] : Value::undefined("list index out of range");
    }
    const auto cps = code_points(obj.as_string());
    const int64_t i = python_index(static_cast<int64_t>(key.as_number()), cps.size(), in_range);
    if (!in_range) return Value::undefined("string index out of range");
    std::string s;
    utf8_append(s, cps[i]);
    return Value(std::move(s));
  }
  return Value::undefined(key.str());
}

Value SliceExpr::eval(Evaluator& ev) const {
  Value obj = object->eval(ev);
  auto bound = [&](const ExprPtr& e, const char* what) -> std::optional<int64_t> {
    if (!e) return std::nullopt;
    Value v = e->eval(ev);
    if (v.is_none()) return std::nullopt;
    if (!v.is_int()) ev.error(line, fmt::format("slice {} must be an integer, found {}", what, v.type_name()));
    return v.as_int();
  };
  const auto b = bound(start, "start"), e = bound(stop, "stop"), st = bound(step, "step");
  const int64_t k = st.value_or(1);
  if (k == 0) ev.error(line, "slice step cannot be zero");
  auto pick = [&](int64_t n, auto&& take) {
    auto clamp = [&](std::optional<int64_t> x, int64_t dflt) {
      if (!x) return dflt;
      int64_t v = *x < 0 ? *x + n : *x;
      if (k > 0) return std::clamp<int64_t>(v, 0, n);
      return std::clamp<int64_t>(v, -1, n - 1);
    };
    const int64_t from = clamp(b, k > 0 ? 0 : n - 1), to = clamp(e, k > 0 ? n : -1);
    for (int64_t i = from; k > 0 ? i < to : i > to; i += k) take(i);
  };
  if (obj.is_list()) {
    List out;
    const List& l = obj.as_list();
    pick(static_cast<int64_t>(l.size()), [&](int64_t i) { out.push_back(l[i]); });
    return Value(std::move(out));
  }
  if (obj.is_string()) {
    const auto cps = code_points(obj.as_string());
    std::string out;
    pick(static_cast<int64_t>(cps.size()), [&](int64_t i) { utf8_append(out, cps[i]); });
    return Value(std::move(out));
  }
  ev.error(line, fmt::format("cannot slice a value of type '{}'", obj.type_name()));
}

Value CallExpr::eval(Evaluator& ev) const {
  if (auto* attr = dynamic_cast<const AttributeExpr*>(callee.get())) {
    Value obj = attr->object->eval(ev);
    if (obj.is_undefined())
      ev.error(line, fmt::format("'{}' is undefined (calling method '{}')", obj.undefined_name(), attr->name));
    if (obj.is_dict())
      if (const Value* f = obj.as_dict().find(attr->name); f && f->is_function()) {
        CallArgs args = evaluate(this->args, ev);
        return located(ev, line, [&] { return f->as_function()(args); });
      }
    CallArgs args = evaluate(this->args, ev);
    return located(ev, line, [&] { return call_method(obj, attr->name, args); });
  }
  Value f = callee->eval(ev);
  if (!f.is_function()) {
    if (f.is_undefined()) ev.error(line, fmt::format("'{}' is undefined (called as a function)", f.undefined_name()));
    ev.error(line, fmt::format("'{}' object is not callable", f.type_name()));
  }
  CallArgs args = evaluate(this->args, ev);
  return located(ev, line, [&] { return f.as_function()(args); });
}

Value FilterExpr::eval(Evaluator& ev) const {
  Value v = value->eval(ev);
  CallArgs args = evaluate(this->args, ev);
  return located(ev, line, [&] { return apply_filter(name, v, args); });
}

Value TestExpr::eval(Evaluator& ev) const {
  Value v = value->eval(ev);
  CallArgs args = evaluate(this->args, ev);
  const bool r = located(ev, line, [&] { return apply_test(name, v, args); });
  return Value(negated ? !r : r);
}

Value UnaryExpr::eval(Evaluator& ev) const {
  Value v = operand->eval(ev);
  if (op == "not") return Value(!v.truthy());
  if (!v.is_number() && !v.is_bool()) ev.error(line, fmt::format("bad operand type for unary {}: '{}'", op, v.type_name()));
  if (op == "+") return v;
  if (v.is_float()) return Value(-v.as_number());
  const int64_t x = integer(v);
  if (x == INT64_MIN) ev.error(line, fmt::format("integer overflow in -({})", x));
  return Value(-x);
}

Value BinaryExpr::eval(Evaluator& ev) const {
  if (op == "and") {
    Value l = left->eval(ev);
    return l.truthy() ? right->eval(ev) : l;
  }
  if (op == "or") {
    Value l = left->eval(ev);
    return l.truthy() ? l : right->eval(ev);
  }
  Value l = left->eval(ev), r = right->eval(ev);
  if (op == "~") {
    std::string joined = l.str() + r.str();
    if (joined.size() > Evaluator::kMaxString)
      ev.error(line, fmt::format("string concatenation longer than {} bytes", Evaluator::kMaxString));
    return Value(std::move(joined));
  }
  if (op == "==") return Value(l.equals(r));
  if (op == "!=") return Value(!l.equals(r));
  if (op == "<") return Value(compare(l, r, op, ev, line) < 0);
  if (op == ">") return Value(compare(l, r, op, ev, line) > 0);
  if (op == "<=") return Value(compare(l, r, op, ev, line) <= 0);
  if (op == ">=") return Value(compare(l, r, op, ev, line) >= 0);
  if (op == "in") return Value(contains(r, l, ev, line));
  if (op == "not in") return Value(!contains(r, l, ev, line));
  return arithmetic(op, l, r, ev, line);
}

Value ConditionalExpr::eval(Evaluator& ev) const {
  if (condition->eval(ev).truthy()) return then->eval(ev);
  return otherwise ? otherwise->eval(ev) : Value::undefined("conditional expression without else");
}

// ------------------------------------------------------------------ statements
void TextStmt::render(Evaluator& ev) const { ev.out() += text; }

void OutputStmt::render(Evaluator& ev) const {
  Value v = expr->eval(ev);
  if (v.is_string()) ev.out() += v.as_string();
  else ev.out() += v.str();
}

void IfStmt::render(Evaluator& ev) const {
  for (const auto& [cond, body] : branches) {
    if (cond->eval(ev).truthy()) {
      ev.render(body);
      return;
    }
  }
  ev.render(otherwise);
}

void ForStmt::render(Evaluator& ev) const {
  Value seq = iterable->eval(ev);
  if (!seq.is_undefined() && !seq.is_list() && !seq.is_dict() && !seq.is_string())
    ev.error(line, fmt::format("'{}' object is not iterable", seq.type_name()));
  std::vector<Value> all = located(ev, line, [&] { return iterate(seq); });
  auto bind = [&](const Value& item) {
    if (targets.size() == 1) {
      ev.assign(targets[0], item);
      return;
    }
    if (!item.is_list() || item.as_list().size() != targets.size())
      ev.error(line, fmt::format("cannot unpack {} into {} loop variables", item.repr(), targets.size()));
    for (size_t k = 0; k < targets.size(); ++k) ev.assign(targets[k], item.as_list()[k]);
  };
  std::vector<Value> items;
  if (filter) {
    ev.push_scope();
    for (const Value& item : all) {
      bind(item);
      if (filter->eval(ev).truthy()) items.push_back(item);
    }
    ev.pop_scope();
  } else {
    items = std::move(all);
  }
  ++ev.loop_depth;
  for (size_t i = 0; i < items.size(); ++i) {
    ev.count_iteration(line);
    ev.push_scope();  // each iteration sees a fresh scope, as in Jinja2
    bind(items[i]);
    ev.assign("loop", loop_object(i, items.size(), items));
    ev.render(body);
    ev.pop_scope();
    if (ev.control == Evaluator::Control::kBreak) {
      ev.control = Evaluator::Control::kNone;
      break;
    }
    ev.control = Evaluator::Control::kNone;
  }
  --ev.loop_depth;
  if (items.empty()) ev.render(otherwise);
}

void SetStmt::render(Evaluator& ev) const {
  Value v;
  if (value) {
    v = value->eval(ev);
  } else {
    std::string saved;
    saved.swap(ev.out());
    ev.render(block);
    v = Value(std::move(ev.out()));
    ev.out() = std::move(saved);
  }
  if (!attribute.empty()) {
    Value ns = ev.lookup(name);
    if (!ns.is_namespace()) ev.error(line, fmt::format("cannot assign attribute '{}' on '{}': not a namespace()", attribute, name));
    // A namespace is the only value a template can change after making it, so this is the one
    // place a cycle (which reference counting would never free, and printing would follow
    // forever) or an ever deeper value (a loop wrapping it again each iteration) can arise.
    const Value::Reach r = v.reach(&ns.as_dict());
    if (r.holds)
      ev.error(line, fmt::format("cannot assign attribute '{}' on '{}': the value holds the namespace itself", attribute, name));
    if (r.depth > Evaluator::kMaxNesting)
      ev.error(line, fmt::format("cannot assign attribute '{}' on '{}': the value nests {} levels deep (at most {})",
                                 attribute, name, r.depth, Evaluator::kMaxNesting));
    ns.as_dict().set(attribute, std::move(v));
  } else if (!unpack.empty()) {
    if (!v.is_list() || v.as_list().size() != unpack.size())
      ev.error(line, fmt::format("cannot unpack {} into {} names", v.repr(), unpack.size()));
    for (size_t k = 0; k < unpack.size(); ++k) ev.assign(unpack[k], v.as_list()[k]);
  } else {
    ev.assign(name, std::move(v));
  }
}

void LoopControlStmt::render(Evaluator& ev) const {
  if (ev.loop_depth == 0) ev.error(line, fmt::format("'{}' outside of a for loop", is_break ? "break" : "continue"));
  ev.control = is_break ? Evaluator::Control::kBreak : Evaluator::Control::kContinue;
}

}  // namespace dsserve::text::jinja
