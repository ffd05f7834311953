// GBNF / EBNF text -> grammar rules (see ebnf.h): a recursive-descent parser; rule names are
// resolved after the whole text is read, so rules may be used before they are defined.
#include "grammar/ebnf.h"

#include <fmt/format.h>

#include <map>

#include "grammar/grammar_error.h"

namespace dsserve::grammar {

namespace {

bool name_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-'; }

class EbnfParser {
 public:
  EbnfParser(Grammar& g, std::string_view t) : g_(g), t_(t) {}

  void parse() {
    skip_space();
    if (pos_ >= t_.size()) error("the grammar is empty");
    while (pos_ < t_.size()) {
      const size_t at = pos_;
      std::string name = rule_name();
      skip_space();
      if (!starts_with("::=")) error("expected '::=' after rule name '" + name + "'");
      pos_ += 3;
      if (defined_.count(name)) {
        pos_ = at;
        error("rule '" + name + "' is defined twice");
      }
      const int32_t r = rule_of(name, at);
      defined_[name] = at;
      g_.define_rule(r, alternation(false));
    }
    for (auto& [name, at] : used_)
      if (!defined_.count(name)) {
        pos_ = at;
        error("rule '" + name + "' is used but never defined");
      }
    const int32_t root = g_.find_rule("root");
    if (root < 0 || !defined_.count("root")) {
      pos_ = 0;
      error("the grammar has no rule named 'root'");
    }
    g_.root = root;
  }

 private:
  [[noreturn]] void error(const std::string& what) const {
    size_t line = 1, col = 1;
    for (size_t i = 0; i < pos_ && i < t_.size(); ++i) {
      if (t_[i] == '\n') ++line, col = 1;
      else ++col;
    }
    throw GrammarError("ebnf: " + what, fmt::format("line {}, column {}", line, col));
  }

  bool starts_with(std::string_view s) const { return t_.substr(pos_, s.size()) == s; }

  void skip_space() {
    while (pos_ < t_.size()) {
      if (std::isspace(static_cast<unsigned char>(t_[pos_]))) {
        ++pos_;
      } else if (t_[pos_] == '#') {
        while (pos_ < t_.size() && t_[pos_] != '\n') ++pos_;
      } else {
        break;
      }
    }
  }

  std::string rule_name() {
    const size_t start = pos_;
    while (pos_ < t_.size() && name_char(t_[pos_])) ++pos_;
    if (pos_ == start) error("expected a rule name");
    return std::string(t_.substr(start, pos_ - start));
  }

  int32_t rule_of(const std::string& name, size_t at) {
    auto it = rules_.find(name);
    if (it != rules_.end()) return it->second;
    const int32_t r = g_.declare_rule(name);
    rules_[name] = r;
    if (!used_.count(name)) used_[name] = at;
    return r;
  }

  // Whether the text at pos_ starts a new rule (`name ::=`).
  bool at_rule_start() const {
    size_t p = pos_;
    while (p < t_.size() && name_char(t_[p])) ++p;
    if (p == pos_) return false;
    while (p < t_.size() && (t_[p] == ' ' || t_[p] == '\t' || t_[p] == '\n' || t_[p] == '\r')) ++p;
    return t_.substr(p, 3) == "::=";
  }

  ExprId alternation(bool nested) {
    std::vector<ExprId> alts = {sequence(nested)};
    while (pos_ < t_.size() && t_[pos_] == '|') {
      ++pos_;
      alts.push_back(sequence(nested));
    }
    return g_.alt(alts);
  }

  ExprId sequence(bool nested) {
    std::vector<ExprId> items;
    while (true) {
      skip_space();
      if (pos_ >= t_.size() || t_[pos_] == '|' || t_[pos_] == ')') break;
      if (!nested && at_rule_start()) break;
      items.push_back(quantified(primary()));
    }
    return g_.seq(items);
  }

  ExprId quantified(ExprId e) {
    while (pos_ < t_.size()) {
      const char c = t_[pos_];
      if (c == '*') {
        ++pos_, e = g_.repeat(e, 0, -1);
      } else if (c == '+') {
        ++pos_, e = g_.repeat(e, 1, -1);
      } else if (c == '?') {
        ++pos_, e = g_.repeat(e, 0, 1);
      } else if (c == '{') {
        ++pos_;
        skip_space();
        const int min = number();
        int max = min;
        skip_space();
        if (pos_ < t_.size() && t_[pos_] == ',') {
          ++pos_;
          skip_space();
          max = pos_ < t_.size() && t_[pos_] == '}' ? -1 : number();
          skip_space();
        }
        if (pos_ >= t_.size() || t_[pos_] != '}') error("expected '}' closing the repetition count");
        ++pos_;
        if (max >= 0 && max < min) error("repetition {m,n} with n < m");
        e = g_.repeat(e, min, max);
      } else {
        break;
      }
    }
    return e;
  }

