// JSON numbers within bounds, as grammar expressions over their decimal text. Integers are written
// without leading zeros, at most 16 digits unless a bound needs more; numbers with a bound are
// plain decimals (no exponent) with at most 15 significant digits, so that each text parses to a
// distinct double and the bounds hold in double arithmetic as a validator checks them; numbers
// without bounds may carry a fraction of up to 16 digits and an exponent of up to 2 digits.
#pragma once
#include <optional>
#include <string>

#include "grammar/expr.h"

namespace dsserve::grammar {

// A bound of a JSON Schema range, as decimal digits.
struct DecimalBound {
  bool negative = false;
  std::string int_digits = "0";  // no leading zeros
  std::string frac_digits;       // no trailing zeros
  bool exclusive = false;
};

// The bound as written in a schema (a JSON number's shortest text, exponent allowed).
DecimalBound parse_decimal_bound(const std::string& text, bool exclusive);

// Integers in [lo, hi] (absent: unbounded); nothing() when the range is empty.
ExprId integer_range(Grammar& g, const std::optional<DecimalBound>& lo, const std::optional<DecimalBound>& hi);
// Numbers in [lo, hi] (absent: unbounded); nothing() when the range holds no number.
ExprId number_range(Grammar& g, const std::optional<DecimalBound>& lo, const std::optional<DecimalBound>& hi);

}  // namespace dsserve::grammar
