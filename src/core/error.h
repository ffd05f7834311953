// Error type used across dsserve: one exception carrying a message that names what failed
// (file, tensor, field, request) and what was expected versus found.
#pragma once
#include <fmt/format.h>
#include <stdexcept>
#include <string>

namespace dsserve {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

#define DS_CHECK(cond, ...)                        \
  do {                                             \
    if (!(cond)) ::dsserve::fail(__VA_ARGS__);     \
  } while (0)

}  // namespace dsserve
