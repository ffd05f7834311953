// The GPT-2 byte-level alphabet: each of the 256 byte values is shown as one printable code point
// (printable Latin-1 bytes as themselves, the rest as U+0100 onward). tokenizer.json stores BPE
// vocabulary and merges in this alphabet; the tokenizer works on raw bytes and converts at load.
#pragma once
#include <optional>
#include <string>
#include <string_view>

namespace dsserve::text {

// The byte-level spelling (UTF-8) of raw bytes.
std::string bytes_to_byte_level(std::string_view raw);

// Raw bytes of a byte-level spelled string; nullopt when some code point is outside the alphabet.
std::optional<std::string> byte_level_to_bytes(std::string_view spelled);

}  // namespace dsserve::text
