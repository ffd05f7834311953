// The scheduler's structured-output hooks on the CPU backend with a random 6-token model and a
// small constraint written here (position p allows a set of tokens; the text may end from a given
// length on; eos = token 1): outputs follow the constraint and end with eos where it allows, in
// batches mixing constrained and free requests, with chunked prefill and prefix-cache hits, with
// min_new_tokens and ignore_eos against a complete grammar, and under speculative decoding (drafts
// checked against the constraint, rejected ones rolled back) with greedy outputs identical to
// plain constrained decoding.
#include <gtest/gtest.h>

#include <random>
#include <set>

#include "backend/backend.h"
#include "common/engine_runs.h"
#include "common/tiny_model_config.h"
#include "model/weight_source.h"
#include "parallel/replica_runner.h"
#include "runtime/scheduler.h"
#include "runtime/token_constraint.h"

namespace dsserve {
namespace {

// Position p allows allowed[min(p, size - 1)]; the text may end once min_len tokens are there and
// must end at max_len.
class PositionConstraint final : public TokenConstraint {
 public:
  PositionConstraint(std::vector<std::set<int32_t>> allowed, int min_len, int max_len)
      : allowed_(std::move(allowed)), min_len_(min_len), max_len_(max_len) {}

  bool fill_next_tokens(std::span<uint32_t> bits) override {
    std::fill(bits.begin(), bits.end(), 0u);
    if (pos_ < max_len_)
      for (int32_t t : at(pos_)) bits[size_t(t) >> 5] |= 1u << (t & 31);
    return true;
  }
  bool can_end() const override { return pos_ >= min_len_; }
  bool is_complete() const override { return pos_ >= max_len_; }
  bool accept(int32_t t) override {
    if (pos_ >= max_len_ || !at(pos_).count(t)) return false;
    ++pos_;
    ++accepts;
    return true;
  }
  void rollback(int n) override {
    pos_ -= n;
    rollbacks += n;
  }
  bool follows(const std::vector<int32_t>& out, int32_t eos) const {
    int p = 0;
    for (const int32_t& t : out) {
      if (t == eos && p >= min_len_) return &t == &out.back();
      if (p >= max_len_ || !at(p).count(t)) return false;
      ++p;
    }
    return true;
  }
  int accepts = 0, rollbacks = 0;

 private:
  const std::set<int32_t>& at(int p) const { return allowed_[std::min<size_t>(size_t(p), allowed_.size() - 1)]; }
  std::vector<std::set<int32_t>> allowed_;
  int min_len_, max_len_, pos_ = 0;
};

struct Harness {
  ModelConfig cfg;
  std::unique_ptr<Backend> backend = create_backend(DeviceKind::Cpu);
  DummyWeights weights;
  ReplicaRunner model;
  PagePool pool;
  LatentCache cache, mtp_cache;
  std::unique_ptr<Engine> engine;

