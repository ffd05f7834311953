// NCCL across nodes on one machine with 2 GPUs (skipped with fewer): two "nodes" as threads, each
// joining one communicator through node 0's unique id with one GPU (ncclCommInitRank, as two
// processes on two nodes do). The collectives against the CPU oracle on random inputs, and a
// fixture forward split over the two nodes (ReplicaRunner with RankSpan) against the same
// split in one process (create_backends): the same logits.
#include <gtest/gtest.h>

#include <future>

#include "backend/cuda/cuda_multi_node.h"
#include "common/test_paths.h"
#include "core/error.h"
#include "gpu/gpu_test_util.h"
#include "model/weight_source.h"
#include "parallel/replica_runner.h"

namespace dsserve::test {
namespace {

bool two_gpus() { return cuda_device_count() >= 2; }

// Node k of 2 gets global rank k on GPU k.
std::vector<std::unique_ptr<Backend>> two_nodes() {
  const std::string id = nccl_unique_id();
  auto n0 = std::async(std::launch::async, [&] { return create_cuda_node_backends(2, 0, 1, id, 0); });
  auto n1 = std::async(std::launch::async, [&] { return create_cuda_node_backends(2, 1, 1, id, 1); });
  std::vector<std::unique_ptr<Backend>> out;
  out.push_back(std::move(n0.get()[0]));
  out.push_back(std::move(n1.get()[0]));
  return out;
}

TEST(GpuMultiNode, CollectivesMatchTheCpuOracle) {
  DS_REQUIRE_GPU();
  if (!two_gpus()) GTEST_SKIP() << "fewer than 2 CUDA devices";
  auto ranks = two_nodes();
  Rng rng(17);
  const int64_t R = 5, C = 96;
  std::vector<Tensor> in = {randn({R, C}, rng), randn({R, C}, rng)};
  std::vector<Tensor> sums(2), cols(2);
  std::vector<std::future<void>> f;
  for (int r = 0; r < 2; ++r)
    f.push_back(std::async(std::launch::async, [&, r] {
      Backend& be = *ranks[size_t(r)];
      be.bind_thread();
      Tensor x = to_backend(be, in[size_t(r)]);
      be.all_reduce_sum(x);
      sums[size_t(r)] = be.to_host_f32(x);
      cols[size_t(r)] = be.to_host_f32(be.all_gather_cols(to_backend(be, in[size_t(r)])));
      be.synchronize();
    }));
  for (auto& x : f) x.get();
  // The oracle: the CPU group of 2 ranks.
  auto oracle = create_backends(DeviceKind::Cpu, {2});
  std::vector<Tensor> osum(2), ocols(2);
  std::vector<std::future<void>> g;
  for (int r = 0; r < 2; ++r)
    g.push_back(std::async(std::launch::async, [&, r] {
      Tensor x = to_backend(*oracle[size_t(r)], in[size_t(r)]);
      oracle[size_t(r)]->all_reduce_sum(x);
      osum[size_t(r)] = x;
      ocols[size_t(r)] = oracle[size_t(r)]->all_gather_cols(to_backend(*oracle[size_t(r)], in[size_t(r)]));
    }));
  for (auto& x : g) x.get();
  for (int r = 0; r < 2; ++r) {
    // BF16 activations on the GPU: the sum of two BF16 values rounded to BF16.
    EXPECT_LT(rel_err(sums[size_t(r)], osum[size_t(r)]), 1e-2) << "rank " << r;
    EXPECT_LT(rel_err(cols[size_t(r)], ocols[size_t(r)]), 1e-6) << "rank " << r;
    ASSERT_EQ(cols[size_t(r)].size(1), 2 * C);
  }
  EXPECT_EQ(rel_err(sums[0], sums[1]), 0.0) << "ranks disagree on the all-reduce";
}

TEST(GpuMultiNode, ForwardOverTwoNodesMatchesOneProcess) {
  DS_REQUIRE_GPU();
  DS_REQUIRE_FIXTURES();
  if (!two_gpus()) GTEST_SKIP() << "fewer than 2 CUDA devices";
  const std::string dir = fixtures_dir() + "/tiny-v3-fp8";
  ModelConfig cfg = ModelConfig::load(dir);
  LoadOptions lo;
  lo.load_mtp = false;
  const int page_size = 16, pages = 16, n = 40;
  ForwardBatch b;
  for (int i = 0; i < n; ++i) {
    b.input_ids.push_back(int32_t((i * 7919 + 13) % cfg.vocab_size));
    b.positions.push_back(i);
    b.out_cache_slots.push_back(i);
    b.logit_rows.push_back(i);
  }
  b.query_start = {0, n};
  b.prefix_lens = {0};
  b.max_pages = 3;
  b.page_table = {0, 1, 2};
  b.attention = AttentionMode::Expanded;

  Tensor one_process;
  {
    CheckpointWeights src(dir, cfg);
    ReplicaRunner tp(cfg, configure_gpu_backends(create_backends(DeviceKind::Cuda, {2})), src, 1024, lo);
    tp.make_cache(pages, page_size, false, std::nullopt);
    ForwardOutput out = tp.forward(b);
    one_process = tp.backend().to_host_f32(out.logits);
  }
  auto ranks = two_nodes();
  std::vector<Tensor> logits(2);
  std::vector<std::future<void>> f;
  for (int k = 0; k < 2; ++k)
    f.push_back(std::async(std::launch::async, [&, k] {
      CheckpointWeights src(dir, cfg);
      std::vector<std::unique_ptr<Backend>> mine;
      mine.push_back(std::move(ranks[size_t(k)]));
      ReplicaRunner node(cfg, std::move(mine), src, 1024, lo, RankSpan{k, 2});
      node.make_cache(pages, page_size, false, std::nullopt);
      ForwardOutput out = node.forward(b);
      logits[size_t(k)] = node.backend().to_host_f32(out.logits);
    }));
  for (auto& x : f) x.get();
  ASSERT_EQ(logits[0].numel(), one_process.numel());
  EXPECT_LT(rel_err(logits[0], one_process), 1e-3) << "node 0's logits differ from one process with --tp-size 2";
  EXPECT_EQ(rel_err(logits[0], logits[1]), 0.0) << "the two nodes' gathered logits differ";
}

}  // namespace
}  // namespace dsserve::test
