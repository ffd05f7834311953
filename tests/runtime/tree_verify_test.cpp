// Draft-tree verification pieces (runtime/speculative/tree_verify.h): the verify chunk's positions
// and tree mask, and the acceptance walk over the target's choices.
#include <gtest/gtest.h>

#include "runtime/speculative/tree_verify.h"

namespace dsserve {
namespace {

// root -> a (node 0) -> c (node 2); root -> b (node 1).
RequestState tree_request() {
  RequestState r;
  r.g.input_ids = {7, 8, 9};
  r.output_ids = {4};
  r.kv_len = 10;
  r.draft.tokens = {11, 12, 13};
  r.draft.parent = {-1, -1, 0};
  r.draft.depth = {1, 1, 2};
  return r;
}

std::vector<SampledToken> picks(std::vector<int32_t> tokens) {
  std::vector<SampledToken> out;
  for (int32_t t : tokens) out.push_back(SampledToken{t, 0.0f, {}});
  return out;
}

TEST(TreeVerify, ChunkHoldsTheTreeAtItsDepthsWithAncestorMask) {
  const RequestState r = tree_request();
  const SequenceChunk c = verify_chunk(r);
  EXPECT_EQ(c.prefix_len, 10);
  EXPECT_EQ(c.tokens, (std::vector<int32_t>{4, 11, 12, 13}));
  EXPECT_EQ(c.positions, (std::vector<int32_t>{10, 11, 11, 12}));
  EXPECT_EQ(c.logit_offsets, (std::vector<int32_t>{0, 1, 2, 3}));
  const std::vector<uint8_t> mask{1, 0, 0, 0,   // root
                                  1, 1, 0, 0,   // a sees the root
                                  1, 0, 1, 0,   // b sees the root, not its sibling
                                  1, 1, 0, 1};  // c sees the root and its parent a
  EXPECT_EQ(c.tree_mask, mask);
}

TEST(TreeVerify, WalkAcceptsWhileTheChoiceMatchesAChild) {
  const RequestState r = tree_request();
  // The root chooses a (node 0), a's row chooses c (node 2), c's row gives the bonus.
  EXPECT_EQ(acceptance_walk(r.draft, picks({11, 13, 99, 5})), (std::vector<int>{0, 1, 3}));
  // The root chooses b (node 1), whose row's choice has no child: bonus.
  EXPECT_EQ(acceptance_walk(r.draft, picks({12, 13, 6, 5})), (std::vector<int>{0, 2}));
  // The root chooses a token no node holds: only the root's choice.
  EXPECT_EQ(acceptance_walk(r.draft, picks({3, 13, 12, 5})), (std::vector<int>{0}));
  // A node's token matching below another parent is not accepted: a's row choosing b stops there.
  EXPECT_EQ(acceptance_walk(r.draft, picks({11, 12, 6, 5})), (std::vector<int>{0, 1}));
}

}  // namespace
}  // namespace dsserve
