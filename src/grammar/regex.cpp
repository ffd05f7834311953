// ECMAScript regular expressions -> grammar expressions (see regex.h): a recursive-descent parser
// over the pattern's code points.
#include "grammar/regex.h"

#include <fmt/format.h>

#include "grammar/grammar_error.h"

namespace dsserve::grammar {

namespace {

const CodepointRanges kDigit = {{'0', '9'}};
const CodepointRanges kWord = {{'0', '9'}, {'A', 'Z'}, {'_', '_'}, {'a', 'z'}};
const CodepointRanges kSpace = normalize({{'\t', '\r'}, {' ', ' '}, {0xA0, 0xA0}, {0x1680, 0x1680}, {0x2000, 0x200A},
                                          {0x2028, 0x2029}, {0x202F, 0x202F}, {0x205F, 0x205F}, {0x3000, 0x3000},
                                          {0xFEFF, 0xFEFF}});
const CodepointRanges kLineTerminators = {{'\n', '\n'}, {'\r', '\r'}, {0x2028, 0x2029}};

// Code points that a JSON string must escape, and the escape written for each.
std::string json_escape(uint32_t cp) {
  switch (cp) {
    case '"': return "\\\"";
    case '\\': return "\\\\";
    case '\b': return "\\b";
    case '\f': return "\\f";
    case '\n': return "\\n";
    case '\r': return "\\r";
    case '\t': return "\\t";
    default: return fmt::format("\\u{:04x}", cp);
  }
}
const CodepointRanges kJsonEscaped = {{0, 0x1F}, {'"', '"'}, {'\\', '\\'}};

class RegexParser {
 public:
  RegexParser(Grammar& g, std::string_view p, const RegexOptions& o) : g_(g), p_(p), opt_(o) {}

  ExprId parse() {
    std::vector<ExprId> alts;
    while (true) {
      bool start_anchor = false, end_anchor = false;
      if (peek_is('^')) ++pos_, start_anchor = true;
      ExprId body = sequence(&end_anchor);
      if (opt_.search) {
        ExprId any = g_.repeat(opt_.json_string ? json_string_char(g_) : g_.cls({{0, kMaxCodepoint}}), 0, -1);
        body = g_.seq({start_anchor ? g_.empty() : any, body, end_anchor ? g_.empty() : any});
      }
      alts.push_back(body);
      if (pos_ >= p_.size()) break;
      if (p_[pos_] == '|') {
        ++pos_;
        continue;
      }
      error(p_[pos_] == ')' ? "unmatched ')'" : "unexpected character");
    }
    return g_.alt(alts);
  }

 private:
  [[noreturn]] void error(const std::string& what) const {
    throw GrammarError("regex: " + what, fmt::format("offset {}", pos_));
  }
  bool peek_is(char c) const { return pos_ < p_.size() && p_[pos_] == c; }

  uint32_t next_cp() {
    if (pos_ >= p_.size()) error("unexpected end of pattern");
    const unsigned char c = static_cast<unsigned char>(p_[pos_]);
    int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || pos_ + size_t(n) > p_.size()) error("invalid UTF-8 in the pattern");
    uint32_t cp = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
    for (int k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(p_[pos_ + size_t(k)]) & 0x3F);
    pos_ += size_t(n);
    return cp;
  }

  // Code points as text of the target (JSON-escaped when asked).
  ExprId chars(const CodepointRanges& r) { return opt_.json_string ? json_string_class(g_, r) : g_.cls(r); }

  // A sequence up to '|' or ')' or the end; a final '$' (top level only) sets *end_anchor.
  ExprId sequence(bool* end_anchor) {
    std::vector<ExprId> items;
    while (pos_ < p_.size() && p_[pos_] != '|' && p_[pos_] != ')') {
      if (p_[pos_] == '$') {
        ++pos_;
        if (!end_anchor || (pos_ < p_.size() && p_[pos_] != '|'))
          error("'$' is supported only at the end of the pattern or of a top-level alternative");
        *end_anchor = true;
        break;
      }
      if (p_[pos_] == '^') error("'^' is supported only at the start of the pattern or of a top-level alternative");
      items.push_back(quantified(atom()));
    }
    return g_.seq(items);
  }

