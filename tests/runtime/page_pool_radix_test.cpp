// Page pool reference counting and the radix prefix cache: matching in whole pages, node splits,
// sharing, LRU eviction of pages only the tree holds, flush.
#include <gtest/gtest.h>

#include "core/error.h"
#include "runtime/page_pool.h"
#include "runtime/radix_cache.h"

namespace dsserve {
namespace {

TEST(PagePool, AllocatesAllOrNothingAndCountsReferences) {
  PagePool pool(4, 2);
  std::vector<int32_t> a;
  ASSERT_TRUE(pool.allocate(3, a));
  EXPECT_EQ(pool.num_free(), 1);
  std::vector<int32_t> b;
  EXPECT_FALSE(pool.allocate(2, b));
  EXPECT_TRUE(b.empty());
  EXPECT_EQ(pool.num_free(), 1);
  pool.retain(a[0]);
  pool.release(a[0]);
  EXPECT_EQ(pool.num_free(), 1) << "a retained page stays allocated";
  pool.release(a[0]);
  EXPECT_EQ(pool.num_free(), 2);
  EXPECT_THROW(pool.release(a[0]), Error) << "double release is an error";
}

TEST(SequencePages, ReservesWholePagesAndMapsSlots) {
  PagePool pool(8, 4);
  SequencePages s;
  ASSERT_TRUE(s.reserve(pool, 5));
  EXPECT_EQ(s.pages.size(), 2u);
  EXPECT_EQ(s.slot(5, 4), s.pages[1] * 4 + 1);
  ASSERT_TRUE(s.reserve(pool, 8));
  EXPECT_EQ(s.pages.size(), 2u);
  EXPECT_FALSE(s.reserve(pool, 100));
  EXPECT_EQ(s.pages.size(), 2u) << "a failed reserve changes nothing";
  s.release_all(pool);
  EXPECT_EQ(pool.num_free(), 8);
}

std::vector<int32_t> seq(int n, int start = 0) {
  std::vector<int32_t> v;
  for (int i = 0; i < n; ++i) v.push_back(start + i);
  return v;
}

TEST(RadixCache, MatchesWholePagesOfTheLongestPrefix) {
  PagePool pool(16, 2);
  RadixCache radix(pool);
  SequencePages s;
  ASSERT_TRUE(s.reserve(pool, 7));
  auto tokens = seq(7);
  radix.insert(tokens, s.pages);
  EXPECT_EQ(radix.cached_pages(), 3) << "only whole pages are cached";
  s.release_all(pool);
  EXPECT_EQ(pool.num_free(), 16 - 3) << "the tree keeps its pages";

  std::vector<int32_t> pages;
  auto query = seq(9);
  EXPECT_EQ(radix.match(query, 100, pages), 6);
  EXPECT_EQ(pages.size(), 3u);
  pool.release(pages);
  pages.clear();
  EXPECT_EQ(radix.match(query, 5, pages), 4) << "limited to max_tokens, rounded down to pages";
  pool.release(pages);
  pages.clear();
  auto other = seq(6);
  other[3] = 99;  // differs inside the second page
  EXPECT_EQ(radix.match(other, 100, pages), 2);
  pool.release(pages);
}

TEST(RadixCache, SplitsSharesAndEvictsLeastRecentlyUsed) {
  PagePool pool(16, 2);
  RadixCache radix(pool);
  auto insert_seq = [&](std::vector<int32_t> tokens) {
    SequencePages s;
    std::vector<int32_t> shared;
    int64_t m = radix.match(tokens, int64_t(tokens.size()), shared);
    s.pages = shared;
    s.length = m;
    EXPECT_TRUE(s.reserve(pool, int64_t(tokens.size())));
    radix.insert(tokens, s.pages);
    s.release_all(pool);
  };
  auto a = seq(8);             // pages [0 1][2 3][4 5][6 7]
  auto b = seq(4);             // shares the first two pages of a
  b.push_back(50), b.push_back(51), b.push_back(52), b.push_back(53);
  insert_seq(a);
  insert_seq(b);
  EXPECT_EQ(radix.cached_pages(), 6) << "2 shared + 2 + 2";
  EXPECT_EQ(pool.num_free(), 10);
  // Touch b so that a's tail is the least recently used.
  std::vector<int32_t> pages;
  radix.match(b, 8, pages);
  pool.release(pages);
  EXPECT_EQ(radix.evict(1), 2) << "a whole leaf (a's tail, 2 pages) goes";
  pages.clear();
  EXPECT_EQ(radix.match(a, 8, pages), 4) << "a's shared prefix survives";
  // A page a request still holds is not freed by eviction.
  EXPECT_EQ(radix.evict(100), 2) << "b's tail goes; the shared pages are held by `pages`";
  pool.release(pages);
  EXPECT_EQ(radix.evict(100), 2);
  EXPECT_EQ(pool.num_free(), 16);
}

TEST(RadixCache, ClearReleasesEverything) {
  PagePool pool(8, 1);
  {
    RadixCache radix(pool);
    SequencePages s;
    ASSERT_TRUE(s.reserve(pool, 5));
    radix.insert(seq(5), s.pages);
    s.release_all(pool);
    EXPECT_EQ(pool.num_free(), 3);
    radix.clear();
    EXPECT_EQ(pool.num_free(), 8);
  }
}

}  // namespace
}  // namespace dsserve
