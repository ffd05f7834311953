// Model test helpers (see model_test_util.h).
#include "model/model_test_util.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "backend/weight_dequant.h"
#include "common/test_paths.h"
#include "core/error.h"
#include "runtime/batch_builder.h"

namespace dsserve::test {

namespace {
TestModel finish(TestModel m, int page_size, int64_t tokens, std::optional<DType> cache_dtype = std::nullopt) {
  int64_t pages = (tokens + page_size - 1) / page_size;
  m.pool = std::make_unique<PagePool>(pages, page_size);
  m.cache = m.model->make_cache(pages, page_size, false, cache_dtype);
  m.mtp_pool = std::make_unique<PagePool>(pages, page_size);
  if (m.model->has_mtp()) m.mtp_cache = m.model->make_cache(pages, page_size, /*mtp=*/true, cache_dtype);
  return m;
}

std::vector<double> log_softmax(const std::vector<float>& x) {
  double mx = *std::max_element(x.begin(), x.end()), s = 0;
  for (float v : x) s += std::exp(v - mx);
  double lse = mx + std::log(s);
  std::vector<double> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) out[i] = x[i] - lse;
  return out;
}
}  // namespace

TestModel load_checkpoint_model(const std::string& dir, int page_size, int64_t tokens,
                                std::optional<DType> cache_dtype) {
  TestModel m;
  m.backend = create_backend(DeviceKind::Cpu);
  ModelConfig cfg = ModelConfig::load(dir, "", fixture_quantization(dir));
  m.source = std::make_unique<CheckpointWeights>(dir, cfg);
  m.model = std::make_unique<ReplicaRunner>(cfg, *m.backend, *m.source, 4096);
  return finish(std::move(m), page_size, tokens, cache_dtype);
}

TestModel dummy_model(const ModelConfig& cfg, uint64_t seed, int page_size, int64_t tokens) {
  TestModel m;
  m.backend = create_backend(DeviceKind::Cpu);
  m.source = std::make_unique<DummyWeights>(cfg, seed);
  m.model = std::make_unique<ReplicaRunner>(cfg, *m.backend, *m.source, 4096);
  return finish(std::move(m), page_size, tokens);
}

std::vector<std::vector<float>> rows_of(const Tensor& t) {
  Tensor h = host_to_f32(t);
  std::vector<std::vector<float>> rows(static_cast<size_t>(h.size(0)));
  for (int64_t r = 0; r < h.size(0); ++r)
    rows[r].assign(h.ptr<float>() + r * h.size(1), h.ptr<float>() + (r + 1) * h.size(1));
  return rows;
}

RunResult run_sequence(TestModel& m, const std::vector<int32_t>& ids, const RunOptions& opt) {
  const int64_t T = int64_t(ids.size());
  const int ps = m.pool->page_size();
  SequencePages seq;
  if (!seq.reserve(*m.pool, T)) throw Error("test pool too small");
  RunResult r;
  const int64_t prefill_end = opt.decode_from >= 0 ? std::min<int64_t>(opt.decode_from, T) : T;
  auto step = [&](int64_t s, int64_t e, AttentionMode mode) {
    SequenceChunk c{&seq, s, std::vector<int32_t>(ids.begin() + s, ids.begin() + e), {}};
    c.logit_offsets.resize(size_t(e - s));
    std::iota(c.logit_offsets.begin(), c.logit_offsets.end(), 0);
    ForwardOutput out = m.model->forward(build_forward_batch({c}, ps, mode), m.cache);
    for (auto& row : rows_of(out.logits)) r.logits.push_back(std::move(row));
    for (auto& row : rows_of(out.hidden)) r.hidden.push_back(std::move(row));
  };
  const int64_t chunk = opt.chunk > 0 ? opt.chunk : std::max<int64_t>(prefill_end, 1);
  for (int64_t s = 0; s < prefill_end; s += chunk) step(s, std::min(prefill_end, s + chunk), opt.prefill);
  for (int64_t s = prefill_end; s < T; ++s) step(s, s + 1, opt.decode);
  seq.release_all(*m.pool);
  return r;
}

std::vector<std::vector<float>> run_mtp(TestModel& m, const std::vector<int32_t>& ids,
                                        const std::vector<std::vector<float>>& hidden) {
  const int64_t T = int64_t(ids.size()) - 1;
  if (T <= 0) return {};
  const int ps = m.mtp_pool->page_size();
  SequencePages seq;
  if (!seq.reserve(*m.mtp_pool, T)) throw Error("test pool too small");
  SequenceChunk c{&seq, 0, std::vector<int32_t>(ids.begin() + 1, ids.end()), {}};
  c.logit_offsets.resize(size_t(T));
  std::iota(c.logit_offsets.begin(), c.logit_offsets.end(), 0);
  const int64_t H = int64_t(hidden[0].size());
  Tensor prev = Tensor::zeros_host(DType::F32, {T, H});
  for (int64_t t = 0; t < T; ++t) std::copy(hidden[t].begin(), hidden[t].end(), prev.ptr<float>() + t * H);
  ForwardOutput out = m.forward_model().forward_mtp(build_forward_batch({c}, ps, AttentionMode::Expanded),
                                                    m.backend->to_device(prev), m.mtp_cache);
  seq.release_all(*m.mtp_pool);
  return rows_of(out.logits);
}

