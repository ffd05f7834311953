// Jinja2 parser: builds the syntax tree of the supported subset from lexer tokens with Jinja's
// operator precedence. Anything outside the subset (macros, includes, blocks, call, raw, ...) is a
// dsserve::Error naming the template line and the construct.
#pragma once
#include <string>
#include <vector>

#include "text/jinja/ast.h"
#include "text/jinja/lexer.h"

namespace dsserve::text::jinja {

Body parse(const std::vector<Token>& tokens, const std::string& name);

}  // namespace dsserve::text::jinja
