// The error every grammar front end throws for bad input: what is wrong and where (a byte offset
// into a regex or EBNF text, or a JSON pointer into a schema). The server turns it into a 400.
#pragma once
#include <stdexcept>
#include <string>

namespace dsserve::grammar {

class GrammarError : public std::runtime_error {
 public:
  // position: "offset 12", "line 3, column 5" or "/properties/age/multipleOf".
  GrammarError(const std::string& what, std::string position)
      : std::runtime_error(what + " (at " + position + ")"), position_(std::move(position)) {}
  const std::string& position() const { return position_; }

 private:
  std::string position_;
};

}  // namespace dsserve::grammar