std::vector<int32_t> greedy(TestModel& m, const std::vector<int32_t>& ids, int n) {
  const int ps = m.pool->page_size();
  SequencePages seq;
  if (!seq.reserve(*m.pool, int64_t(ids.size()) + n)) throw Error("test pool too small");
  std::vector<int32_t> out;
  SequenceChunk c{&seq, 0, ids, {int32_t(ids.size()) - 1}};
  auto logits = rows_of(m.model->forward(build_forward_batch({c}, ps, AttentionMode::Expanded), m.cache).logits);
  for (int i = 0; i < n; ++i) {
    const auto& row = logits[0];
    int32_t tok = int32_t(std::max_element(row.begin(), row.end()) - row.begin());
    out.push_back(tok);
    SequenceChunk d{&seq, int64_t(ids.size()) + i, {tok}, {0}};
    logits = rows_of(m.model->forward(build_forward_batch({d}, ps, AttentionMode::Absorbed), m.cache).logits);
  }
  seq.release_all(*m.pool);
  return out;
}

std::vector<std::vector<float>> logits_with(const ForwardFn& f, Backend& be, PagePool& pool,
                                            const std::vector<int32_t>& ids, int decode_from) {
  const int64_t T = int64_t(ids.size());
  SequencePages seq;
  if (!seq.reserve(pool, T)) throw Error("test pool too small");
  std::vector<std::vector<float>> out;
  auto step = [&](int64_t s, int64_t e, AttentionMode mode) {
    SequenceChunk c{&seq, s, std::vector<int32_t>(ids.begin() + s, ids.begin() + e), {}};
    c.logit_offsets.resize(size_t(e - s));
    std::iota(c.logit_offsets.begin(), c.logit_offsets.end(), 0);
    for (auto& row : rows_of(be.to_host_f32(f(build_forward_batch({c}, pool.page_size(), mode)).logits)))
      out.push_back(std::move(row));
  };
  const int64_t prefill_end = decode_from >= 0 ? std::min<int64_t>(decode_from, T) : T;
  if (prefill_end > 0) step(0, prefill_end, AttentionMode::Expanded);
  for (int64_t s = prefill_end; s < T; ++s) step(s, s + 1, AttentionMode::Absorbed);
  seq.release_all(pool);
  return out;
}

std::vector<int32_t> greedy_with(const ForwardFn& f, Backend& be, PagePool& pool, const std::vector<int32_t>& ids,
                                 int n, std::vector<float>* margins) {
  SequencePages seq;
  if (!seq.reserve(pool, int64_t(ids.size()) + n)) throw Error("test pool too small");
  std::vector<int32_t> out;
  SequenceChunk c{&seq, 0, ids, {int32_t(ids.size()) - 1}};
  auto logits = rows_of(be.to_host_f32(f(build_forward_batch({c}, pool.page_size(), AttentionMode::Expanded)).logits));
  for (int i = 0; i < n; ++i) {
    const auto& row = logits[0];
    int32_t tok = int32_t(std::max_element(row.begin(), row.end()) - row.begin());
    out.push_back(tok);
    if (margins) {
      float second = -INFINITY;
      for (size_t j = 0; j < row.size(); ++j)
        if (int32_t(j) != tok) second = std::max(second, row[j]);
      margins->push_back(row[size_t(tok)] - second);
    }
    SequenceChunk d{&seq, int64_t(ids.size()) + i, {tok}, {0}};
    logits = rows_of(be.to_host_f32(f(build_forward_batch({d}, pool.page_size(), AttentionMode::Absorbed)).logits));
  }
  seq.release_all(pool);
  return out;
}

double max_topk_logprob_diff(const std::vector<float>& a, const std::vector<float>& b, int k) {
  auto la = log_softmax(a), lb = log_softmax(b);
  std::vector<size_t> idx(b.size());
  std::iota(idx.begin(), idx.end(), 0);
  k = std::min<int>(k, int(b.size()));
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](size_t x, size_t y) { return b[x] > b[y]; });
  double worst = 0;
  for (int i = 0; i < k; ++i) worst = std::max(worst, std::fabs(la[idx[i]] - lb[idx[i]]));
  return worst;
}

double max_abs_diff(const std::vector<std::vector<float>>& a, const std::vector<std::vector<float>>& b) {
  double worst = 0;
  for (size_t r = 0; r < std::min(a.size(), b.size()); ++r)
    for (size_t c = 0; c < std::min(a[r].size(), b[r].size()); ++c)
      worst = std::max(worst, double(std::fabs(a[r][c] - b[r][c])));
  return a.size() == b.size() ? worst : INFINITY;
}

}  // namespace dsserve::test
