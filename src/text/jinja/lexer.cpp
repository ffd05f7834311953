// Jinja2 lexer (see lexer.h).
#include "text/jinja/lexer.h"

#include <cctype>

#include "core/error.h"
#include "text/utf8.h"

namespace dsserve::text::jinja {
namespace {

class Lexer {
 public:
  Lexer(std::string_view src, const LexOptions& opt, const std::string& name) : src_(src), opt_(opt), name_(name) {}

  std::vector<Token> run() {
    bool strip_next_left = false;  // previous tag ended with '-'
    bool trim_newline = false;     // previous block tag ended without '-' and trim_blocks is on
    while (pos_ < src_.size()) {
      const size_t open = find_tag(pos_);
      std::string text(src_.substr(pos_, open - pos_));
      const int text_line = line_;
      count_lines(pos_, open);
      bool text_at_line_start = pos_ == 0 || src_[pos_ - 1] == '\n';
      if (strip_next_left) {
        text.erase(0, text.find_first_not_of(" \t\r\n\f\v"));
        if (text.find_first_not_of(" \t\r\n\f\v") == std::string::npos) text.clear();
      } else if (trim_newline && !text.empty() && text[0] == '\n') {
        text.erase(0, 1);
        text_at_line_start = true;
      } else if (trim_newline && text.size() >= 2 && text[0] == '\r' && text[1] == '\n') {
        text.erase(0, 2);
        text_at_line_start = true;
      }
      strip_next_left = trim_newline = false;
      if (open == src_.size()) {
        emit_text(std::move(text), text_line);
        break;
      }
      const char kind = src_[open + 1];  // '{', '%' or '#'
      size_t p = open + 2;
      const bool minus = p < src_.size() && src_[p] == '-';
      const bool plus = p < src_.size() && src_[p] == '+';
      if (minus || plus) ++p;
      if (minus) {
        const size_t keep = text.find_last_not_of(" \t\r\n\f\v");
        text.erase(keep == std::string::npos ? 0 : keep + 1);
      } else if (opt_.lstrip_blocks && !plus && kind != '{') {
        const size_t nl = text.find_last_of('\n');
        const size_t line_start = nl == std::string::npos ? 0 : nl + 1;
        // only when the text before the tag on its line is blank
        if (text.find_first_not_of(" \t", line_start) == std::string::npos &&
            (nl != std::string::npos || text_at_line_start))
          text.erase(line_start);
      }
      emit_text(std::move(text), text_line);
      pos_ = p;
      if (kind == '#') {
        const size_t close = src_.find("#}", pos_);
        if (close == std::string_view::npos) fail("{} line {}: unterminated comment", name_, line_);
        strip_next_left = close > pos_ && src_[close - 1] == '-';
        count_lines(pos_, close + 2);
        pos_ = close + 2;
        trim_newline = opt_.trim_blocks && !strip_next_left;
        continue;
      }
      const bool is_block = kind == '%';
      tokens_.push_back({is_block ? TokenKind::kBlockBegin : TokenKind::kVarBegin, "", line_});
      const bool right_minus = lex_expression(is_block);
      strip_next_left = right_minus;
      trim_newline = is_block && !right_minus && opt_.trim_blocks;
    }
    tokens_.push_back({TokenKind::kEnd, "", line_});
    return std::move(tokens_);
  }