  ExprId quantified(ExprId a) {
    while (pos_ < p_.size()) {
      int min = 0, max = -1;
      const size_t at = pos_;
      const char c = p_[pos_];
      if (c == '*') {
        ++pos_;
      } else if (c == '+') {
        ++pos_, min = 1;
      } else if (c == '?') {
        ++pos_, max = 1;
      } else if (c == '{' && pos_ + 1 < p_.size() && std::isdigit(static_cast<unsigned char>(p_[pos_ + 1]))) {
        ++pos_;
        min = max = number();
        if (peek_is(',')) {
          ++pos_;
          max = peek_is('}') ? -1 : number();
        }
        if (!peek_is('}')) error("expected '}' closing the repetition count");
        ++pos_;
        if (max >= 0 && max < min) {
          pos_ = at;
          error("repetition {n,m} with m < n");
        }
      } else {
        break;
      }
      if (peek_is('?')) ++pos_;  // lazy: the same language
      a = g_.repeat(a, min, max);
    }
    return a;
  }

  int number() {
    int v = 0;
    if (pos_ >= p_.size() || !std::isdigit(static_cast<unsigned char>(p_[pos_]))) error("expected a number");
    while (pos_ < p_.size() && std::isdigit(static_cast<unsigned char>(p_[pos_]))) {
      v = v * 10 + (p_[pos_++] - '0');
      if (v > 10000) error("repetition count above 10000");
    }
    return v;
  }

  ExprId atom() {
    const char c = p_[pos_];
    if (c == '(') {
      ++pos_;
      if (peek_is('?')) {
        ++pos_;
        if (peek_is(':')) {
          ++pos_;
        } else if (peek_is('<') && pos_ + 1 < p_.size() && p_[pos_ + 1] != '=' && p_[pos_ + 1] != '!') {
          while (pos_ < p_.size() && p_[pos_] != '>') ++pos_;
          if (!peek_is('>')) error("unterminated group name");
          ++pos_;
        } else {
          error("lookaround assertions ((?=, (?!, (?<=, (?<!) are not supported");
        }
      }
      std::vector<ExprId> alts = {sequence(nullptr)};
      while (peek_is('|')) {
        ++pos_;
        alts.push_back(sequence(nullptr));
      }
      if (!peek_is(')')) error("missing ')'");
      ++pos_;
      return g_.alt(alts);
    }
    if (c == '[') return chars(char_class());
    if (c == '.') {
      ++pos_;
      return chars(complement(kLineTerminators));
    }
    if (c == '*' || c == '+' || c == '?') error("nothing to repeat");
    if (c == '{' && pos_ + 1 < p_.size() && std::isdigit(static_cast<unsigned char>(p_[pos_ + 1]))) error("nothing to repeat");
    if (c == '\\') {
      CodepointRanges r;
      escape(false, r);
      return chars(r);
    }
    const uint32_t cp = next_cp();
    return chars({{cp, cp}});
  }

  uint32_t hex(int digits) {
    uint32_t v = 0;
    for (int k = 0; k < digits; ++k) {
      if (pos_ >= p_.size() || !std::isxdigit(static_cast<unsigned char>(p_[pos_]))) error("expected a hex digit");
      const char h = p_[pos_++];
      v = v * 16 + uint32_t(std::isdigit(static_cast<unsigned char>(h)) ? h - '0' : (std::tolower(h) - 'a' + 10));
    }
    return v;
  }