  Harness(const ModelConfig& c, SchedulerOptions opt)
      : cfg(c), weights(cfg, 21), model(cfg, *backend, weights, 2048), pool(4096, 1) {
    cache = model.make_cache(cache_pages_for(pool), 1, false, std::nullopt);
    if (opt.speculative.enabled()) {
      mtp_cache = model.make_cache(cache_pages_for(pool), 1, true, std::nullopt);
      opt.mtp_cache = &mtp_cache;
    }
    engine = create_engine(model, cache, pool, opt);
  }
  ~Harness() { engine->shutdown(); }
};

ModelConfig six_tokens() {
  nlohmann::json c = test::tiny_model_config();
  c["vocab_size"] = 6;
  return ModelConfig::parse(c.dump(), "six tokens");
}

// Requests over prompts with a shared stretch (prefix hits); constrained ones get their own
// constraint (every third request is free).
struct Batch {
  std::vector<GenerationRequest> reqs;
  std::vector<std::shared_ptr<PositionConstraint>> constraints;  // null: free
};

Batch make_batch(int n, float temperature, uint32_t seed, bool all_constrained = false) {
  std::mt19937 g(seed);
  std::vector<int32_t> shared;
  for (int i = 0; i < 30; ++i) shared.push_back(int32_t(g() % 6));
  Batch b;
  for (int i = 0; i < n; ++i) {
    GenerationRequest r;
    r.rid = "r" + std::to_string(i);
    r.input_ids = i % 2 ? shared : std::vector<int32_t>{};
    for (int j = 0, len = 3 + int(g() % 20); j < len; ++j) r.input_ids.push_back(int32_t(g() % 6));
    r.sampling.temperature = temperature;
    r.sampling.seed = 100 + i;
    r.sampling.max_new_tokens = 24;
    std::shared_ptr<PositionConstraint> c;
    if (all_constrained || i % 3 != 2) {
      c = std::make_shared<PositionConstraint>(std::vector<std::set<int32_t>>{{2, 3}, {0, 4, 5}, {2, 3, 4}, {5}, {0, 2, 3, 4}},
                                               3, 10 + i % 5);
      r.constraint = c;
    }
    b.reqs.push_back(std::move(r));
    b.constraints.push_back(std::move(c));
  }
  return b;
}

SchedulerOptions options(int chunk, int spec_steps = 0, int topk = 1, int draft = 0) {
  SchedulerOptions o;
  o.chunked_prefill_size = chunk;
  if (spec_steps > 0) {
    o.speculative.algorithm = "EAGLE";
    o.speculative.num_steps = spec_steps;
    o.speculative.eagle_topk = topk;
    o.speculative.num_draft_tokens = draft;
  }
  return o;
}

TEST(ConstrainedDecoding, OutputsFollowTheConstraintAndEndWhereItAllows) {
  const ModelConfig cfg = six_tokens();
  for (float temperature : {0.0f, 1.0f}) {
    Batch b = make_batch(12, temperature, 5);
    Harness h(cfg, options(8192));
    auto out = test::run_to_completion(*h.engine, b.reqs);
    for (size_t i = 0; i < out.size(); ++i) {
      if (!b.constraints[i]) continue;
      EXPECT_TRUE(b.constraints[i]->follows(out[i].ids, cfg.eos_token_id)) << "request " << i;
      EXPECT_EQ(out[i].finish.type, "stop") << "request " << i << ": the constraint ends before max_new_tokens";
      EXPECT_EQ(out[i].ids.back(), cfg.eos_token_id);
    }
  }
}

TEST(ConstrainedDecoding, ChunkedPrefillAndPrefixHitsDoNotChangeOutputs) {
  const ModelConfig cfg = six_tokens();
  Batch a = make_batch(10, 0.0f, 9), b = make_batch(10, 0.0f, 9);
  Harness whole(cfg, options(8192)), chunked(cfg, options(7));
  auto x = test::tokens_to_completion(*whole.engine, a.reqs);
  auto y = test::tokens_to_completion(*chunked.engine, b.reqs);
  EXPECT_EQ(x, y);
  Batch c = make_batch(10, 0.0f, 9);
  auto z = test::tokens_to_completion(*chunked.engine, c.reqs);  // again: prompts now in the prefix cache
  EXPECT_EQ(x, z);
  EXPECT_GT(chunked.engine->stats().cached_tokens_total, 0);
}

TEST(ConstrainedDecoding, MinNewTokensAndIgnoreEosYieldToACompleteGrammar) {
  const ModelConfig cfg = six_tokens();
  Batch b = make_batch(4, 1.0f, 3, true);
  for (size_t i = 0; i < b.reqs.size(); ++i) {
    b.reqs[i].sampling.min_new_tokens = 20;  // beyond the constraint's longest text
    b.reqs[i].sampling.ignore_eos = i % 2 == 1;
  }
  Harness h(cfg, options(8192));
  auto out = test::run_to_completion(*h.engine, b.reqs);
  for (size_t i = 0; i < out.size(); ++i) {
    EXPECT_EQ(out[i].finish.type, "stop") << "request " << i;
    EXPECT_EQ(int(out[i].ids.size()), 10 + int(i) % 5 + 1) << "request " << i << ": the longest text, then eos";
    EXPECT_TRUE(b.constraints[i]->follows(out[i].ids, cfg.eos_token_id));
  }
}

TEST(ConstrainedDecoding, SpeculativeDraftsAreCheckedAndRolledBack) {
  const ModelConfig cfg = six_tokens();
  Batch plain_batch = make_batch(9, 0.0f, 13);
  Harness plain(cfg, options(16));
  auto want = test::tokens_to_completion(*plain.engine, plain_batch.reqs);
  for (auto [steps, topk, draft] : std::vector<std::array<int, 3>>{{1, 1, 2}, {3, 1, 4}, {3, 2, 6}}) {
    Batch b = make_batch(9, 0.0f, 13);
    Harness h(cfg, options(16, steps, topk, draft));
    auto got = test::tokens_to_completion(*h.engine, b.reqs);
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(got[i], want[i]) << "request " << i << " steps " << steps << " topk " << topk;
      if (b.constraints[i]) {
        EXPECT_GT(b.constraints[i]->rollbacks, 0) << "request " << i << ": drafts were checked";
      }
    }
    EXPECT_GT(h.engine->stats().spec_verify_total, 0);
  }
}

}  // namespace
}  // namespace dsserve
