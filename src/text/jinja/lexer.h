// Jinja2 lexer: splits template source into text and tag tokens, applying whitespace control
// ({%- -%} {{- -}} {#- -#}, and the trim_blocks / lstrip_blocks options), and tokenizes the
// expressions inside tags. Every token carries its 1-based source line for error messages.
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace dsserve::text::jinja {

enum class TokenKind { kText, kVarBegin, kVarEnd, kBlockBegin, kBlockEnd, kName, kString, kInteger, kFloat, kOperator, kEnd };

struct Token {
  TokenKind kind;
  std::string text;  // text, name, decoded string literal, number spelling or operator
  int line;
};

struct LexOptions {
  bool trim_blocks = false;   // drop the first newline after a block tag
  bool lstrip_blocks = false; // drop spaces and tabs before a block tag at the start of a line
  bool keep_trailing_newline = false;  // jinja2 drops one newline at the end of the source
};

// Throws dsserve::Error "<name> line N: ..." on an unterminated tag, string or bad character.
std::vector<Token> lex(std::string_view source, const LexOptions& options, const std::string& name);

}  // namespace dsserve::text::jinja
