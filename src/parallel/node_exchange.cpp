// All-gather of float buffers between nodes through node 0 (see node_exchange.h).
#include "parallel/node_exchange.h"

#include <cstring>

#include "core/error.h"

namespace dsserve {

NodeExchange::NodeExchange(int node_rank, int nnodes, int ranks_per_node, std::vector<std::unique_ptr<Channel>> peers,
                           std::unique_ptr<Channel> to_node0, double timeout_s)
    : node_rank_(node_rank), nnodes_(nnodes), ranks_per_node_(ranks_per_node), peers_(std::move(peers)),
      to_node0_(std::move(to_node0)), timeout_s_(timeout_s) {
  DS_CHECK(node_rank == 0 ? peers_.size() == size_t(nnodes - 1) && !to_node0_ : peers_.empty() && to_node0_,
           "NodeExchange: node rank {} of {} needs {}", node_rank, nnodes,
           node_rank == 0 ? "one data connection per other node" : "its data connection to node 0");
  for (auto& p : peers_) p->set_send_timeout(timeout_s_);
  if (to_node0_) to_node0_->set_send_timeout(timeout_s_);
}

void NodeExchange::all_gather(const std::vector<const float*>& local, int64_t n, std::vector<float>& all) {
  DS_CHECK(int(local.size()) == ranks_per_node_, "NodeExchange: {} local buffers for {} ranks per node", local.size(),
           ranks_per_node_);
  const size_t node_bytes = size_t(ranks_per_node_) * size_t(n) * sizeof(float);
  all.resize(size_t(world()) * size_t(n));
  char* out = reinterpret_cast<char*>(all.data());
  // This node's buffers, at its ranks' place.
  char* mine = out + size_t(node_rank_) * node_bytes;
  for (int l = 0; l < ranks_per_node_; ++l)
    std::memcpy(mine + size_t(l) * size_t(n) * sizeof(float), local[size_t(l)], size_t(n) * sizeof(float));
  if (node_rank_ == 0) {
    for (int k = 1; k < nnodes_; ++k) {
      std::string got = peers_[size_t(k - 1)]->receive(timeout_s_);
      DS_CHECK(got.size() == node_bytes, "collective between nodes: {} sent {} values, node 0 expected {} ({} ranks "
               "x {}): the nodes disagree on what they reduce", peers_[size_t(k - 1)]->peer(), got.size() / 4,
               node_bytes / 4, ranks_per_node_, n);
      std::memcpy(out + size_t(k) * node_bytes, got.data(), node_bytes);
    }
    const std::string whole(out, all.size() * sizeof(float));
    for (auto& p : peers_) p->send(whole);
  } else {
    to_node0_->send(std::string(mine, node_bytes));
    std::string got = to_node0_->receive(timeout_s_);
    DS_CHECK(got.size() == all.size() * sizeof(float), "collective between nodes: {} sent {} values, node rank {} "
             "expected {}: the nodes disagree on what they reduce", to_node0_->peer(), got.size() / 4, node_rank_,
             all.size());
    std::memcpy(out, got.data(), got.size());
  }
}

}  // namespace dsserve
