// The batch description node 0 sends the other nodes' workers each step: a ForwardBatch in a
// compact binary form (magic, version, then each field as a counted array of int32). Decoding
// checks every count and the relations between fields, and names the field that is wrong.
#pragma once
#include <string>

#include "model/forward_batch.h"

namespace dsserve {

std::string encode_batch(const ForwardBatch& b);
ForwardBatch decode_batch(const std::string& bytes);

}  // namespace dsserve
