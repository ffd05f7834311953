// KV pool sizing from --mem-fraction-static: SGLang's rule (free after weights minus the part of the
// total kept outside the fraction), whole pages, the trash page, and weights that leave no room.
#include <gtest/gtest.h>

#include "runtime/kv_capacity.h"

namespace dsserve {
namespace {

constexpr int64_t GiB = int64_t(1) << 30;

TEST(KvCapacity, FractionOfTotalMinusWhatIsResident) {
  KvCapacityInput in;
  in.total_bytes = 140 * GiB;
  in.free_bytes = 100 * GiB;  // 40 GiB resident (weights, context)
  in.mem_fraction_static = 0.9;
  in.bytes_per_token = 1024;
  in.page_size = 1;
  KvCapacity c = kv_capacity_from_fraction(in);
  EXPECT_EQ(c.budget_bytes, 100 * GiB - 14 * GiB);
  EXPECT_EQ(c.tokens, 86 * GiB / 1024 - 1);  // one page kept for the trash page
}

TEST(KvCapacity, WholePages) {
  KvCapacityInput in;
  in.total_bytes = 1000000;
  in.free_bytes = 600000;
  in.mem_fraction_static = 0.5;  // budget 100000 bytes
  in.bytes_per_token = 100;
  in.page_size = 64;             // 6400 bytes a page: 15 pages, one reserved
  KvCapacity c = kv_capacity_from_fraction(in);
  EXPECT_EQ(c.budget_bytes, 100000);
  EXPECT_EQ(c.tokens, 14 * 64);
}

TEST(KvCapacity, WeightsBeyondTheFractionLeaveNothing) {
  KvCapacityInput in;
  in.total_bytes = 100 * GiB;
  in.free_bytes = 10 * GiB;
  in.mem_fraction_static = 0.8;
  in.bytes_per_token = 1152;
  KvCapacity c = kv_capacity_from_fraction(in);
  EXPECT_LT(c.budget_bytes, 0);
  EXPECT_EQ(c.tokens, 0);
}

TEST(KvCapacity, RejectsFractionOutOfRange) {
  KvCapacityInput in;
  in.total_bytes = in.free_bytes = GiB;
  in.bytes_per_token = 1;
  in.mem_fraction_static = 1.5;
  EXPECT_ANY_THROW(kv_capacity_from_fraction(in));
  in.mem_fraction_static = 0;
  EXPECT_ANY_THROW(kv_capacity_from_fraction(in));
}

}  // namespace
}  // namespace dsserve
