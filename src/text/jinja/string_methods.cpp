// Python str operations on UTF-8 (see string_methods.h).
#include "text/jinja/string_methods.h"

#include <algorithm>
#include <cctype>

#include "text/utf8.h"

namespace dsserve::text::jinja {
namespace {

bool is_py_space(uint32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

struct CodePoint {
  uint32_t cp;
  size_t begin, end;
};

std::vector<CodePoint> decode_all(std::string_view s) {
  std::vector<CodePoint> out;
  for (size_t i = 0; i < s.size();) {
    const size_t b = i;
    if (utf8_sequence_length(s, i) == 0) {
      out.push_back({static_cast<unsigned char>(s[i]), b, ++i});
      continue;
    }
    const uint32_t cp = utf8_decode(s, i);
    out.push_back({cp, b, i});
  }
  return out;
}

}  // namespace

std::string py_strip(std::string_view s, const std::string* chars, StripSide side) {
  const auto cps = decode_all(s);
  std::vector<uint32_t> set;
  if (chars)
    for (const auto& c : decode_all(*chars)) set.push_back(c.cp);
  auto strip_it = [&](uint32_t c) { return chars ? std::find(set.begin(), set.end(), c) != set.end() : is_py_space(c); };
  size_t a = 0, b = cps.size();
  if (side != StripSide::kRight)
    while (a < b && strip_it(cps[a].cp)) ++a;
  if (side != StripSide::kLeft)
    while (b > a && strip_it(cps[b - 1].cp)) --b;
  if (a == b) return "";
  return std::string(s.substr(cps[a].begin, cps[b - 1].end - cps[a].begin));
}

std::vector<std::string> py_split(std::string_view s, const std::string* sep, int64_t maxsplit) {
  std::vector<std::string> out;
  if (sep) {
    size_t pos = 0;
    while (maxsplit < 0 || static_cast<int64_t>(out.size()) < maxsplit) {
      const size_t f = s.find(*sep, pos);
      if (f == std::string_view::npos) break;
      out.emplace_back(s.substr(pos, f - pos));
      pos = f + sep->size();
    }
    out.emplace_back(s.substr(pos));
    return out;
  }
  const auto cps = decode_all(s);
  size_t i = 0;
  while (i < cps.size()) {
    while (i < cps.size() && is_py_space(cps[i].cp)) ++i;
    if (i == cps.size()) break;
    if (maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit) {
      size_t end = cps.size();
      while (end > i && is_py_space(cps[end - 1].cp)) --end;
      out.emplace_back(s.substr(cps[i].begin, cps[end - 1].end - cps[i].begin));
      break;
    }
    const size_t start = i;
    while (i < cps.size() && !is_py_space(cps[i].cp)) ++i;
    out.emplace_back(s.substr(cps[start].begin, cps[i - 1].end - cps[start].begin));
  }
  return out;
}

std::string py_replace(std::string_view s, std::string_view old, std::string_view replacement, int64_t count) {
  std::string out;
  if (old.empty()) {  // Python inserts the replacement around every code point
    const auto cps = decode_all(s);
    int64_t done = 0;
    for (const auto& c : cps) {
      if (count < 0 || done < count) { out += replacement; ++done; }
      out += s.substr(c.begin, c.end - c.begin);
    }
    if (count < 0 || done < count) out += replacement;
    return out;
  }
  size_t pos = 0;
  int64_t done = 0;
  while (count < 0 || done < count) {
    const size_t f = s.find(old, pos);
    if (f == std::string_view::npos) break;
    out += s.substr(pos, f - pos);
    out += replacement;
    pos = f + old.size();
    ++done;
  }
  out += s.substr(pos);
  return out;
}

std::string py_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string py_upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

std::string py_capitalize(std::string_view s) {
  std::string out = py_lower(s);
  if (!out.empty()) out[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(out[0])));
  return out;
}

std::string py_title(std::string_view s) {
  std::string out(s);
  bool prev_letter = false;
  for (char& c : out) {
    const auto u = static_cast<unsigned char>(c);
    const bool letter = std::isalpha(u) != 0;
    c = static_cast<char>(letter ? (prev_letter ? std::tolower(u) : std::toupper(u)) : u);
    prev_letter = letter || u >= 0x80;
  }
  return out;
}

size_t py_length(std::string_view s) { return decode_all(s).size(); }

}  // namespace dsserve::text::jinja
