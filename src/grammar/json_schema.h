// JSON Schema -> grammar of the JSON texts it accepts, written compactly (no whitespace; object
// members in the order of `properties`). Supported: type (every type, and lists of types),
// properties / required / additionalProperties (false when `properties` is given and it is not;
// extra member names never repeat a declared name, carry no escapes and have at most 32
// characters), items / prefixItems /
// additionalItems / minItems / maxItems, enum / const, anyOf, oneOf (as anyOf: the branches should
// not overlap), allOf (merged where the keywords combine), $ref / $defs / definitions (local
// pointers, recursion included), string minLength / maxLength / pattern / format (date, time,
// date-time, email, uuid, ipv4: each a subset of what validators accept), number and integer
// minimum / maximum / exclusiveMinimum / exclusiveMaximum (see json_numbers.h). Annotations (title,
// description, default, examples, ...) are ignored. Any other keyword is a GrammarError naming it
// and its JSON pointer.
#pragma once
#include <nlohmann/json.hpp>

#include <string>
#include <string_view>

#include "grammar/expr.h"

namespace dsserve::grammar {

// The grammar's root becomes the schema's value. schema_text is JSON (errors give its offset).
void build_json_schema_grammar(Grammar& g, std::string_view schema_text);
// A schema's value as an expression inside a larger grammar (tool calls); `where` prefixes its
// JSON pointers in errors (e.g. "tools[0].function.parameters").
ExprId json_schema_expr(Grammar& g, const nlohmann::ordered_json& schema, const std::string& where);
// Any JSON object (OpenAI's json_object response format).
void build_json_object_grammar(Grammar& g);
// Any JSON value (a shared recursive rule of g).
ExprId json_any_value(Grammar& g);

}  // namespace dsserve::grammar
