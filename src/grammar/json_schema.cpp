// JSON Schema -> grammar (see json_schema.h). One compiler per schema document: $ref targets
// become rules (named by their pointer), so recursive schemas are recursive rules; everything else
// is built inline as expressions.
#include "grammar/json_schema.h"

#include <fmt/format.h>

#include <functional>
#include <map>
#include <set>

#include "grammar/grammar_error.h"
#include "grammar/json_numbers.h"
#include "grammar/regex.h"

namespace dsserve::grammar {

namespace {

using ojson = nlohmann::ordered_json;

const std::set<std::string> kAnnotations = {"$schema", "$id", "$comment", "title", "description", "default", "examples",
                                            "deprecated", "readOnly", "writeOnly", "$defs", "definitions", "$anchor",
                                            "contentMediaType", "contentEncoding", "strict"};
const std::set<std::string> kHandled = {"type", "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "properties",
                                        "required", "additionalProperties", "items", "prefixItems", "additionalItems",
                                        "minItems", "maxItems", "minLength", "maxLength", "pattern", "format", "minimum",
                                        "maximum", "exclusiveMinimum", "exclusiveMaximum", "uniqueItems"};

std::string pointer_token(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '~') out += "~0";
    else if (c == '/') out += "~1";
    else out += c;
  }
  return out;
}

// Member names beyond the declared properties (additionalProperties) have at most this many characters.
constexpr int kMaxExtraNameChars = 32;

const std::map<std::string, std::string> kFormats = {
    {"date", R"(\d{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12]\d|3[01])|(?:0[469]|11)-(?:0[1-9]|[12]\d|30)|02-(?:0[1-9]|1\d|2[0-8])))"},
    {"time", R"((?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{1,6})?(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d))"},
    {"date-time", R"(\d{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12]\d|3[01])|(?:0[469]|11)-(?:0[1-9]|[12]\d|30)|02-(?:0[1-9]|1\d|2[0-8]))T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{1,6})?(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d))"},
    {"email", R"([a-z0-9]{1,20}(?:\.[a-z0-9]{1,20}){0,2}@(?:[a-z0-9]{1,20}\.){1,3}[a-z]{2,6})"},
    {"uuid", R"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"},
    {"ipv4", R"((?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d))"},
};

class SchemaCompiler {
 public:
  SchemaCompiler(Grammar& g, const ojson& root, std::string where) : g_(g), root_(root), where_(std::move(where)) {}

  ExprId value(const ojson& s, const std::string& path) {
    if (s.is_boolean()) {
      if (s.get<bool>()) return json_any_value(g_);
      fail("the schema 'false' accepts no value", path);
    }
    if (!s.is_object()) fail("a schema must be an object or a boolean", path);
    for (auto it = s.begin(); it != s.end(); ++it)
      if (!kAnnotations.count(it.key()) && !kHandled.count(it.key()))
        fail(fmt::format("unsupported JSON Schema keyword '{}'", it.key()), path + "/" + pointer_token(it.key()));
    if (auto it = s.find("$ref"); it != s.end()) {
      for (auto k = s.begin(); k != s.end(); ++k)
        if (k.key() != "$ref" && !kAnnotations.count(k.key()))
          fail(fmt::format("keyword '{}' beside $ref is not supported (wrap them in allOf)", k.key()), path + "/" + pointer_token(k.key()));
      return g_.ref(ref_rule(*it, path + "/$ref"));
    }
    if (auto it = s.find("allOf"); it != s.end()) {
      if (!it->is_array() || it->empty()) fail("allOf must be a non-empty list", path + "/allOf");
      ojson merged = s;
      merged.erase("allOf");
      for (size_t i = 0; i < it->size(); ++i) merged = merge(merged, resolve((*it)[i], path), fmt::format("{}/allOf/{}", path, i));
      return value(merged, path);
    }
    for (const char* k : {"anyOf", "oneOf"}) {
      auto it = s.find(k);
      if (it == s.end()) continue;
      if (!it->is_array() || it->empty()) fail(fmt::format("{} must be a non-empty list", k), path + "/" + k);
      ojson rest = s;
      rest.erase(k);
      const bool plain = !has_constraints(rest);
      std::vector<ExprId> alts;
      for (size_t i = 0; i < it->size(); ++i) {
        const std::string p = fmt::format("{}/{}/{}", path, k, i);
        alts.push_back(plain ? value((*it)[i], p) : value(merge(rest, resolve((*it)[i], p), p), p));
      }
      return g_.alt(alts);
    }
    if (s.contains("const")) return g_.bytes(s["const"].dump());
    if (auto it = s.find("enum"); it != s.end()) {
      if (!it->is_array() || it->empty()) fail("enum must be a non-empty list", path + "/enum");
      std::vector<ExprId> alts;
      for (const ojson& v : *it)
        if (type_allows(s, v)) alts.push_back(g_.bytes(v.dump()));
      if (alts.empty()) fail("no enum value has the schema's type", path + "/enum");
      return g_.alt(alts);
    }
    std::vector<std::string> types;
    if (auto it = s.find("type"); it != s.end()) {
      if (it->is_string()) types.push_back(*it);
      else if (it->is_array())
        for (auto& t : *it) {
          if (!t.is_string()) fail("type must be a string or a list of strings", path + "/type");
          types.push_back(t);
        }
      else fail("type must be a string or a list of strings", path + "/type");
      if (types.empty()) fail("type lists no type", path + "/type");
    } else {
      types = implied_types(s);
      if (types.empty()) return json_any_value(g_);
    }
    std::vector<ExprId> alts;
    for (const std::string& t : types) alts.push_back(typed(s, t, path));
    return g_.alt(alts);
  }