  int number() {
    if (pos_ >= t_.size() || !std::isdigit(static_cast<unsigned char>(t_[pos_]))) error("expected a number");
    int v = 0;
    while (pos_ < t_.size() && std::isdigit(static_cast<unsigned char>(t_[pos_]))) {
      v = v * 10 + (t_[pos_++] - '0');
      if (v > 10000) error("repetition count above 10000");
    }
    return v;
  }

  ExprId primary() {
    const char c = t_[pos_];
    if (c == '"' || c == '\'') return g_.bytes(literal(c));
    if (c == '[') return g_.cls(char_class());
    if (c == '.') {
      ++pos_;
      return g_.cls({{0, kMaxCodepoint}});
    }
    if (c == '(') {
      ++pos_;
      skip_space();
      if (pos_ < t_.size() && t_[pos_] == '=') error("lookahead assertions (= ...) are not supported");
      ExprId e = alternation(true);
      skip_space();
      if (pos_ >= t_.size() || t_[pos_] != ')') error("missing ')'");
      ++pos_;
      return e;
    }
    if (name_char(c)) {
      const size_t at = pos_;
      std::string name = rule_name();
      return g_.ref(rule_of(name, at));
    }
    error(fmt::format("unexpected character '{}'", c));
  }

  uint32_t hex(int digits) {
    uint32_t v = 0;
    for (int k = 0; k < digits; ++k) {
      if (pos_ >= t_.size() || !std::isxdigit(static_cast<unsigned char>(t_[pos_]))) error("expected a hex digit");
      const char h = t_[pos_++];
      v = v * 16 + uint32_t(std::isdigit(static_cast<unsigned char>(h)) ? h - '0' : (std::tolower(h) - 'a' + 10));
    }
    if (v > kMaxCodepoint || (v >= 0xD800 && v <= 0xDFFF)) error("escape outside the Unicode scalar values");
    return v;
  }

  // One character of a literal or class (escapes decoded), as a code point.
  uint32_t character() {
    if (pos_ >= t_.size()) error("unexpected end of the grammar");
    unsigned char c = static_cast<unsigned char>(t_[pos_]);
    if (c == '\\') {
      ++pos_;
      if (pos_ >= t_.size()) error("the grammar ends with '\\'");
      const char e = t_[pos_++];
      switch (e) {
        case 'n': return '\n';
        case 't': return '\t';
        case 'r': return '\r';
        case 'f': return '\f';
        case 'v': return '\v';
        case 'b': return '\b';
        case '0': return 0;
        case 'x': return hex(2);
        case 'u': return hex(4);
        case 'U': return hex(8);
        case '\\': case '"': case '\'': case '[': case ']': case '-': case '^': case '/': return uint32_t(e);
        default: --pos_; error(fmt::format("unknown escape '\\{}'", e));
      }
    }
    int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || pos_ + size_t(n) > t_.size()) error("invalid UTF-8");
    uint32_t cp = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
    for (int k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(t_[pos_ + size_t(k)]) & 0x3F);
    pos_ += size_t(n);
    return cp;
  }

  std::string literal(char quote) {
    const size_t start = pos_;
    ++pos_;
    std::string out;
    while (true) {
      if (pos_ >= t_.size() || t_[pos_] == '\n') {
        pos_ = start;
        error("unterminated string literal");
      }
      if (t_[pos_] == quote) break;
      out += utf8_encode(character());
    }
    ++pos_;
    return out;
  }

  CodepointRanges char_class() {
    const size_t start = pos_;
    ++pos_;
    bool negated = false;
    if (pos_ < t_.size() && t_[pos_] == '^') ++pos_, negated = true;
    CodepointRanges r;
    while (true) {
      if (pos_ >= t_.size()) {
        pos_ = start;
        error("unterminated character class");
      }
      if (t_[pos_] == ']') break;
      const uint32_t lo = character();
      uint32_t hi = lo;
      if (pos_ + 1 < t_.size() && t_[pos_] == '-' && t_[pos_ + 1] != ']') {
        ++pos_;
        hi = character();
        if (hi < lo) error("range out of order in character class");
      }
      r = unite(r, {{lo, hi}});
    }
    ++pos_;
    return negated ? complement(r) : r;
  }

  Grammar& g_;
  std::string_view t_;
  size_t pos_ = 0;
  std::map<std::string, int32_t> rules_;
  std::map<std::string, size_t> defined_, used_;
};

}  // namespace

void parse_ebnf(Grammar& g, std::string_view text) { EbnfParser(g, text).parse(); }

}  // namespace dsserve::grammar
