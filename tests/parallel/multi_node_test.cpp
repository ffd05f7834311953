// Multi-node pieces in one process (nodes as threads on loopback): the command protocol and the
// batch description round-trip every field and name damage; the cross-process CPU collectives give
// bit-identical results to the in-process group of the same size; a node that goes away or stops
// answering breaks the collective with an error naming it, within --dist-timeout.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <future>
#include <random>
#include <thread>

#include "backend/backend.h"
#include "core/error.h"
#include "parallel/batch_wire.h"
#include "parallel/multi_node_protocol.h"
#include "parallel/node_group.h"

namespace dsserve {
namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

ForwardBatch every_field_batch() {
  std::mt19937 g(11);
  ForwardBatch b;
  for (int i = 0; i < 7; ++i) {
    b.input_ids.push_back(int32_t(g() % 5000));
    b.positions.push_back(int32_t(40 + i));
    b.out_cache_slots.push_back(int32_t(g() % 900));
  }
  b.query_start = {0, 3, 7};
  b.prefix_lens = {40, 12};
  b.max_pages = 3;
  b.page_table = {9, 8, 7, 6, 5, 0};
  b.logit_rows = {0, 1, 2, 4, 6};
  b.attention = AttentionMode::Absorbed;
  b.tree_mask = {1, 0, 0, 1, 1, 0, 1, 0, 1, 1, 0, 0, 1, 1, 0, 1, 1, 0, 0, 1, 0, 1, 0, 0, 1};  // 3x3 + 4x4
  b.mask_cols = {3, 4};
  b.key_shift = 1;
  return b;
}

void expect_same_batch(const ForwardBatch& a, const ForwardBatch& b) {
  EXPECT_EQ(a.input_ids, b.input_ids);
  EXPECT_EQ(a.positions, b.positions);
  EXPECT_EQ(a.query_start, b.query_start);
  EXPECT_EQ(a.prefix_lens, b.prefix_lens);
  EXPECT_EQ(a.page_table, b.page_table);
  EXPECT_EQ(a.max_pages, b.max_pages);
  EXPECT_EQ(a.out_cache_slots, b.out_cache_slots);
  EXPECT_EQ(a.logit_rows, b.logit_rows);
  EXPECT_EQ(a.attention, b.attention);
  EXPECT_EQ(a.tree_mask, b.tree_mask);
  EXPECT_EQ(a.mask_cols, b.mask_cols);
  EXPECT_EQ(a.key_shift, b.key_shift);
}

TEST(NodeCommands, EveryKindRoundTrips) {
  NodeCommand alloc = command_of(NodeCommandKind::AllocateCache);
  alloc.num_pages = (int64_t(1) << 33) + 5;  // beyond 32 bits
  alloc.page_size = 64;
  NodeCommand a = decode_command(encode_command(alloc));
  EXPECT_EQ(a.kind, NodeCommandKind::AllocateCache);
  EXPECT_EQ(a.num_pages, alloc.num_pages);
  EXPECT_EQ(a.page_size, 64);
  EXPECT_FALSE(a.cache_dtype.has_value());
  alloc.cache_dtype = DType::F8_E4M3;  // --kv-cache-dtype fp8_e4m3 reaches every node
  EXPECT_EQ(decode_command(encode_command(alloc)).cache_dtype, std::optional<DType>(DType::F8_E4M3));

  NodeCommand cap = command_of(NodeCommandKind::CaptureDecodeGraphs);
  cap.trash_slot = 123456;
  cap.batch_sizes = {1, 2, 4, 8, 160};
  NodeCommand c = decode_command(encode_command(cap));
  EXPECT_EQ(c.kind, NodeCommandKind::CaptureDecodeGraphs);
  EXPECT_EQ(c.trash_slot, 123456);
  EXPECT_EQ(c.batch_sizes, cap.batch_sizes);

  NodeCommand fwd = command_of(NodeCommandKind::Forward);
  fwd.batch = every_field_batch();
  NodeCommand f = decode_command(encode_command(fwd));
  EXPECT_EQ(f.kind, NodeCommandKind::Forward);
  expect_same_batch(f.batch, fwd.batch);
  // The ForwardBatch wire format alone carries every field too (key_shift, tree masks, prefixes).
  expect_same_batch(decode_batch(encode_batch(fwd.batch)), fwd.batch);

  EXPECT_EQ(decode_command(encode_command(command_of(NodeCommandKind::Shutdown))).kind, NodeCommandKind::Shutdown);

  NodeReply ok = decode_reply(encode_reply({}));
  EXPECT_TRUE(ok.ok);
  NodeReply bad = decode_reply(encode_reply({false, "rank 3: out of memory"}));
  EXPECT_FALSE(bad.ok);
  EXPECT_EQ(bad.error, "rank 3: out of memory");
}

TEST(NodeCommands, DamageIsNamed) {
  NodeCommand cap = command_of(NodeCommandKind::CaptureDecodeGraphs);
  cap.batch_sizes = {1, 2, 4};
  const std::string w = encode_command(cap);
  EXPECT_NE(error_of([&] { decode_command(w.substr(0, w.size() - 2)); }).find("batch_sizes"), std::string::npos);
  EXPECT_NE(error_of([&] { decode_command(w + "xx"); }).find("bytes after the last field"), std::string::npos);
  EXPECT_NE(error_of([&] { decode_command("XXXX" + w.substr(4)); }).find("magic"), std::string::npos);
  std::string other_kind = w;
  other_kind[8] = 9;
  EXPECT_NE(error_of([&] { decode_command(other_kind); }).find("unknown kind 9"), std::string::npos);
  std::string other_version = w;
  other_version[4] = 7;
  EXPECT_NE(error_of([&] { decode_command(other_version); }).find("same dsserve on every node"), std::string::npos);
  NodeCommand fwd = command_of(NodeCommandKind::Forward);
  fwd.batch = every_field_batch();
  fwd.batch.prefix_lens.pop_back();
  EXPECT_NE(error_of([&] { decode_command(encode_command(fwd)); }).find("prefix lengths"), std::string::npos);
  NodeCommand alloc = command_of(NodeCommandKind::AllocateCache);
  EXPECT_NE(error_of([&] { decode_command(encode_command(alloc)); }).find("allocate-cache"), std::string::npos);
}

// nnodes nodes of ranks_per_node CPU ranks each, joined over loopback as threads.
std::vector<NodeGroup> join_cpu_nodes(int nnodes, int ranks_per_node, double timeout_s) {
  const std::string addr = "127.0.0.1:" + std::to_string(free_port());
  std::vector<std::future<NodeGroup>> f;
  for (int k = 0; k < nnodes; ++k)
    f.push_back(std::async(std::launch::async, [=] {
      NodeGroupOptions o;
      o.nnodes = nnodes;
      o.node_rank = k;
      o.dist_init_addr = addr;
      o.dist_timeout_s = timeout_s;
      o.tp_size = nnodes * ranks_per_node;
      o.device = DeviceKind::Cpu;
      o.fingerprint = "test";
      return join_node_group(o);
    }));
  std::vector<NodeGroup> out;
  for (auto& x : f) out.push_back(x.get());
  return out;
}

// Values whose float sum depends on the order of the terms (large and small magnitudes mixed).
std::vector<std::vector<float>> rank_inputs(int world, int64_t n, uint32_t seed) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<std::vector<float>> x(static_cast<size_t>(world), std::vector<float>(static_cast<size_t>(n)));
  for (int r = 0; r < world; ++r)
    for (int64_t i = 0; i < n; ++i) x[size_t(r)][size_t(i)] = u(g) * (i % 3 == 0 ? 1e7f : i % 3 == 1 ? 1.0f : 1e-3f);
  return x;
}