 private:
  [[noreturn]] void fail(const std::string& what, const std::string& path) const {
    throw GrammarError("json_schema: " + what, where_ + (path.empty() ? "/" : path));
  }

  static bool has_constraints(const ojson& s) {
    for (auto it = s.begin(); it != s.end(); ++it)
      if (!kAnnotations.count(it.key())) return true;
    return false;
  }

  static std::vector<std::string> implied_types(const ojson& s) {
    std::vector<std::string> t;
    auto any = [&](std::initializer_list<const char*> keys) {
      for (const char* k : keys)
        if (s.contains(k)) return true;
      return false;
    };
    if (any({"properties", "required", "additionalProperties"})) t.push_back("object");
    if (any({"items", "prefixItems", "minItems", "maxItems", "additionalItems"})) t.push_back("array");
    if (any({"minLength", "maxLength", "pattern", "format"})) t.push_back("string");
    if (any({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"})) t.push_back("number");
    return t;
  }

  static bool type_allows(const ojson& s, const ojson& v) {
    auto it = s.find("type");
    if (it == s.end()) return true;
    std::vector<std::string> types;
    if (it->is_string()) types.push_back(*it);
    else if (it->is_array())
      for (auto& t : *it) types.push_back(t.get<std::string>());
    for (const std::string& t : types) {
      if (t == "string" && v.is_string()) return true;
      if (t == "number" && v.is_number()) return true;
      if (t == "integer" && (v.is_number_integer() || (v.is_number_float() && v.get<double>() == double(int64_t(v.get<double>())))))
        return true;
      if (t == "boolean" && v.is_boolean()) return true;
      if (t == "null" && v.is_null()) return true;
      if (t == "object" && v.is_object()) return true;
      if (t == "array" && v.is_array()) return true;
    }
    return false;
  }

  // The schema a $ref points at (one level), else the schema itself.
  ojson resolve(const ojson& s, const std::string& path) {
    if (s.is_object() && s.contains("$ref")) {
      const ojson& target = lookup(s["$ref"], path + "/$ref");
      ojson rest = s;
      rest.erase("$ref");
      return has_constraints(rest) ? merge(rest, target, path) : target;
    }
    return s;
  }

  const ojson& lookup(const ojson& ref, const std::string& path) {
    if (!ref.is_string()) fail("$ref must be a string", path);
    const std::string r = ref.get<std::string>();
    if (r.empty() || r[0] != '#') fail(fmt::format("only local references ('#...') are supported, found '{}'", r), path);
    try {
      const std::string pointer = r.substr(1);
      return pointer.empty() ? root_ : root_.at(ojson::json_pointer(pointer));
    } catch (const std::exception&) {
      fail(fmt::format("$ref '{}' points at nothing in the schema", r), path);
    }
  }

  int32_t ref_rule(const ojson& ref, const std::string& path) {
    const ojson& target = lookup(ref, path);
    const std::string r = ref.get<std::string>();
    auto it = ref_rules_.find(r);
    if (it != ref_rules_.end()) return it->second;
    const int32_t rule = g_.declare_rule(where_ + r);
    ref_rules_[r] = rule;
    g_.define_rule(rule, value(target, r.substr(1)));
    return rule;
  }

  // allOf: two schemas as one, where their keywords combine.
  ojson merge(const ojson& a_in, const ojson& b_in, const std::string& path) {
    if (a_in.is_boolean() && a_in.get<bool>()) return b_in;
    if (b_in.is_boolean() && b_in.get<bool>()) return a_in;
    if (!a_in.is_object() || !b_in.is_object()) fail("allOf: the schemas cannot be combined", path);
    ojson out = a_in;
    for (auto it = b_in.begin(); it != b_in.end(); ++it) {
      const std::string& k = it.key();
      const ojson& vb = it.value();
      if (!out.contains(k)) {
        out[k] = vb;
        continue;
      }
      ojson& va = out[k];
      if (va == vb || kAnnotations.count(k)) continue;
      if (k == "type") {
        auto list = [](const ojson& t) {
          std::set<std::string> s;
          if (t.is_string()) s.insert(t.get<std::string>());
          else for (auto& x : t) s.insert(x.get<std::string>());
          return s;
        };
        std::set<std::string> ta = list(va), tb = list(vb);
        if (ta.count("number")) ta.insert("integer");
        if (tb.count("number")) tb.insert("integer");
        ojson both = ojson::array();
        for (auto& t : ta)
          if (tb.count(t)) both.push_back(t);
        if (both.empty()) fail("allOf: the branches' types have nothing in common", path + "/type");
        va = both.size() == 1 ? both[0] : both;
      } else if (k == "properties") {
        for (auto p = vb.begin(); p != vb.end(); ++p)
          va[p.key()] = va.contains(p.key()) ? merge(va[p.key()], p.value(), path + "/properties/" + pointer_token(p.key())) : p.value();
      } else if (k == "required") {
        for (auto& r : vb)
          if (std::find(va.begin(), va.end(), r) == va.end()) va.push_back(r);
      } else if (k == "additionalProperties" || k == "items") {
        va = (va.is_boolean() && !va.get<bool>()) || (vb.is_boolean() && !vb.get<bool>()) ? ojson(false) : merge(va, vb, path + "/" + k);
      } else if (k == "minimum" || k == "minLength" || k == "minItems" || k == "exclusiveMinimum") {
        if (vb.is_number() && va.is_number() && vb.get<double>() > va.get<double>()) va = vb;
      } else if (k == "maximum" || k == "maxLength" || k == "maxItems" || k == "exclusiveMaximum") {
        if (vb.is_number() && va.is_number() && vb.get<double>() < va.get<double>()) va = vb;
      } else if (k == "enum") {
        ojson both = ojson::array();
        for (auto& x : va)
          if (std::find(vb.begin(), vb.end(), x) != vb.end()) both.push_back(x);
        if (both.empty()) fail("allOf: the branches' enums have no value in common", path + "/enum");
        va = both;
      } else {
        fail(fmt::format("allOf: cannot combine two different '{}'", k), path + "/" + pointer_token(k));
      }
    }
    return out;
  }

  ExprId typed(const ojson& s, const std::string& t, const std::string& path) {
    if (t == "string") return string_value(s, path);
    if (t == "integer" || t == "number") return number_value(s, t == "integer", path);
    if (t == "boolean") return g_.alt({g_.bytes("true"), g_.bytes("false")});
    if (t == "null") return g_.bytes("null");
    if (t == "object") return object_value(s, path);
    if (t == "array") return array_value(s, path);
    fail(fmt::format("unknown type '{}'", t), path + "/type");
  }

  int count(const ojson& s, const char* key, const std::string& path, int dflt) {
    auto it = s.find(key);
    if (it == s.end()) return dflt;
    if (!it->is_number_integer() || it->get<int64_t>() < 0) fail(fmt::format("{} must be a non-negative integer", key), path + "/" + key);
    if (it->get<int64_t>() > 100000) fail(fmt::format("{} above 100000 is not supported", key), path + "/" + key);
    return int(it->get<int64_t>());
  }

  ExprId string_value(const ojson& s, const std::string& path) {
    const int min = count(s, "minLength", path, 0), max = count(s, "maxLength", path, -1);
    const bool lengths = s.contains("minLength") || s.contains("maxLength");
    if (max >= 0 && max < min) fail("maxLength is below minLength", path + "/maxLength");
    ExprId quote = g_.bytes("\"");
    if (auto it = s.find("pattern"); it != s.end()) {
      if (!it->is_string()) fail("pattern must be a string", path + "/pattern");
      if (lengths) fail("pattern together with minLength/maxLength is not supported", path + "/pattern");
      if (s.contains("format")) fail("pattern together with format is not supported", path + "/format");
      try {
        return g_.seq({quote, regex_to_expr(g_, it->get<std::string>(), {true, true}), quote});
      } catch (const GrammarError& e) {
        fail(fmt::format("invalid pattern: {}", e.what()), path + "/pattern");
      }
    }
    if (auto it = s.find("format"); it != s.end()) {
      if (!it->is_string()) fail("format must be a string", path + "/format");
      auto f = kFormats.find(it->get<std::string>());
      if (f == kFormats.end()) fail(fmt::format("unsupported string format '{}' (supported: date, time, date-time, email, uuid, ipv4)", it->get<std::string>()), path + "/format");
      if (lengths) fail("format together with minLength/maxLength is not supported", path + "/format");
      return g_.seq({quote, regex_to_expr(g_, f->second, {true, false}), quote});
    }
    return g_.seq({quote, g_.repeat(json_string_char(g_), min, max), quote});
  }

  ExprId number_value(const ojson& s, bool integer, const std::string& path) {
    std::optional<DecimalBound> lo, hi;
    auto bound = [&](const char* key, bool exclusive, std::optional<DecimalBound>& out, bool lower) {
      auto it = s.find(key);
      if (it == s.end() || it->is_boolean()) return;
      if (!it->is_number()) fail(fmt::format("{} must be a number", key), path + "/" + key);
      // draft-04: exclusiveMinimum / exclusiveMaximum as booleans beside minimum / maximum.
      const char* flag = lower ? "exclusiveMinimum" : "exclusiveMaximum";
      if (!exclusive && s.contains(flag) && s[flag].is_boolean()) exclusive = s[flag].get<bool>();
      const double v = it->get<double>();
      if (out) {
        const double cur = std::stod((out->negative ? "-" : "") + out->int_digits + "." + out->frac_digits + "0");
        const bool tighter = lower ? (v > cur || (v == cur && exclusive)) : (v < cur || (v == cur && exclusive));
        if (!tighter) return;
      }
      out = parse_decimal_bound(it->is_number_float() ? fmt::format("{}", v) : it->dump(), exclusive);
    };
    bound("minimum", false, lo, true);
    bound("exclusiveMinimum", true, lo, true);
    bound("maximum", false, hi, false);
    bound("exclusiveMaximum", true, hi, false);
    ExprId e = integer ? integer_range(g_, lo, hi) : number_range(g_, lo, hi);
    if (g_.expr(e).kind == Expr::Kind::Nothing) fail("no number satisfies the bounds", path);
    return e;
  }

  // A member name that is none of `names` and needs no escape.
  ExprId name_not_in(const std::vector<std::string>& names) {
    const CodepointRanges plain = complement({{0, 0x1F}, {'"', '"'}, {'\\', '\\'}});
    // Trie over the names' code points.
    struct Node {
      std::map<uint32_t, int> child;
      bool terminal = false;
    };
    std::vector<Node> nodes(1);
    for (const std::string& n : names) {
      int cur = 0;
      for (size_t i = 0; i < n.size();) {
        const unsigned char c = static_cast<unsigned char>(n[i]);
        int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : 4;
        uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
        for (int k = 1; k < len && i + size_t(k) < n.size(); ++k) cp = (cp << 6) | (static_cast<unsigned char>(n[i + size_t(k)]) & 0x3F);
        i += size_t(len);
        auto it = nodes[size_t(cur)].child.find(cp);
        if (it == nodes[size_t(cur)].child.end()) {
          nodes.emplace_back();
          it = nodes[size_t(cur)].child.emplace(cp, int(nodes.size() - 1)).first;
        }
        cur = it->second;
      }
      nodes[size_t(cur)].terminal = true;
    }
    // not_in(n, d): the rest of a name whose first d characters led to trie node n.
    std::function<ExprId(int, int)> not_in = [&](int n, int d) -> ExprId {
      std::vector<ExprId> alts;
      if (!nodes[size_t(n)].terminal) alts.push_back(g_.empty());
      CodepointRanges used;
      for (auto& [cp, c] : nodes[size_t(n)].child) {
        used.push_back({cp, cp});
        if (contains(plain, cp) && d < kMaxExtraNameChars) alts.push_back(g_.seq({g_.cls({{cp, cp}}), not_in(c, d + 1)}));
      }
      if (d < kMaxExtraNameChars)
        alts.push_back(g_.seq({g_.cls(subtract(plain, normalize(used))), g_.repeat(g_.cls(plain), 0, kMaxExtraNameChars - d - 1)}));
      return g_.alt(alts);
    };
    return not_in(0, 0);
  }

  ExprId object_value(const ojson& s, const std::string& path) {
    struct Member {
      std::string name;
      ExprId pair;
      bool required;
    };
    std::vector<Member> members;
    std::set<std::string> required;
    if (auto it = s.find("required"); it != s.end()) {
      if (!it->is_array()) fail("required must be a list of names", path + "/required");
      for (auto& r : *it) {
        if (!r.is_string()) fail("required must be a list of names", path + "/required");
        required.insert(r.get<std::string>());
      }
    }
    const ojson* props = nullptr;
    if (auto it = s.find("properties"); it != s.end()) {
      if (!it->is_object()) fail("properties must be an object", path + "/properties");
      props = &*it;
    }
    // additionalProperties: absent means none when properties are listed, any otherwise.
    const ojson* extra_schema = nullptr;
    bool extra = props == nullptr;
    if (auto it = s.find("additionalProperties"); it != s.end()) {
      if (it->is_boolean()) extra = it->get<bool>();
      else extra = true, extra_schema = &*it;
    }
    std::vector<std::string> names;
    if (props)
      for (auto p = props->begin(); p != props->end(); ++p) {
        names.push_back(p.key());
        ExprId v = value(p.value(), path + "/properties/" + pointer_token(p.key()));
        members.push_back({p.key(), g_.seq({g_.bytes(ojson(p.key()).dump() + ":"), v}), required.count(p.key()) > 0});
      }
    for (const std::string& r : required)
      if (std::find(names.begin(), names.end(), r) == names.end()) {
        if (!extra) fail(fmt::format("'{}' is required but additionalProperties forbids it", r), path + "/required");
        ExprId v = extra_schema ? value(*extra_schema, path + "/additionalProperties") : json_any_value(g_);
        members.push_back({r, g_.seq({g_.bytes(ojson(r).dump() + ":"), v}), true});
        names.push_back(r);
      }
    ExprId extra_pair = g_.nothing();
    if (extra) {
      ExprId v = extra_schema ? value(*extra_schema, path + "/additionalProperties") : json_any_value(g_);
      extra_pair = g_.seq({g_.bytes("\""), name_not_in(names), g_.bytes("\":"), v});
    }
    // tail(i, emitted): the members from i on, after `emitted` says whether one came before.
    std::map<std::pair<size_t, bool>, ExprId> memo;
    std::function<ExprId(size_t, bool)> tail = [&](size_t i, bool emitted) -> ExprId {
      if (auto it = memo.find({i, emitted}); it != memo.end()) return it->second;
      ExprId e;
      if (i == members.size()) {
        ExprId more = g_.repeat(g_.seq({g_.bytes(","), extra_pair}), 0, -1);
        e = !extra ? g_.empty() : emitted ? more : g_.opt(g_.seq({extra_pair, more}));
      } else {
        ExprId with = g_.seq({emitted ? g_.bytes(",") : g_.empty(), members[i].pair, tail(i + 1, true)});
        e = members[i].required ? with : g_.alt({with, tail(i + 1, emitted)});
      }
      memo[{i, emitted}] = e;
      return e;
    };
    return g_.seq({g_.bytes("{"), tail(0, false), g_.bytes("}")});
  }

  ExprId array_value(const ojson& s, const std::string& path) {
    if (auto it = s.find("uniqueItems"); it != s.end() && it->is_boolean() && it->get<bool>())
      fail("uniqueItems is not supported", path + "/uniqueItems");
    std::vector<ExprId> prefix;
    const ojson* items = nullptr;
    std::string items_path = path + "/items";
    if (auto it = s.find("prefixItems"); it != s.end()) {
      if (!it->is_array()) fail("prefixItems must be a list", path + "/prefixItems");
      for (size_t i = 0; i < it->size(); ++i) prefix.push_back(value((*it)[i], fmt::format("{}/prefixItems/{}", path, i)));
      if (auto i2 = s.find("items"); i2 != s.end()) items = &*i2;
    } else if (auto i2 = s.find("items"); i2 != s.end() && i2->is_array()) {
      for (size_t i = 0; i < i2->size(); ++i) prefix.push_back(value((*i2)[i], fmt::format("{}/items/{}", path, i)));
      if (auto a = s.find("additionalItems"); a != s.end()) items = &*a, items_path = path + "/additionalItems";
    } else if (i2 != s.end()) {
      items = &*i2;
    }
    ExprId item = g_.nothing();
    if (!items) item = json_any_value(g_);
    else if (!(items->is_boolean() && !items->get<bool>())) item = value(*items, items_path);
    const bool more = g_.expr(item).kind != Expr::Kind::Nothing;
    const int min = count(s, "minItems", path, 0);
    int max = count(s, "maxItems", path, -1);
    if (max >= 0 && max < min) fail("maxItems is below minItems", path + "/maxItems");
    if (!more && min > int(prefix.size())) fail("minItems needs more items than the schema allows", path + "/minItems");
    if (!more && (max < 0 || max > int(prefix.size()))) max = int(prefix.size());
    if (max >= 0 && max < int(prefix.size())) prefix.resize(size_t(max));
    const int k = std::max<int>(int(prefix.size()), min);
    // After k items: the repeated ones, up to max.
    ExprId rest = g_.empty();
    if (more && (max < 0 || max > k)) {
      const int extra_max = max < 0 ? -1 : max - k;
      if (k == 0) rest = g_.opt(g_.seq({item, g_.repeat(g_.seq({g_.bytes(","), item}), 0, extra_max < 0 ? -1 : extra_max - 1)}));
      else rest = g_.repeat(g_.seq({g_.bytes(","), item}), 0, extra_max);
    }
    ExprId e = rest;
    for (int i = k - 1; i >= 0; --i) {
      ExprId elem = size_t(i) < prefix.size() ? prefix[size_t(i)] : item;
      ExprId with = g_.seq({i > 0 ? g_.bytes(",") : g_.empty(), elem, e});
      e = i < min ? with : g_.alt({g_.empty(), with});
    }
    return g_.seq({g_.bytes("["), e, g_.bytes("]")});
  }

  Grammar& g_;
  const ojson& root_;
  std::string where_;
  std::map<std::string, int32_t> ref_rules_;
};

}  // namespace

ExprId json_any_value(Grammar& g) {
  int32_t r = g.find_rule("json_value");
  if (r >= 0) return g.ref(r);
  r = g.declare_rule("json_value");
  ExprId value = g.ref(r);
  ExprId str = g.seq({g.bytes("\""), g.repeat(json_string_char(g), 0, -1), g.bytes("\"")});
  ExprId pair = g.seq({str, g.bytes(":"), value});
  ExprId object = g.seq({g.bytes("{"), g.opt(g.seq({pair, g.repeat(g.seq({g.bytes(","), pair}), 0, -1)})), g.bytes("}")});
  ExprId array = g.seq({g.bytes("["), g.opt(g.seq({value, g.repeat(g.seq({g.bytes(","), value}), 0, -1)})), g.bytes("]")});
  g.define_rule(r, g.alt({object, array, str, number_range(g, std::nullopt, std::nullopt), g.bytes("true"),
                          g.bytes("false"), g.bytes("null")}));
  return g.ref(r);
}

void build_json_object_grammar(Grammar& g) {
  ExprId value = json_any_value(g);
  ExprId str = g.seq({g.bytes("\""), g.repeat(json_string_char(g), 0, -1), g.bytes("\"")});
  ExprId pair = g.seq({str, g.bytes(":"), value});
  ExprId object = g.seq({g.bytes("{"), g.opt(g.seq({pair, g.repeat(g.seq({g.bytes(","), pair}), 0, -1)})), g.bytes("}")});
  g.root = g.declare_rule("root");
  g.define_rule(g.root, object);
}

ExprId json_schema_expr(Grammar& g, const nlohmann::ordered_json& schema, const std::string& where) {
  return SchemaCompiler(g, schema, where).value(schema, "");
}

void build_json_schema_grammar(Grammar& g, std::string_view schema_text) {
  ojson schema;
  try {
    schema = ojson::parse(schema_text);
  } catch (const ojson::parse_error& e) {
    throw GrammarError(fmt::format("json_schema: not valid JSON: {}", e.what()), fmt::format("offset {}", e.byte));
  }
  ExprId v = json_schema_expr(g, schema, "");
  g.root = g.declare_rule("root");
  g.define_rule(g.root, v);
}

}  // namespace dsserve::grammar
