// Node 0's multi-node runner and the other nodes' command loop (see multi_node_model.h).
#include "parallel/multi_node_model.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "core/error.h"

namespace dsserve {

MultiNodeModel::MultiNodeModel(NodeGroup group, const ModelConfig& cfg, WeightSource& weights, int64_t context_len,
                               const LoadOptions& opt)
    : group_(std::move(group)) {
  DS_CHECK(group_.node_rank == 0 && group_.peers.size() == size_t(group_.nnodes - 1),
           "MultiNodeModel runs on node 0 with a control channel to each of the {} other nodes", group_.nnodes - 1);
  local_ = std::make_unique<ReplicaRunner>(cfg, std::move(group_.backends), weights, context_len, opt,
                                                 RankSpan{0, group_.world});
  local_->synchronize();
  monitor_ = std::thread([this] { monitor(); });
}

void MultiNodeModel::monitor() {
  using Clock = std::chrono::steady_clock;
  std::string lost;
  int64_t lost_ns = 0;
  while (!stop_monitor_.load()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    const int64_t now = Clock::now().time_since_epoch().count();
    if (lost.empty()) {
      for (auto& p : group_.peers)
        if (p->hung_up()) {
          lost = p->peer() + " went away (its connection closed)";
          lost_ns = now;
          spdlog::error("{}", lost);
          set_fatal(lost);
          break;
        }
      continue;
    }
    const int64_t started = op_started_ns_.load();
    const double stuck_s = started ? double(now - std::max(started, lost_ns)) * 1e-9 : 0;
    if (stuck_s > kStuckGraceSeconds) {
      spdlog::critical("{}; the operation in flight across {} nodes has not returned {:.0f} s later (a collective "
                       "waiting for it); exiting", lost, group_.nnodes, stuck_s);
      std::fflush(nullptr);
      std::_Exit(3);
    }
  }
}

MultiNodeModel::~MultiNodeModel() {
  stop_monitor_ = true;
  if (monitor_.joinable()) monitor_.join();
  if (device_fatal_error().empty()) {
    const std::string bytes = encode_command(command_of(NodeCommandKind::Shutdown));
    for (auto& p : group_.peers) {
      try {
        p->send(bytes);
        decode_reply(p->receive(group_.timeout_s));
      } catch (const std::exception& e) {
        spdlog::warn("shutting down {}: {}", p->peer(), e.what());
      }
    }
  }
  local_.reset();
}

void MultiNodeModel::set_fatal(const std::string& reason) {
  std::lock_guard lk(mu_);
  if (fatal_.empty()) fatal_ = reason;
}

std::string MultiNodeModel::device_fatal_error() {
  {
    std::lock_guard lk(mu_);
    if (!fatal_.empty()) return fatal_;
  }
  return local_ ? local_->device_fatal_error() : std::string();
}

void MultiNodeModel::run_everywhere(const NodeCommand& c, const std::function<void()>& local) {
  const char* what = command_name(c.kind);
  if (std::string f = device_fatal_error(); !f.empty())
    fail("{} across {} nodes refused: an earlier failure left the nodes out of step: {}", what, group_.nnodes, f);
  const std::string bytes = encode_command(c);
  for (auto& p : group_.peers) {
    try {
      p->send(bytes);
    } catch (const std::exception& e) {
      set_fatal(e.what());
      throw;
    }
  }
  std::string local_error, peer_error;
  op_started_ns_ = std::chrono::steady_clock::now().time_since_epoch().count();
  try {
    local();
  } catch (const std::exception& e) {
    local_error = e.what();
  }
  for (auto& p : group_.peers) {
    try {
      NodeReply r = decode_reply(p->receive(group_.timeout_s));
      if (!r.ok && peer_error.empty()) peer_error = fmt::format("{} failed: {}", p->peer(), r.error);
    } catch (const std::exception& e) {
      if (peer_error.empty()) peer_error = e.what();
    }
  }
  op_started_ns_ = 0;
  if (peer_error.empty() && local_error.empty()) return;
  std::string reason = peer_error.empty() ? "node 0 failed: " + local_error : peer_error;
  if (!peer_error.empty() && !local_error.empty()) reason += "; on node 0: " + local_error;
  set_fatal(reason);
  fail("{} across {} nodes failed: {}", what, group_.nnodes, reason);
}

LatentCache MultiNodeModel::allocate_cache(int64_t num_pages, int page_size, std::optional<DType> dtype) {
  NodeCommand c = command_of(NodeCommandKind::AllocateCache);
  c.num_pages = num_pages;
  c.page_size = page_size;
  c.cache_dtype = dtype;
  LatentCache out;
  run_everywhere(c, [&] { out = local_->make_cache(num_pages, page_size, false, dtype); });
  return out;
}

ForwardOutput MultiNodeModel::forward(const ForwardBatch& batch, LatentCache& cache) {
  NodeCommand c = command_of(NodeCommandKind::Forward);
  c.batch = batch;
  ForwardOutput out;
  run_everywhere(c, [&] { out = local_->forward(batch, cache); });
  return out;
}

bool MultiNodeModel::capture_graphs(const GraphPlan& plan, LatentCache& cache, LatentCache& mtp_cache) {
  DS_CHECK(plan.verify_sizes.empty() && plan.mtp_sizes.empty() && !mtp_cache.data.defined(),
           "several nodes record decode graphs only (speculative decoding runs on one node)");
  NodeCommand c = command_of(NodeCommandKind::CaptureDecodeGraphs);
  c.trash_slot = plan.trash_slot;
  c.batch_sizes.assign(plan.decode_sizes.begin(), plan.decode_sizes.end());
  bool ok = false;
  run_everywhere(c, [&] { ok = local_->capture_graphs(plan, cache, mtp_cache); });
  return ok;
}

void serve_node_commands(NodeGroup group, const ModelConfig& cfg, WeightSource& weights, int64_t context_len,
                         const LoadOptions& opt) {
  DS_CHECK(group.node_rank > 0 && group.to_node0, "serve_node_commands runs on a node other than node 0");
  const int node_rank = group.node_rank;
  const double timeout_s = group.timeout_s;
  std::unique_ptr<Channel> to_node0 = std::move(group.to_node0);
  ReplicaRunner tp(cfg, std::move(group.backends), weights, context_len, opt,
                   RankSpan{group.first_rank(), group.world});
  LatentCache cache;
  tp.synchronize();
  spdlog::info("node rank {}: ranks {}..{} of {} loaded; running node 0's commands (no HTTP on this node)", node_rank,
               group.first_rank(), group.first_rank() + group.ranks_per_node - 1, group.world);
  for (;;) {
    NodeCommand c;
    try {
      while (!to_node0->readable(3600)) {
      }
      c = decode_command(to_node0->receive(timeout_s));
    } catch (const std::exception& e) {
      fail("node rank {}: lost node 0: {}", node_rank, e.what());
    }
    NodeReply reply;
    try {
      switch (c.kind) {
        case NodeCommandKind::AllocateCache: cache = tp.make_cache(c.num_pages, c.page_size, false, c.cache_dtype); break;
        case NodeCommandKind::CaptureDecodeGraphs:
        {
          GraphPlan plan;
          plan.trash_slot = c.trash_slot;
          plan.decode_sizes.assign(c.batch_sizes.begin(), c.batch_sizes.end());
          LatentCache no_mtp;
          tp.capture_graphs(plan, cache, no_mtp);
          break;
        }
        case NodeCommandKind::Forward: tp.forward(c.batch); break;
        case NodeCommandKind::Shutdown: break;
      }
      if (std::string f = tp.device_fatal_error(); !f.empty()) fail("{}", f);
    } catch (const std::exception& e) {
      spdlog::error("node rank {}: {} failed: {}", node_rank, command_name(c.kind), e.what());
      reply = {false, e.what()};
    }
    try {
      to_node0->send(encode_reply(reply));
    } catch (const std::exception& e) {
      fail("node rank {}: lost node 0: {}", node_rank, e.what());
    }
    if (c.kind == NodeCommandKind::Shutdown) {
      spdlog::info("node rank {}: node 0 shut down; exiting", node_rank);
      return;
    }
  }
}

}  // namespace dsserve