  // An escape after '\' (at pos_); its code points into r. Returns whether it was a single code point.
  bool escape(bool in_class, CodepointRanges& r) {
    const size_t at = pos_;
    ++pos_;  // the backslash
    if (pos_ >= p_.size()) error("pattern ends with '\\'");
    const char c = p_[pos_++];
    auto one = [&](uint32_t cp) {
      r = {{cp, cp}};
      return true;
    };
    switch (c) {
      case 'd': r = kDigit; return false;
      case 'D': r = complement(kDigit); return false;
      case 'w': r = kWord; return false;
      case 'W': r = complement(kWord); return false;
      case 's': r = kSpace; return false;
      case 'S': r = complement(kSpace); return false;
      case 't': return one('\t');
      case 'n': return one('\n');
      case 'r': return one('\r');
      case 'f': return one('\f');
      case 'v': return one('\v');
      case '0': return one(0);
      case 'x': return one(hex(2));
      case 'u':
        if (peek_is('{')) {
          ++pos_;
          uint32_t v = 0;
          int n = 0;
          while (pos_ < p_.size() && p_[pos_] != '}') {
            v = v * 16 + hex(1);
            if (++n > 6 || v > kMaxCodepoint) error("code point out of range");
          }
          if (!peek_is('}') || n == 0) error("expected '}' after \\u{...");
          ++pos_;
          return one(v);
        }
        return one(hex(4));
      case 'c': {
        if (pos_ >= p_.size() || !std::isalpha(static_cast<unsigned char>(p_[pos_]))) error("expected a letter after \\c");
        return one(uint32_t(p_[pos_++]) % 32);
      }
      case 'b':
        if (in_class) return one('\b');
        pos_ = at;
        error("word boundaries (\\b) are not supported");
      case 'B': pos_ = at; error("word boundaries (\\B) are not supported");
      case 'p':
      case 'P': pos_ = at; error("Unicode property escapes (\\p{...}) are not supported");
      case 'k': pos_ = at; error("named back-references (\\k<...>) are not supported");
      default:
        if (c >= '1' && c <= '9') {
          pos_ = at;
          error("back-references are not supported");
        }
        if (std::isalnum(static_cast<unsigned char>(c))) {
          pos_ = at;
          error(fmt::format("unknown escape '\\{}'", c));
        }
        --pos_;
        return one(next_cp());
    }
  }

  CodepointRanges char_class() {
    const size_t start = pos_;
    ++pos_;  // '['
    bool negated = false;
    if (peek_is('^')) ++pos_, negated = true;
    CodepointRanges r;
    bool first = true;
    while (true) {
      if (pos_ >= p_.size()) {
        pos_ = start;
        error("unterminated character class");
      }
      if (p_[pos_] == ']' && !first) break;
      first = false;
      CodepointRanges item;
      bool single;
      if (p_[pos_] == '\\') {
        single = escape(true, item);
      } else {
        const uint32_t cp = next_cp();
        item = {{cp, cp}};
        single = true;
      }
      if (single && peek_is('-') && pos_ + 1 < p_.size() && p_[pos_ + 1] != ']') {
        ++pos_;
        CodepointRanges hi;
        bool hi_single;
        if (p_[pos_] == '\\') {
          hi_single = escape(true, hi);
        } else {
          const uint32_t cp = next_cp();
          hi = {{cp, cp}};
          hi_single = true;
        }
        if (!hi_single) error("a class escape cannot end a range");
        if (hi[0].first < item[0].first) error("range out of order in character class");
        item = {{item[0].first, hi[0].first}};
      }
      r = unite(r, item);
    }
    ++pos_;  // ']'
    return negated ? complement(r) : r;
  }

  Grammar& g_;
  std::string_view p_;
  RegexOptions opt_;
  size_t pos_ = 0;
};

}  // namespace

ExprId json_string_class(Grammar& g, const CodepointRanges& r) {
  std::vector<ExprId> alts = {g.cls(subtract(r, kJsonEscaped))};
  for (auto [lo, hi] : r)
    for (uint32_t cp = lo; cp <= hi && cp <= 0x5C; ++cp)
      if (contains(kJsonEscaped, cp)) alts.push_back(g.bytes(json_escape(cp)));
  return g.alt(alts);
}

ExprId json_string_char(Grammar& g) {
  const CodepointRanges hex = {{'0', '9'}, {'A', 'F'}, {'a', 'f'}};
  ExprId h = g.cls(hex);
  ExprId u = g.seq({g.bytes("\\u"),
                    g.alt({g.seq({g.cls(subtract(hex, {{'D', 'D'}, {'d', 'd'}})), h, h, h}),
                           g.seq({g.cls({{'D', 'D'}, {'d', 'd'}}), g.cls({{'0', '7'}}), h, h})})});
  ExprId simple = g.seq({g.bytes("\\"), g.cls({{'"', '"'}, {'/', '/'}, {'\\', '\\'}, {'b', 'b'}, {'f', 'f'},
                                               {'n', 'n'}, {'r', 'r'}, {'t', 't'}})});
  return g.alt({g.cls(complement(kJsonEscaped)), simple, u});
}

ExprId regex_to_expr(Grammar& g, std::string_view pattern, const RegexOptions& opt) {
  return RegexParser(g, pattern, opt).parse();
}

}  // namespace dsserve::grammar