 private:
  size_t find_tag(size_t from) const {
    for (size_t i = from; i + 1 < src_.size(); ++i)
      if (src_[i] == '{' && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#')) return i;
    return src_.size();
  }
  void count_lines(size_t a, size_t b) {
    for (size_t i = a; i < b && i < src_.size(); ++i) line_ += src_[i] == '\n';
  }
  void emit_text(std::string text, int line) {
    if (!text.empty()) tokens_.push_back({TokenKind::kText, std::move(text), line});
  }

  // Tokens up to the closing "}}" / "%}" at bracket depth 0. Returns whether it was "-}}" / "-%}".
  bool lex_expression(bool is_block) {
    const char close = is_block ? '%' : '}';
    const int open_line = line_;
    int depth = 0;
    while (true) {
      while (pos_ < src_.size() && std::isspace(static_cast<unsigned char>(src_[pos_]))) {
        line_ += src_[pos_] == '\n';
        ++pos_;
      }
      if (pos_ >= src_.size())
        fail("{} line {}: unterminated {} tag (missing '{}}}')", name_, open_line, is_block ? "{%" : "{{",
             is_block ? "%" : "}");
      const std::string_view rest = src_.substr(pos_);
      if (depth == 0) {
        const bool minus_end = rest.size() >= 3 && rest[0] == '-' && rest[1] == close && rest[2] == '}';
        if (minus_end || (rest.size() >= 2 && rest[0] == close && rest[1] == '}')) {
          pos_ += minus_end ? 3 : 2;
          tokens_.push_back({is_block ? TokenKind::kBlockEnd : TokenKind::kVarEnd, "", line_});
          return minus_end;
        }
      }
      const char c = rest[0];
      if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        size_t n = 1;
        while (n < rest.size() && (std::isalnum(static_cast<unsigned char>(rest[n])) || rest[n] == '_')) ++n;
        tokens_.push_back({TokenKind::kName, std::string(rest.substr(0, n)), line_});
        pos_ += n;
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        size_t n = 0;
        bool is_float = false;
        while (n < rest.size() && std::isdigit(static_cast<unsigned char>(rest[n]))) ++n;
        if (n + 1 < rest.size() && rest[n] == '.' && std::isdigit(static_cast<unsigned char>(rest[n + 1]))) {
          is_float = true;
          ++n;
          while (n < rest.size() && std::isdigit(static_cast<unsigned char>(rest[n]))) ++n;
        }
        if (n < rest.size() && (rest[n] == 'e' || rest[n] == 'E')) {
          size_t m = n + 1;
          if (m < rest.size() && (rest[m] == '+' || rest[m] == '-')) ++m;
          if (m < rest.size() && std::isdigit(static_cast<unsigned char>(rest[m]))) {
            is_float = true;
            n = m;
            while (n < rest.size() && std::isdigit(static_cast<unsigned char>(rest[n]))) ++n;
          }
        }
        tokens_.push_back({is_float ? TokenKind::kFloat : TokenKind::kInteger, std::string(rest.substr(0, n)), line_});
        pos_ += n;
      } else if (c == '\'' || c == '"') {
        lex_string(c);
      } else {
        static const char* kTwo[] = {"//", "**", "==", "!=", "<=", ">="};
        std::string op;
        for (const char* t : kTwo)
          if (rest.substr(0, 2) == t) op = t;
        if (op.empty()) {
          if (std::string_view("+-*/%~<>=()[]{},.:|!").find(c) == std::string_view::npos)
            fail("{} line {}: unexpected character '{}' in tag", name_, line_, c);
          op = std::string(1, c);
          if (c == '(' || c == '[' || c == '{') ++depth;
          if (c == ')' || c == ']' || c == '}') --depth;
        }
        tokens_.push_back({TokenKind::kOperator, op, line_});
        pos_ += op.size();
      }
    }
  }

  // A Python-style string literal with backslash escapes.
  void lex_string(char quote) {
    const int start_line = line_;
    std::string out;
    size_t i = pos_ + 1;
    while (true) {
      if (i >= src_.size()) fail("{} line {}: unterminated string literal", name_, start_line);
      const char c = src_[i];
      if (c == quote) break;
      if (c == '\n') ++line_;
      if (c != '\\' || i + 1 >= src_.size()) {
        out += c;
        ++i;
        continue;
      }
      const char e = src_[i + 1];
      i += 2;
      switch (e) {
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case 'r': out += '\r'; break;
        case '0': out += '\0'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'v': out += '\v'; break;
        case '\\': out += '\\'; break;
        case '\'': out += '\''; break;
        case '"': out += '"'; break;
        case '\n': ++line_; break;  // line continuation
        case 'x': case 'u': case 'U': {
          const size_t n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          if (i + n > src_.size()) fail("{} line {}: truncated \\{} escape", name_, line_, e);
          const std::string hex(src_.substr(i, n));
          if (hex.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos)
            fail("{} line {}: bad \\{} escape '{}'", name_, line_, e, hex);
          utf8_append(out, static_cast<uint32_t>(std::stoul(hex, nullptr, 16)));
          i += n;
          break;
        }
        default: out += '\\'; out += e;  // Python keeps unknown escapes
      }
    }
    tokens_.push_back({TokenKind::kString, std::move(out), start_line});
    pos_ = i + 1;
  }

  std::string_view src_;
  const LexOptions& opt_;
  const std::string& name_;
  size_t pos_ = 0;
  int line_ = 1;
  std::vector<Token> tokens_;
};

}  // namespace

std::vector<Token> lex(std::string_view source, const LexOptions& options, const std::string& name) {
  if (!options.keep_trailing_newline && !source.empty() && source.back() == '\n') {
    source.remove_suffix(1);
    if (!source.empty() && source.back() == '\r') source.remove_suffix(1);
  }
  return Lexer(source, options, name).run();
}

}  // namespace dsserve::text::jinja
