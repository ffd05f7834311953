// Multi-node group bootstrap (see node_group.h).
#include "parallel/node_group.h"

#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "parallel/multi_node_cpu_group.h"
#include "parallel/node_exchange.h"

#ifdef DSSERVE_HAVE_CUDA
#include "backend/cuda/cuda_multi_node.h"
#endif

namespace dsserve {

namespace {
[[maybe_unused]] std::string to_hex(const std::string& bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

[[maybe_unused]] std::string from_hex(const std::string& hex) {
  DS_CHECK(hex.size() % 2 == 0, "rendezvous payload: odd-length hex string");
  std::string out;
  for (size_t i = 0; i < hex.size(); i += 2) out += char(std::stoi(hex.substr(i, 2), nullptr, 16));
  return out;
}

const char* device_name(DeviceKind k) { return k == DeviceKind::Cuda ? "cuda" : "cpu"; }

// CPU: every other node opens a data connection to node 0, on a port node 0 picks and announces over
// the control channels; the collectives then never share a socket with the commands.
std::shared_ptr<NodeExchange> connect_data_plane(const NodeGroupOptions& opt, NodeGroup& g) {
  auto [host, port] = parse_host_port(opt.dist_init_addr);
  BootstrapOptions b{opt.nnodes, opt.node_rank, "", opt.dist_timeout_s, opt.fingerprint + " data"};
  Rendezvous data;
  if (opt.node_rank == 0) {
    b.dist_init_addr = fmt::format("{}:0", host.find(':') != std::string::npos ? "[" + host + "]" : host);
    data = rendezvous(b, "", [&](int data_port) {
      for (auto& p : g.peers) p->send(nlohmann::json{{"data_port", data_port}}.dump());
    });
  } else {
    nlohmann::json msg;
    try {
      msg = nlohmann::json::parse(g.to_node0->receive(opt.dist_timeout_s));
    } catch (const nlohmann::json::exception&) {
      fail("node rank {}: node 0 announced its data port in a form this build does not read", opt.node_rank);
    }
    const int data_port = msg.value("data_port", -1);
    DS_CHECK(data_port > 0, "node rank {}: node 0 announced no data port", opt.node_rank);
    b.dist_init_addr = fmt::format("{}:{}", host.find(':') != std::string::npos ? "[" + host + "]" : host, data_port);
    data = rendezvous(b, "");
  }
  for (auto& p : data.peers) p->set_peer(p->peer() + " (data)");
  if (data.to_node0) data.to_node0->set_peer("node 0 (data)");
  return std::make_shared<NodeExchange>(opt.node_rank, opt.nnodes, g.ranks_per_node, std::move(data.peers),
                                        std::move(data.to_node0), opt.dist_timeout_s);
}
}  // namespace

NodeGroup join_node_group(const NodeGroupOptions& opt) {
  DS_CHECK(opt.nnodes >= 2, "join_node_group: --nnodes {} (one node needs no group)", opt.nnodes);
  DS_CHECK(opt.tp_size >= opt.nnodes && opt.tp_size % opt.nnodes == 0,
           "--tp-size {} with --nnodes {}: every node runs the same number of ranks, so --tp-size must be a multiple "
           "of --nnodes", opt.tp_size, opt.nnodes);
  DS_CHECK(!opt.dist_init_addr.empty(), "--nnodes {} needs --dist-init-addr HOST:PORT (node 0's address)", opt.nnodes);
  NodeGroup g;
  g.nnodes = opt.nnodes;
  g.node_rank = opt.node_rank;
  g.ranks_per_node = opt.tp_size / opt.nnodes;
  g.world = opt.tp_size;
  g.timeout_s = opt.dist_timeout_s;
  const DeviceKind kind = resolve_device(opt.device);

  // Node 0's payload: NCCL's unique id for a CUDA group (hex: the payload travels as JSON text).
  std::string payload;
  if (opt.node_rank == 0) {
    nlohmann::json p{{"device", device_name(kind)}};
#ifdef DSSERVE_HAVE_CUDA
    if (kind == DeviceKind::Cuda) p["nccl_id"] = to_hex(nccl_unique_id());
#endif
    payload = p.dump();
  }
  BootstrapOptions b{opt.nnodes, opt.node_rank, opt.dist_init_addr, opt.dist_timeout_s,
                     opt.fingerprint + " device=" + device_name(kind)};
  spdlog::info("node rank {} of {}: joining at {} (ranks {}..{} of {}, --dist-timeout {} s)", opt.node_rank,
               opt.nnodes, opt.dist_init_addr, g.first_rank(), g.first_rank() + g.ranks_per_node - 1, g.world,
               opt.dist_timeout_s);
  Rendezvous rv = rendezvous(b, payload);
  g.peers = std::move(rv.peers);
  g.to_node0 = std::move(rv.to_node0);
  for (auto& p : g.peers) p->set_send_timeout(opt.dist_timeout_s);
  if (g.to_node0) g.to_node0->set_send_timeout(opt.dist_timeout_s);
  const nlohmann::json got = nlohmann::json::parse(rv.payload);
  spdlog::info("node rank {}: all {} nodes joined", opt.node_rank, opt.nnodes);

  if (kind == DeviceKind::Cpu) {
    g.backends = create_multi_node_cpu_backends(connect_data_plane(opt, g), opt.dist_timeout_s);
    return g;
  }
#ifdef DSSERVE_HAVE_CUDA
  g.backends = create_cuda_node_backends(g.world, g.first_rank(), g.ranks_per_node,
                                         from_hex(got.value("nccl_id", std::string())));
  return g;
#else
  (void)got;
  fail("--device cuda with --nnodes {}: this build of dsserve has no CUDA backend", opt.nnodes);
#endif
}

}  // namespace dsserve
