// UTF-8 helpers for the text layer: validation, code point decoding and encoding, the length of an
// incomplete trailing sequence, and lossy repair (U+FFFD per maximal invalid subpart, as Rust's
// String::from_utf8_lossy does). No Unicode property tables here: PCRE2 owns those.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace dsserve::text {

// Length of the valid UTF-8 sequence starting at s[i], or 0 when the bytes there are not valid.
size_t utf8_sequence_length(std::string_view s, size_t i);

// Byte offset of the first invalid byte, or s.size() when the whole string is valid UTF-8.
size_t utf8_first_invalid(std::string_view s);
inline bool is_valid_utf8(std::string_view s) { return utf8_first_invalid(s) == s.size(); }

// Number of bytes at the end of s that form a proper prefix of a valid UTF-8 sequence (0..3):
// bytes that may still become a character once more bytes arrive.
size_t utf8_incomplete_tail(std::string_view s);

// s with every maximal invalid subpart replaced by U+FFFD.
std::string utf8_lossy(std::string_view s);

// Appends the UTF-8 encoding of code point cp.
void utf8_append(std::string& out, uint32_t cp);

// Decodes the code point at s[i] and advances i past it; a byte that does not start a complete
// sequence decodes as U+FFFD and advances i by one.
uint32_t utf8_decode(std::string_view s, size_t& i);

}  // namespace dsserve::text
