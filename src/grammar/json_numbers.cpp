// Bounded JSON numbers (see json_numbers.h). Integer parts: ranges of unsigned integers split by
// digit count, each a fixed-width range built digit by digit. Fractions: digit strings compared
// with the bounds' fractions digit by digit (tight to the lower bound, to the upper, or free).
#include "grammar/json_numbers.h"

#include <algorithm>
#include <map>
#include <tuple>

#include "grammar/grammar_error.h"

namespace dsserve::grammar {

namespace {

constexpr int kMaxIntegerDigits = 16;   // integers without a bound
constexpr int kMaxSignificant = 15;     // numbers with a bound: integer + fraction digits

uint64_t pow10(int n) {
  uint64_t v = 1;
  while (n-- > 0) v *= 10;
  return v;
}

ExprId digit_class(Grammar& g, int lo, int hi) { return g.cls({{uint32_t('0' + lo), uint32_t('0' + hi)}}); }

// Fixed-width digit strings between a and b (same width, a <= b).
ExprId digits_between(Grammar& g, const std::string& a, const std::string& b) {
  if (a.empty()) return g.empty();
  if (a.find_first_not_of('0') == std::string::npos && b.find_first_not_of('9') == std::string::npos)
    return g.repeat(digit_class(g, 0, 9), int(a.size()), int(a.size()));
  const int a0 = a[0] - '0', b0 = b[0] - '0';
  const std::string ra = a.substr(1), rb = b.substr(1);
  if (a0 == b0) return g.seq({g.bytes(std::string(1, a[0])), digits_between(g, ra, rb)});
  std::vector<ExprId> alts;
  alts.push_back(g.seq({g.bytes(std::string(1, a[0])), digits_between(g, ra, std::string(ra.size(), '9'))}));
  if (a0 + 1 <= b0 - 1) alts.push_back(g.seq({digit_class(g, a0 + 1, b0 - 1), g.repeat(digit_class(g, 0, 9), int(ra.size()), int(ra.size()))}));
  alts.push_back(g.seq({g.bytes(std::string(1, b[0])), digits_between(g, std::string(rb.size(), '0'), rb)}));
  return g.alt(alts);
}

// Unsigned integers in [a, b] without leading zeros.
ExprId uint_range(Grammar& g, uint64_t a, uint64_t b) {
  if (a > b) return g.nothing();
  const std::string sa = std::to_string(a), sb = std::to_string(b);
  if (sa.size() == sb.size()) return digits_between(g, sa, sb);
  std::vector<ExprId> alts = {digits_between(g, sa, std::string(sa.size(), '9'))};
  for (size_t len = sa.size() + 1; len < sb.size(); ++len)
    alts.push_back(digits_between(g, "1" + std::string(len - 1, '0'), std::string(len, '9')));
  alts.push_back(digits_between(g, "1" + std::string(sb.size() - 1, '0'), sb));
  return g.alt(alts);
}

// Integer digits as a number, saturating at 10^18.
uint64_t digits_value(const std::string& d) {
  if (d.size() > 18) return pow10(18);
  return d.empty() ? 0 : std::stoull(d);
}

// Fractions F (digit strings of at most `cap` digits, "" = no fraction) with lo <= 0.F <= hi as the
// bounds ask; each F is written "" or "." F.
class Fraction {
 public:
  Fraction(Grammar& g, int cap, const DecimalBound* lo, const DecimalBound* hi) : g_(g), cap_(cap), lo_(lo), hi_(hi) {}

  ExprId build() { return g_.alt({stop_ok(0, lo_, hi_) ? g_.empty() : g_.nothing(), g_.seq({g_.bytes("."), digits(0, lo_, hi_)})}); }

 private:
  int ad(int i) const { return size_t(i) < lo_->frac_digits.size() ? lo_->frac_digits[size_t(i)] - '0' : 0; }
  int bd(int i) const { return size_t(i) < hi_->frac_digits.size() ? hi_->frac_digits[size_t(i)] - '0' : 0; }