// Runs op(rank, backend) on every backend at once, one thread each.
void on_all(std::vector<Backend*> ranks, const std::function<void(int, Backend&)>& op) {
  std::vector<std::thread> t;
  std::vector<std::string> errors(ranks.size());
  for (size_t r = 0; r < ranks.size(); ++r)
    t.emplace_back([&, r] { errors[r] = error_of([&] { op(int(r), *ranks[r]); }); });
  for (auto& x : t) x.join();
  for (size_t r = 0; r < ranks.size(); ++r) EXPECT_EQ(errors[r], "") << "rank " << r;
}

Tensor host_tensor(const std::vector<float>& v, Shape shape) {
  Tensor t = Tensor::zeros_host(DType::F32, shape);
  std::memcpy(t.ptr<float>(), v.data(), v.size() * sizeof(float));
  return t;
}

TEST(MultiNodeCpuCollectives, BitIdenticalToOneProcess) {
  const int nnodes = 2, per_node = 2, world = nnodes * per_node;
  const int64_t R = 3, C = 37, n = R * C;
  std::vector<NodeGroup> nodes = join_cpu_nodes(nnodes, per_node, 10);
  std::vector<Backend*> spread;
  for (auto& g : nodes)
    for (auto& b : g.backends) spread.push_back(b.get());
  ASSERT_EQ(int(spread.size()), world);
  std::vector<std::unique_ptr<Backend>> one_process = create_backends(DeviceKind::Cpu, {world});
  std::vector<Backend*> local;
  for (auto& b : one_process) local.push_back(b.get());

  for (uint32_t seed : {1u, 2u, 3u}) {
    auto in = rank_inputs(world, n, seed);
    const size_t w = static_cast<size_t>(world);
    std::vector<Tensor> sum_spread(w), sum_local(w), cols_spread(w), cols_local(w);
    auto run = [&](std::vector<Backend*>& ranks, std::vector<Tensor>& sums, std::vector<Tensor>& cols) {
      on_all(ranks, [&](int r, Backend& be) {
        Tensor x = host_tensor(in[size_t(r)], {R, C});
        be.all_reduce_sum(x);
        sums[size_t(r)] = x;
        cols[size_t(r)] = be.all_gather_cols(host_tensor(in[size_t(r)], {R, C}));
      });
    };
    run(spread, sum_spread, cols_spread);
    run(local, sum_local, cols_local);
    float forward = 0;  // rank order from zero, as one process sums
    for (int r = 0; r < world; ++r) forward += in[size_t(r)][0];
    for (int r = 0; r < world; ++r) {
      ASSERT_EQ(sum_spread[size_t(r)].numel(), n);
      EXPECT_EQ(std::memcmp(sum_spread[size_t(r)].ptr<float>(), sum_local[size_t(r)].ptr<float>(), size_t(n) * 4), 0)
          << "all_reduce_sum differs from one process on rank " << r << " (seed " << seed << ")";
      EXPECT_EQ(std::memcmp(sum_spread[size_t(r)].ptr<float>(), sum_spread[0].ptr<float>(), size_t(n) * 4), 0);
      EXPECT_EQ(sum_spread[size_t(r)].ptr<float>()[0], forward);
      ASSERT_EQ(cols_spread[size_t(r)].size(1), world * C);
      EXPECT_EQ(std::memcmp(cols_spread[size_t(r)].ptr<float>(), cols_local[size_t(r)].ptr<float>(),
                            size_t(world * n) * 4), 0)
          << "all_gather_cols differs from one process on rank " << r;
    }
  }
  for (int r = 0; r < world; ++r) EXPECT_EQ(spread[size_t(r)]->fatal_error(), "");
}

