// Code point ranges as UTF-8 byte-range sequences: every scalar value in [lo, hi] (surrogates
// excluded) is matched by exactly one sequence of per-byte ranges, and nothing else is.
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

namespace dsserve::grammar {

using ByteRangeSeq = std::vector<std::pair<uint8_t, uint8_t>>;

void utf8_sequences(uint32_t lo, uint32_t hi, std::vector<ByteRangeSeq>& out);

}  // namespace dsserve::grammar