  bool stop_ok(int i, bool tlo, bool thi) const {
    if (tlo && (size_t(i) < lo_->frac_digits.size() || lo_->exclusive)) return false;
    if (thi && size_t(i) >= hi_->frac_digits.size() && hi_->exclusive) return false;
    return true;
  }

  ExprId rest(int i, bool tlo, bool thi) {
    return g_.alt({stop_ok(i, tlo, thi) ? g_.empty() : g_.nothing(), i < cap_ ? digits(i, tlo, thi) : g_.nothing()});
  }

  ExprId digits(int i, bool tlo, bool thi) {
    auto key = std::make_tuple(i, tlo, thi);
    if (auto it = memo_.find(key); it != memo_.end()) return it->second;
    std::map<std::pair<bool, bool>, CodepointRanges> groups;
    for (int d = 0; d <= 9; ++d) {
      if (tlo && d < ad(i)) continue;
      if (thi && d > bd(i)) continue;
      groups[{tlo && d == ad(i), thi && d == bd(i)}].push_back({uint32_t('0' + d), uint32_t('0' + d)});
    }
    std::vector<ExprId> alts;
    for (auto& [flags, ranges] : groups) alts.push_back(g_.seq({g_.cls(ranges), rest(i + 1, flags.first, flags.second)}));
    ExprId e = g_.alt(alts);
    memo_[key] = e;
    return e;
  }

