// UTF-8 byte-range sequences of code point ranges (see utf8_ranges.h): split at the surrogates, at
// the encoded-length boundaries, then wherever the lower continuation bytes do not span their
// whole range, until each piece is a product of byte ranges.
#include "grammar/utf8_ranges.h"

#include <string>

#include "grammar/expr.h"

namespace dsserve::grammar {

void utf8_sequences(uint32_t lo, uint32_t hi, std::vector<ByteRangeSeq>& out) {
  std::vector<std::pair<uint32_t, uint32_t>> todo = {{lo, std::min(hi, kMaxCodepoint)}};
  while (!todo.empty()) {
    auto [a, b] = todo.back();
    todo.pop_back();
    if (a > b) continue;
    if (a <= 0xDFFF && b >= 0xD800) {
      if (a < 0xD800) todo.push_back({a, 0xD7FF});
      if (b > 0xDFFF) todo.push_back({0xE000, b});
      continue;
    }
    bool split = false;
    for (uint32_t max : {0x7Fu, 0x7FFu, 0xFFFFu})
      if (a <= max && b > max) {
        todo.push_back({a, max});
        todo.push_back({max + 1, b});
        split = true;
        break;
      }
    if (split) continue;
    for (int i = 1; i < 4 && !split; ++i) {
      const uint32_t m = (1u << (6 * i)) - 1;
      if ((a & ~m) == (b & ~m)) continue;
      if ((a & m) != 0) {
        todo.push_back({a, a | m});
        todo.push_back({(a | m) + 1, b});
        split = true;
      } else if ((b & m) != m) {
        todo.push_back({a, (b & ~m) - 1});
        todo.push_back({b & ~m, b});
        split = true;
      }
    }
    if (split) continue;
    const std::string ea = utf8_encode(a), eb = utf8_encode(b);
    ByteRangeSeq s;
    for (size_t k = 0; k < ea.size(); ++k) s.push_back({uint8_t(ea[k]), uint8_t(eb[k])});
    out.push_back(std::move(s));
  }
}

}  // namespace dsserve::grammar
