// Regular expressions (the ECMAScript syntax JSON Schema and SGLang use) as grammar expressions:
// literals, classes ([...], \d \w \s and their negations, .), groups ((...), (?:...), (?<name>...)),
// alternation, quantifiers (* + ? {n} {n,} {n,m}, lazy or not: same language), escapes (\t \n \r
// \f \v \0 \xHH \uHHHH \u{H...} \cX and escaped punctuation), ^ and $ at the ends of the pattern's
// top-level alternatives. Back-references, lookaround, word boundaries and \p{...} are refused
// with their offset.
#pragma once
#include <string_view>

#include "grammar/expr.h"

namespace dsserve::grammar {

struct RegexOptions {
  // Characters as a JSON string holds them: '"', '\\' and control characters escaped.
  bool json_string = false;
  // JSON Schema `pattern`: the match may sit anywhere in the text unless ^ / $ anchor it. Otherwise
  // the whole text must match (SGLang's regex; ^ and $ at the ends change nothing).
  bool search = false;
};

// Throws GrammarError with the byte offset of the problem.
ExprId regex_to_expr(Grammar& g, std::string_view pattern, const RegexOptions& opt = {});

// One character of a JSON string (an unescaped character, or an escape sequence standing for one
// code point; surrogate escapes excluded): the building block of JSON strings.
ExprId json_string_char(Grammar& g);
// Code points of `r` as they appear inside a JSON string.
ExprId json_string_class(Grammar& g, const CodepointRanges& r);

}  // namespace dsserve::grammar