  Grammar& g_;
  int cap_;
  const DecimalBound* lo_;
  const DecimalBound* hi_;
  std::map<std::tuple<int, bool, bool>, ExprId> memo_;
};

// Non-negative numbers between lo and hi (hi absent: up to the digit cap).
ExprId nonnegative(Grammar& g, int int_cap, int frac_cap, const DecimalBound& lo, const DecimalBound* hi) {
  const uint64_t cap = pow10(int_cap) - 1;
  const uint64_t li = digits_value(lo.int_digits);
  if (li > cap) return g.nothing();
  uint64_t hi_i = cap;
  if (hi && digits_value(hi->int_digits) > cap) hi = nullptr;
  if (hi) hi_i = digits_value(hi->int_digits);
  if (li > hi_i) return g.nothing();
  if (hi && li == hi_i) return g.seq({g.bytes(std::to_string(li)), Fraction(g, frac_cap, &lo, hi).build()});
  std::vector<ExprId> alts;
  alts.push_back(g.seq({g.bytes(std::to_string(li)), Fraction(g, frac_cap, &lo, nullptr).build()}));
  const uint64_t mid_hi = hi ? hi_i - 1 : hi_i;
  if (li + 1 <= mid_hi) alts.push_back(g.seq({uint_range(g, li + 1, mid_hi), Fraction(g, frac_cap, nullptr, nullptr).build()}));
  if (hi) alts.push_back(g.seq({g.bytes(std::to_string(hi_i)), Fraction(g, frac_cap, nullptr, hi).build()}));
  return g.alt(alts);
}

DecimalBound negated(DecimalBound b) {
  b.negative = !b.negative;
  return b;
}

bool is_zero(const DecimalBound& b) { return b.int_digits == "0" && b.frac_digits.empty(); }

}  // namespace

DecimalBound parse_decimal_bound(const std::string& text, bool exclusive) {
  DecimalBound b;
  b.exclusive = exclusive;
  size_t i = 0;
  if (i < text.size() && (text[i] == '-' || text[i] == '+')) b.negative = text[i++] == '-';
  std::string mant;
  int point = -1;
  for (; i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.'); ++i) {
    if (text[i] == '.') point = int(mant.size());
    else mant += text[i];
  }
  if (point < 0) point = int(mant.size());
  int exp = 0;
  if (i < text.size() && (text[i] == 'e' || text[i] == 'E')) exp = std::stoi(text.substr(i + 1));
  point += exp;
  if (point < 0) mant.insert(0, size_t(-point), '0'), point = 0;
  if (point > int(mant.size())) mant.append(size_t(point) - mant.size(), '0');
  b.int_digits = mant.substr(0, size_t(point));
  b.frac_digits = mant.substr(size_t(point));
  while (b.int_digits.size() > 1 && b.int_digits[0] == '0') b.int_digits.erase(0, 1);
  if (b.int_digits.empty()) b.int_digits = "0";
  while (!b.frac_digits.empty() && b.frac_digits.back() == '0') b.frac_digits.pop_back();
  if (is_zero(b)) b.negative = false;
  return b;
}

ExprId integer_range(Grammar& g, const std::optional<DecimalBound>& lo, const std::optional<DecimalBound>& hi) {
  // As signed integers (saturating): lo rounded up, hi rounded down, exclusive bounds stepped in.
  auto as_int = [](const DecimalBound& b, bool up) {
    int64_t v = int64_t(std::min<uint64_t>(digits_value(b.int_digits), pow10(18)));
    const bool frac = !b.frac_digits.empty();
    if (b.negative) v = -v;
    if (frac && up && !b.negative) v += 1;
    if (frac && !up && b.negative) v -= 1;
    if (b.exclusive && !frac) v += up ? 1 : -1;
    return v;
  };
  const int64_t cap = int64_t(pow10(kMaxIntegerDigits)) - 1;
  int64_t l = lo ? as_int(*lo, true) : -cap, h = hi ? as_int(*hi, false) : cap;
  if (!lo && h < -cap) l = h - cap;
  if (!hi && l > cap) h = l + cap;
  if (l > h) return g.nothing();
  std::vector<ExprId> alts;
  if (l < 0) alts.push_back(g.seq({g.bytes("-"), uint_range(g, uint64_t(std::max<int64_t>(1, -h)), uint64_t(-l))}));
  if (h >= 0) alts.push_back(uint_range(g, uint64_t(std::max<int64_t>(0, l)), uint64_t(h)));
  return g.alt(alts);
}

ExprId number_range(Grammar& g, const std::optional<DecimalBound>& lo, const std::optional<DecimalBound>& hi) {
  if (!lo && !hi) {
    ExprId digit = digit_class(g, 0, 9);
    ExprId integer = g.alt({g.bytes("0"), g.seq({digit_class(g, 1, 9), g.repeat(digit, 0, kMaxIntegerDigits - 1)})});
    ExprId frac = g.opt(g.seq({g.bytes("."), g.repeat(digit, 1, 16)}));
    ExprId exp = g.opt(g.seq({g.cls({{'E', 'E'}, {'e', 'e'}}), g.opt(g.cls({{'+', '+'}, {'-', '-'}})), g.repeat(digit, 1, 2)}));
    return g.seq({g.opt(g.bytes("-")), integer, frac, exp});
  }
  size_t widest = 9;
  if (lo) widest = std::max(widest, lo->int_digits.size());
  if (hi) widest = std::max(widest, hi->int_digits.size());
  const int int_cap = int(std::min<size_t>(widest, kMaxSignificant));
  const int frac_cap = kMaxSignificant - int_cap;
  std::vector<ExprId> alts;
  // x >= 0 (not when hi < 0, or hi == 0 exclusive).
  const bool hi_below_zero = hi && (hi->negative || (is_zero(*hi) && hi->exclusive));
  if (!hi_below_zero) {
    DecimalBound l = lo && !lo->negative ? *lo : DecimalBound{};
    alts.push_back(nonnegative(g, int_cap, frac_cap, l, hi ? &*hi : nullptr));
  }
  // x < 0 as "-" y: y > 0, y >= -hi when hi < 0, y <= -lo.
  const bool lo_below_zero = !lo || (lo->negative && !is_zero(*lo));
  if (lo_below_zero) {
    DecimalBound ylo = hi && hi->negative ? negated(*hi) : DecimalBound{false, "0", "", true};
    std::optional<DecimalBound> yhi;
    if (lo) yhi = negated(*lo);
    alts.push_back(g.seq({g.bytes("-"), nonnegative(g, int_cap, frac_cap, ylo, yhi ? &*yhi : nullptr)}));
  }
  return g.alt(alts);
}

}  // namespace dsserve::grammar
