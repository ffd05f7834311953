// Multi-node rendezvous on loopback (nodes as threads): everyone joins and gets node 0's payload,
// a node that never joins is named after --dist-timeout, mismatched commands are refused, a peer
// whose node 0 never starts gives up clearly; and the batch description crosses the channel intact.
#include <gtest/gtest.h>

#include <future>
#include <random>
#include <thread>

#include "core/error.h"
#include "parallel/batch_wire.h"
#include "parallel/bootstrap.h"

namespace dsserve {
namespace {

BootstrapOptions node(int rank, int nnodes, int port, double timeout_s = 10, std::string fp = "model-a tp2") {
  return {nnodes, rank, "127.0.0.1:" + std::to_string(port), timeout_s, std::move(fp)};
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Bootstrap, AllNodesJoinAndReceiveThePayload) {
  std::promise<int> port;
  auto node0 = std::async(std::launch::async, [&] {
    return rendezvous(node(0, 4, 0), "nccl-unique-id-bytes", [&](int p) { port.set_value(p); });
  });
  int p = port.get_future().get();
  std::vector<std::future<Rendezvous>> peers;
  for (int r = 3; r >= 1; --r)  // in any order
    peers.push_back(std::async(std::launch::async, [&, r] { return rendezvous(node(r, 4, p), ""); }));
  Rendezvous rv0 = node0.get();
  ASSERT_EQ(rv0.peers.size(), 3u);
  std::vector<Rendezvous> rvs;
  for (auto& f : peers) rvs.push_back(f.get());
  for (auto& rv : rvs) EXPECT_EQ(rv.payload, "nccl-unique-id-bytes");
  // The channels stay open: node 0 can send a batch description to every node.
  ForwardBatch b;
  b.input_ids = {5, 6, 7};
  b.positions = {10, 11, 0};
  b.query_start = {0, 2, 3};
  b.prefix_lens = {10, 0};
  b.max_pages = 2;
  b.page_table = {4, 5, 6, 0};
  b.out_cache_slots = {74, 75, 96};
  b.logit_rows = {1, 2};
  b.attention = AttentionMode::Absorbed;
  for (auto& ch : rv0.peers) ch->send(encode_batch(b));
  for (auto& rv : rvs) {
    ForwardBatch got = decode_batch(rv.to_node0->receive(5));
    EXPECT_EQ(got.input_ids, b.input_ids);
    EXPECT_EQ(got.page_table, b.page_table);
    EXPECT_EQ(got.out_cache_slots, b.out_cache_slots);
    EXPECT_EQ(got.attention, AttentionMode::Absorbed);
  }
}

TEST(Bootstrap, MissingNodesAreNamedAfterTheTimeout) {
  std::promise<int> port;
  auto node0 = std::async(std::launch::async, [&] {
    return error_of([&] { rendezvous(node(0, 4, 0, 1.5), "x", [&](int p) { port.set_value(p); }); });
  });
  int p = port.get_future().get();
  auto peer = std::async(std::launch::async, [&] { return error_of([&] { rendezvous(node(2, 4, p, 1.5), ""); }); });
  std::string e = node0.get();
  EXPECT_NE(e.find("--dist-timeout of 1.5 s passed with node ranks 1, 3 of 4 missing"), std::string::npos) << e;
  std::string pe = peer.get();
  EXPECT_NE(pe.find("node rank 2"), std::string::npos) << pe;
}

TEST(Bootstrap, MismatchedCommandsAreRefusedWithTheReason) {
  std::promise<int> port;
  auto node0 = std::async(std::launch::async, [&] {
    return error_of([&] { rendezvous(node(0, 2, 0, 5), "x", [&](int p) { port.set_value(p); }); });
  });
  int p = port.get_future().get();
  std::string pe = error_of([&] { rendezvous(node(1, 2, p, 5, "model-b tp2"), ""); });
  EXPECT_NE(pe.find("node 0 refused it"), std::string::npos) << pe;
  EXPECT_NE(pe.find("differs from node 0"), std::string::npos) << pe;
  EXPECT_NE(node0.get().find("node rank 1 was refused"), std::string::npos);
}

TEST(Bootstrap, PeerWithoutNode0GivesUpAfterTheTimeout) {
  // A port nothing listens on: bind one, learn it, close it.
  int p = 0;
  {
    std::promise<int> port;
    auto n0 = std::async(std::launch::async, [&] {
      return error_of([&] { rendezvous(node(0, 2, 0, 0.3), "x", [&](int q) { port.set_value(q); }); });
    });
    p = port.get_future().get();
    n0.get();
  }
  auto t0 = std::chrono::steady_clock::now();
  std::string e = error_of([&] { rendezvous(node(1, 2, p, 0.8), ""); });
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_NE(e.find("did not answer within --dist-timeout 0.8 s"), std::string::npos) << e;
  EXPECT_GE(s, 0.7);
  EXPECT_LT(s, 5.0);
}

TEST(Bootstrap, BadArgumentsAreNamed) {
  EXPECT_NE(error_of([] { parse_host_port("localhost"); }).find("expected HOST:PORT"), std::string::npos);
  EXPECT_NE(error_of([] { parse_host_port("h:99999"); }).find("port"), std::string::npos);
  EXPECT_NE(error_of([] { rendezvous({2, 5, "127.0.0.1:1", 1, ""}, ""); }).find("--node-rank 5"), std::string::npos);
  EXPECT_NE(error_of([] { rendezvous({2, 1, "", 1, ""}, ""); }).find("--dist-init-addr"), std::string::npos);
}

TEST(BatchWire, RoundTripsAndRejectsDamage) {
  std::mt19937 g(3);
  ForwardBatch b;
  for (int i = 0; i < 50; ++i) b.input_ids.push_back(int32_t(g() % 1000)), b.positions.push_back(i), b.out_cache_slots.push_back(i);
  b.query_start = {0, 20, 50};
  b.prefix_lens = {3, 0};
  b.max_pages = 3;
  b.page_table = {1, 2, 3, 4, 5, 6};
  b.logit_rows = {19, 49};
  b.tree_mask.assign(20 * 20 + 30 * 30, 1);
  b.mask_cols = {20, 30};
  std::string w = encode_batch(b);
  ForwardBatch r = decode_batch(w);
  EXPECT_EQ(r.input_ids, b.input_ids);
  EXPECT_EQ(r.tree_mask, b.tree_mask);
  EXPECT_EQ(r.mask_cols, b.mask_cols);
  EXPECT_NE(error_of([&] { decode_batch(w.substr(0, w.size() - 3)); }).find("field mask_cols"), std::string::npos);
  EXPECT_NE(error_of([&] { decode_batch(w.substr(0, 10)); }).find("truncated"), std::string::npos);
  EXPECT_NE(error_of([&] { decode_batch("XXXX" + w.substr(4)); }).find("magic"), std::string::npos);
  ForwardBatch bad = b;
  bad.positions.pop_back();
  EXPECT_NE(error_of([&] { decode_batch(encode_batch(bad)); }).find("positions"), std::string::npos);
}

}  // namespace
}  // namespace dsserve
