// A scheduler engine over a small random model on the CPU backend, for tests of the runtime: the
// model (tiny_model_config, optionally overridden), a page pool of total_tokens, its latent cache
// and the engine; plus the requests those tests send.
#pragma once
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "common/tiny_model_config.h"
#include "model/weight_source.h"
#include "parallel/replica_runner.h"
#include "runtime/scheduler.h"

namespace dsserve::test {

struct SchedulerHarness {
  ModelConfig cfg;
  std::unique_ptr<Backend> backend = create_backend(DeviceKind::Cpu);
  std::unique_ptr<DummyWeights> weights;
  std::unique_ptr<ReplicaRunner> model;
  std::unique_ptr<PagePool> pool;
  LatentCache cache;
  std::unique_ptr<Engine> engine;

  SchedulerHarness(int page_size, int64_t total_tokens, SchedulerOptions opt = {}, nlohmann::json overrides = {}) {
    nlohmann::json c = tiny_model_config();
    if (!overrides.is_null()) c.merge_patch(overrides);
    cfg = ModelConfig::parse(c.dump(), "test config");
    weights = std::make_unique<DummyWeights>(cfg, 3);
    model = std::make_unique<ReplicaRunner>(cfg, *backend, *weights, 2048);
    int64_t pages = (total_tokens + page_size - 1) / page_size;
    pool = std::make_unique<PagePool>(pages, page_size);
    cache = model->make_cache(cache_pages_for(*pool), page_size, false, std::nullopt);
    engine = create_engine(*model, cache, *pool, opt);
  }
  ~SchedulerHarness() { engine->shutdown(); }
};

inline GenerationRequest greedy_request(const std::string& rid, std::vector<int32_t> ids, int max_new) {
  GenerationRequest r;
  r.rid = rid;
  r.input_ids = std::move(ids);
  r.sampling.temperature = 0;
  r.sampling.max_new_tokens = max_new;
  r.sampling.ignore_eos = true;
  return r;
}

inline std::vector<int32_t> random_ids(int n, uint32_t seed) {
  std::mt19937 g(seed);
  std::vector<int32_t> v(static_cast<size_t>(n));
  for (auto& x : v) x = int32_t(2 + g() % 500);
  return v;
}

}  // namespace dsserve::test
