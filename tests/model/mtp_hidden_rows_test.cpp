// The MTP forward's previous hidden states named as rows of an earlier output (HiddenRows): gathered
// on the device, they give exactly what the same rows passed as a tensor give, from the last target
// forward and from the last MTP forward; rows out of range and a missing source are refused.
#include <gtest/gtest.h>

#include <numeric>

#include "backend/weight_dequant.h"
#include "common/tiny_model_config.h"
#include "core/error.h"
#include "model/model_test_util.h"
#include "runtime/batch_builder.h"

namespace dsserve::test {
namespace {

// Rows `which` of t, as a new host tensor.
Tensor host_rows_of(const Tensor& t, const std::vector<int32_t>& which) {
  Tensor h = host_to_f32(t);
  const int64_t C = h.size(1);
  Tensor out = Tensor::zeros_host(DType::F32, {int64_t(which.size()), C});
  for (size_t i = 0; i < which.size(); ++i)
    std::copy(h.ptr<float>() + which[i] * C, h.ptr<float>() + (which[i] + 1) * C, out.ptr<float>() + int64_t(i) * C);
  return out;
}

TEST(MtpHiddenRows, GatheredRowsEqualTheSameRowsPassedAsATensor) {
  const ModelConfig cfg = ModelConfig::parse(tiny_model_config().dump(), "tiny");
  TestModel m = dummy_model(cfg, 3, 16, 256);
  ASSERT_TRUE(m.model->has_mtp());
  const int ps = m.pool->page_size();

  SequencePages seq, mtp_seq;
  ASSERT_TRUE(seq.reserve(*m.pool, 9) && mtp_seq.reserve(*m.mtp_pool, 4));
  const std::vector<int32_t> ids{5, 9, 1, 7, 3, 8, 2, 6, 4};
  SequenceChunk c{&seq, 0, ids, {8}};
  EXPECT_THROW(m.model->forward_mtp(build_forward_batch({SequenceChunk{&mtp_seq, 0, {1}, {0}}}, ps,
                                                        AttentionMode::Expanded),
                                    HiddenRows{HiddenRows::Target, {0}}, m.mtp_cache),
               Error)
      << "no target forward has run yet";
  ForwardOutput target = m.model->forward(build_forward_batch({c}, ps, AttentionMode::Expanded), m.cache);
  const std::vector<int32_t> rows{5, 2, 2, 7};  // out of order, one repeated
  const Tensor want_prev = host_rows_of(target.hidden, rows);

  SequenceChunk d{&mtp_seq, 0, {3, 1, 4, 1}, {0, 1, 2, 3}};
  const ForwardBatch db = build_forward_batch({d}, ps, AttentionMode::Expanded);
  ForwardOutput gathered = m.model->forward_mtp(db, HiddenRows{HiddenRows::Target, rows}, m.mtp_cache);
  const auto gathered_logits = rows_of(gathered.logits);
  const Tensor draft_prev = host_rows_of(gathered.hidden, {3, 0});
  ForwardOutput given = m.forward_model().forward_mtp(db, m.backend->to_device(want_prev), m.mtp_cache);
  EXPECT_EQ(max_abs_diff(gathered_logits, rows_of(given.logits)), 0.0) << "rows of the target forward";

  // From the last MTP forward's output (`given`, equal to `gathered`): rows 3 and 0.
  SequenceChunk e{&mtp_seq, 0, {2, 7}, {0, 1}};
  const ForwardBatch eb = build_forward_batch({e}, ps, AttentionMode::Expanded);
  const auto from_draft = rows_of(m.model->forward_mtp(eb, HiddenRows{HiddenRows::Draft, {3, 0}}, m.mtp_cache).logits);
  const auto from_tensor = rows_of(m.forward_model().forward_mtp(eb, m.backend->to_device(draft_prev), m.mtp_cache).logits);
  EXPECT_EQ(max_abs_diff(from_draft, from_tensor), 0.0) << "rows of the last MTP forward";

  EXPECT_THROW(m.model->forward_mtp(eb, HiddenRows{HiddenRows::Target, {0, 9}}, m.mtp_cache), Error)
      << "row 9 of a 9-row output";
  EXPECT_THROW(m.model->forward_mtp(eb, HiddenRows{HiddenRows::Target, {0}}, m.mtp_cache), Error)
      << "one row for two tokens";
  seq.release_all(*m.pool);
  mtp_seq.release_all(*m.mtp_pool);
}

}  // namespace
}  // namespace dsserve::test