TEST(MultiNodeCpuCollectives, ANodeThatGoesAwayIsNamed) {
  std::vector<NodeGroup> nodes = join_cpu_nodes(2, 1, 10);
  auto x = rank_inputs(2, 16, 5);
  // Node 1 leaves (its process ends: its sockets close) while node 0 reduces.
  nodes[1] = NodeGroup{};
  Tensor t = host_tensor(x[0], {16});
  auto t0 = std::chrono::steady_clock::now();
  std::string e = error_of([&] { nodes[0].backends[0]->all_reduce_sum(t); });
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 5.0);
  EXPECT_NE(e.find("node rank 1"), std::string::npos) << e;
  EXPECT_NE(e.find("closed the connection"), std::string::npos) << e;
  // The group stays broken: the reason is the backend's fatal error, and later collectives refuse.
  EXPECT_NE(nodes[0].backends[0]->fatal_error().find("node rank 1"), std::string::npos);
  EXPECT_NE(error_of([&] { nodes[0].backends[0]->all_reduce_sum(t); }).find("node rank 1"), std::string::npos);
}

TEST(MultiNodeCpuCollectives, ASilentNodeIsNamedAfterTheTimeout) {
  std::vector<NodeGroup> nodes = join_cpu_nodes(2, 1, 1.0);
  Tensor t = host_tensor(rank_inputs(2, 16, 6)[0], {16});
  auto t0 = std::chrono::steady_clock::now();
  std::string e = error_of([&] { nodes[0].backends[0]->all_reduce_sum(t); });  // node 1 never joins it
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_NE(e.find("no message from node rank 1"), std::string::npos) << e;
  EXPECT_GE(s, 0.9);
  EXPECT_LT(s, 5.0);
  // Node 1's side: node 0 is now silent too.
  Tensor u = host_tensor(rank_inputs(2, 16, 6)[1], {16});
  std::string e1 = error_of([&] { nodes[1].backends[0]->all_reduce_sum(u); });
  EXPECT_NE(e1.find("node 0"), std::string::npos) << e1;
}

TEST(NodeGroup, LayoutIsChecked) {
  NodeGroupOptions o;
  o.nnodes = 2;
  o.tp_size = 3;
  o.dist_init_addr = "127.0.0.1:1";
  EXPECT_NE(error_of([&] { join_node_group(o); }).find("--tp-size 3 with --nnodes 2"), std::string::npos);
  o.tp_size = 4;
  o.dist_init_addr = "";
  EXPECT_NE(error_of([&] { join_node_group(o); }).find("--dist-init-addr"), std::string::npos);
}

}  // namespace
}  // namespace dsserve
