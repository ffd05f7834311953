// EBNF grammars in the GBNF notation SGLang (through XGrammar) and llama.cpp accept:
//   root ::= "{" ws pair ("," ws pair)* "}"      # comments run to the end of the line
//   pair ::= [a-z]+ ":" value
// Rules are `name ::= body`; a body runs until the next `name ::=`. Bodies hold string literals
// ("..." or '...', with \n \t \r \\ \" \' \xHH \uHHHH \UHHHHHHHH escapes), character classes
// ([a-z], [^"\\], same escapes), `.` (any character), rule names, parentheses, alternation `|`,
// and the quantifiers * + ? {m} {m,} {m,n}. The whole text must match the rule `root`.
#pragma once
#include <string_view>

#include "grammar/expr.h"

namespace dsserve::grammar {

// Parses `text` into g (rules added; g.root set). Throws GrammarError with line and column.
void parse_ebnf(Grammar& g, std::string_view text);

}  // namespace dsserve::grammar
