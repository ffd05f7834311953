// The commands node 0 sends the other nodes before each runner operation (allocate the latent
// cache, record the decode graphs, run one forward, shut down) and the reply every node sends back
// when the operation is done: a compact binary form that names the field that is wrong on decoding.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "model/forward_batch.h"

namespace dsserve {

enum class NodeCommandKind : int32_t {
  AllocateCache = 1,        // num_pages, page_size, cache_dtype
  CaptureDecodeGraphs = 2,  // trash_slot, batch_sizes
  Forward = 3,              // batch
  Shutdown = 4,             // node 0 stops cleanly: the other nodes exit 0
};

const char* command_name(NodeCommandKind k);

struct NodeCommand {
  NodeCommandKind kind = NodeCommandKind::Shutdown;
  int64_t num_pages = 0;
  int32_t page_size = 0;
  std::optional<DType> cache_dtype;  // the latent cache's element type (unset: the model's default)
  int32_t trash_slot = 0;
  std::vector<int32_t> batch_sizes;
  ForwardBatch batch;
};

NodeCommand command_of(NodeCommandKind k);  // a command of this kind, its fields zero
std::string encode_command(const NodeCommand& c);
NodeCommand decode_command(const std::string& bytes);

// What a node answers after running a command: ok, or the reason it failed.
struct NodeReply {
  bool ok = true;
  std::string error;
};

std::string encode_reply(const NodeReply& r);
NodeReply decode_reply(const std::string& bytes);

}  // namespace dsserve
