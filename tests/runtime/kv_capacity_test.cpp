// KV pool sizing from --mem-fraction-static: SGLang's rule (free after weights minus the part of the
// total kept outside the fraction), whole pages, the trash page, and weights that leave no room.
#include <gtest/gtest.h>

#include "core/dtype.h"
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

TEST(KvCapacity, Fp8LatentCacheHalvesBytesPerTokenAndDoublesTokens) {
  // V3: 61 layers (62 with the MTP layer's cache), 576 latent values per layer.
  const int64_t bf16 = latent_bytes_per_token(61, 576, int64_t(dtype_size(DType::BF16)));
  const int64_t fp8 = latent_bytes_per_token(61, 576, int64_t(dtype_size(DType::F8_E4M3)));
  EXPECT_EQ(bf16, 61 * 576 * 2);
  EXPECT_EQ(fp8, 61 * 576);
  EXPECT_EQ(latent_bytes_per_token(62, 576, int64_t(dtype_size(DType::F8_E5M2))), 62 * 576);
  KvCapacityInput in;
  in.total_bytes = 140 * GiB;
  in.free_bytes = 100 * GiB;
  in.mem_fraction_static = 0.88;
  in.page_size = 64;
  in.bytes_per_token = bf16;
  const KvCapacity a = kv_capacity_from_fraction(in);
  in.bytes_per_token = fp8;
  const KvCapacity b = kv_capacity_from_fraction(in);
  EXPECT_EQ(a.budget_bytes, b.budget_bytes);
  const int64_t budget_pages_bf16 = a.budget_bytes / (bf16 * 64), budget_pages_fp8 = b.budget_bytes / (fp8 * 64);
  EXPECT_EQ(a.tokens, (budget_pages_bf16 - 1) * 64);
  EXPECT_EQ(b.tokens, (budget_pages_fp8 - 1) * 64);
  EXPECT_GE(b.tokens, 2 * a.tokens) << "the same budget holds twice the tokens";
  EXPECT_LE(b.tokens, 2 * a.tokens + 2 * 64);
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
