// A compiled Unicode regular expression (PCRE2 with UTF and UCP, JIT when available) used by the
// pre-tokenizer. Patterns are written in the Oniguruma dialect of tokenizer.json; `\s` / `\S` are
// rewritten to the Unicode White_Space property so they mean what they mean in Oniguruma.
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace dsserve::text {

class UnicodeRegex {
 public:
  // Compiles pattern; `literal` treats it as a plain string. Throws dsserve::Error naming `where`.
  UnicodeRegex(const std::string& pattern, bool literal, const std::string& where);
  ~UnicodeRegex();
  UnicodeRegex(UnicodeRegex&&) noexcept;
  UnicodeRegex& operator=(UnicodeRegex&&) noexcept;

  // Every non-overlapping match in `subject` (valid UTF-8), left to right, as [begin, end) offsets.
  void find_all(std::string_view subject, std::vector<std::pair<size_t, size_t>>& matches) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dsserve::text
