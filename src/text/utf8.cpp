// UTF-8 validation and repair following the Unicode "maximal subpart" rule (see utf8.h).
#include "text/utf8.h"

namespace dsserve::text {
namespace {

// How many bytes of s starting at i form a valid prefix of a UTF-8 sequence, and the full length
// that sequence needs. valid_prefix == need means a complete character.
struct SequenceProbe {
  size_t valid_prefix = 0;
  size_t need = 0;
};

SequenceProbe probe(std::string_view s, size_t i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) return {1, 1};
  size_t need;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return {0, 1};
  }
  size_t k = 1;
  for (; k < need && i + k < s.size(); ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    const unsigned char l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
    if (b < l || b > h) break;
  }
  return {k, need};
}

}  // namespace

size_t utf8_sequence_length(std::string_view s, size_t i) {
  const SequenceProbe p = probe(s, i);
  return p.valid_prefix == p.need ? p.need : 0;
}

size_t utf8_first_invalid(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto b = static_cast<unsigned char>(s[i]);
    if (b < 0x80) {
      ++i;
      continue;
    }
    const size_t n = utf8_sequence_length(s, i);
    if (n == 0) return i;
    i += n;
  }
  return s.size();
}

size_t utf8_incomplete_tail(std::string_view s) {
  // A sequence is at most 4 bytes, so only the last 3 positions can start an incomplete one.
  const size_t start = s.size() > 3 ? s.size() - 3 : 0;
  for (size_t i = start; i < s.size(); ++i) {
    const auto b = static_cast<unsigned char>(s[i]);
    if (b < 0xC0) continue;  // ASCII or continuation byte: cannot start a multi-byte sequence
    const SequenceProbe p = probe(s, i);
    if (p.valid_prefix < p.need && i + p.valid_prefix == s.size()) return s.size() - i;
  }
  return 0;
}

std::string utf8_lossy(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const SequenceProbe p = probe(s, i);
    if (p.valid_prefix == p.need) {
      out.append(s.substr(i, p.need));
      i += p.need;
    } else {
      out.append("\xEF\xBF\xBD");
      i += p.valid_prefix == 0 ? 1 : p.valid_prefix;
    }
  }
  return out;
}

void utf8_append(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

uint32_t utf8_decode(std::string_view s, size_t& i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) {
    ++i;
    return b0;
  }
  const size_t n = b0 >= 0xF0 ? 4 : b0 >= 0xE0 ? 3 : 2;
  bool valid = b0 >= 0xC0 && b0 < 0xF8 && i + n <= s.size();
  uint32_t cp = b0 & (0x7F >> n);
  for (size_t k = 1; valid && k < n; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    valid = (b & 0xC0) == 0x80;
    cp = (cp << 6) | (b & 0x3F);
  }
  if (!valid) {  // a stray continuation byte, a truncated or broken sequence: one byte, U+FFFD
    ++i;
    return 0xFFFD;
  }
  i += n;
  return cp;
}

}  // namespace dsserve::text
