// The CPU backends of data-parallel attention (create_backends with attention groups): 4 ranks in 2 groups
// of 2. all_reduce_sum and all_gather_cols stay within a group, all_reduce_sum_world spans every
// rank, all_gather_rows_groups concatenates every group's rows in group order (a group may have
// none) and refuses a row count that does not match its tensor.
#include <gtest/gtest.h>

#include <thread>

#include "backend/backend.h"
#include "core/error.h"

namespace dsserve {
namespace {

// Runs body(rank) on one thread per rank (the collectives meet across the threads).
void on_ranks(int world, const std::function<void(int)>& body) {
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) threads.emplace_back(body, r);
  for (auto& t : threads) t.join();
}

Tensor filled(int64_t rows, int64_t cols, float base) {
  Tensor t = Tensor::zeros_host(DType::F32, {rows, cols});
  for (int64_t i = 0; i < rows * cols; ++i) t.ptr<float>()[i] = base + float(i);
  return t;
}

TEST(DataParallelCollectives, GroupAndWorldScopes) {
  auto be = create_backends(DeviceKind::Cpu, {4, 2});
  ASSERT_EQ(be.size(), 4u);
  std::vector<std::vector<float>> group_sum(4), world_sum(4), cols(4);
  on_ranks(4, [&](int r) {
    Tensor a = filled(1, 3, float(1 + r));  // rank r: r+1, r+2, r+3
    be[size_t(r)]->all_reduce_sum(a);
    group_sum[size_t(r)].assign(a.ptr<float>(), a.ptr<float>() + 3);
    Tensor b = filled(1, 3, float(1 + r));
    be[size_t(r)]->all_reduce_sum_world(b);
    world_sum[size_t(r)].assign(b.ptr<float>(), b.ptr<float>() + 3);
    Tensor c = be[size_t(r)]->all_gather_cols(filled(1, 2, float(10 * r)));
    cols[size_t(r)].assign(c.ptr<float>(), c.ptr<float>() + c.numel());
  });
  // Groups {0, 1} and {2, 3}.
  EXPECT_EQ(group_sum[0], (std::vector<float>{3, 5, 7}));
  EXPECT_EQ(group_sum[1], group_sum[0]);
  EXPECT_EQ(group_sum[2], (std::vector<float>{7, 9, 11}));
  EXPECT_EQ(group_sum[3], group_sum[2]);
  for (int r = 0; r < 4; ++r) EXPECT_EQ(world_sum[size_t(r)], (std::vector<float>{10, 14, 18})) << "rank " << r;
  EXPECT_EQ(cols[0], (std::vector<float>{0, 1, 10, 11}));
  EXPECT_EQ(cols[3], (std::vector<float>{20, 21, 30, 31}));
}

TEST(DataParallelCollectives, RowsOfEveryGroupInGroupOrder) {
  auto be = create_backends(DeviceKind::Cpu, {4, 2});
  for (std::vector<int32_t> counts : {std::vector<int32_t>{2, 3}, {0, 2}, {3, 0}}) {
    std::vector<std::vector<float>> got(4);
    on_ranks(4, [&](int r) {
      const int g = r / 2;
      // The ranks of a group hold the same rows: group g's rows start at 100 * (g + 1).
      Tensor x = counts[size_t(g)] > 0 ? filled(counts[size_t(g)], 2, float(100 * (g + 1)))
                                        : Tensor(nullptr, DType::F32, {0, 2}, Device::CPU);
      Tensor all = be[size_t(r)]->all_gather_rows_groups(x, counts);
      got[size_t(r)].assign(all.ptr<float>(), all.ptr<float>() + all.numel());
    });
    std::vector<float> want;
    for (int g = 0; g < 2; ++g)
      for (int i = 0; i < 2 * counts[size_t(g)]; ++i) want.push_back(float(100 * (g + 1) + i));
    for (int r = 0; r < 4; ++r) EXPECT_EQ(got[size_t(r)], want) << "rank " << r << ", counts " << counts[0] << ", " << counts[1];
  }
}

TEST(DataParallelCollectives, RefusesWhatDoesNotSplit) {
  EXPECT_THROW(create_backends(DeviceKind::Cpu, {4, 3}), Error);
  auto be = create_backends(DeviceKind::Cpu, {2, 2});  // one rank per group: checked before meeting
  const std::vector<int32_t> counts{2, 1};
  EXPECT_THROW(be[0]->all_gather_rows_groups(filled(3, 2, 0), counts), Error);
}

}  // namespace
}  // namespace dsserve
