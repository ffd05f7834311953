// Helpers for model tests: a CPU model with its page pool and cache, prompts run through prefill
// (whole or chunked) and token-by-token decode, and the comparisons the golden tests use.
#pragma once
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "model/deepseek_v3.h"
#include "model/weight_source.h"
#include "parallel/replica_runner.h"
#include "runtime/page_pool.h"

namespace dsserve::test {

struct TestModel {
  std::unique_ptr<Backend> backend;
  std::unique_ptr<WeightSource> source;
  std::unique_ptr<ReplicaRunner> model;  // one CPU device
  std::unique_ptr<PagePool> pool;
  LatentCache cache;
  std::unique_ptr<PagePool> mtp_pool;
  LatentCache mtp_cache;
  // The forward itself (no runner): e.g. an MTP step on previous hidden states given as a tensor.
  DeepseekV3Model& forward_model() { return model->rank(0).model(); }
};

// A CPU model from a checkpoint directory, or from dummy weights when cfg is given; cache_dtype:
// the latent cache's element type (unset: float32; F8_E4M3 / F8_E5M2: --kv-cache-dtype fp8_*).
TestModel load_checkpoint_model(const std::string& dir, int page_size = 16, int64_t tokens = 1024,
                                std::optional<DType> cache_dtype = std::nullopt);
TestModel dummy_model(const ModelConfig& cfg, uint64_t seed, int page_size = 16, int64_t tokens = 1024);

struct RunOptions {
  int chunk = 0;                 // prefill chunk (0: whole prompt in one forward)
  int decode_from = -1;          // positions >= decode_from go one token per forward (-1: none)
  AttentionMode prefill = AttentionMode::Expanded;
  AttentionMode decode = AttentionMode::Absorbed;
};

struct RunResult {
  std::vector<std::vector<float>> logits;  // [T][vocab]
  std::vector<std::vector<float>> hidden;  // [T][hidden]
};

// Runs ids through the model as a fresh sequence and returns logits and hidden states at every position.
RunResult run_sequence(TestModel& m, const std::vector<int32_t>& ids, const RunOptions& opt = {});
// MTP logits: row t combines hidden[t] with the embedding of ids[t + 1].
std::vector<std::vector<float>> run_mtp(TestModel& m, const std::vector<int32_t>& ids,
                                        const std::vector<std::vector<float>>& hidden);
// Greedy continuation through the cache (prefill then absorbed decode).
std::vector<int32_t> greedy(TestModel& m, const std::vector<int32_t>& ids, int n);

// A forward of some model on its own cache (one DeepseekV3Model, or a tensor-parallel group), for
// the helpers below, which run batches of one sequence in `pool`'s pages and read the logits
// through `be` (the backend the logits live on).
using ForwardFn = std::function<ForwardOutput(const ForwardBatch&)>;
// Logits at every position: positions < decode_from in one expanded prefill, the rest one absorbed
// decode step each (decode_from < 0: all in the prefill).
std::vector<std::vector<float>> logits_with(const ForwardFn& f, Backend& be, PagePool& pool,
                                            const std::vector<int32_t>& ids, int decode_from = -1);
// Greedy continuation of n tokens (prefill, then absorbed decode); margins (when given) receives
// each step's top-1 minus top-2 logit.
std::vector<int32_t> greedy_with(const ForwardFn& f, Backend& be, PagePool& pool, const std::vector<int32_t>& ids,
                                 int n, std::vector<float>* margins = nullptr);

// Largest |log_softmax(a)[i] - log_softmax(b)[i]| over the top-k tokens i of b.
double max_topk_logprob_diff(const std::vector<float>& a, const std::vector<float>& b, int k = 5);
double max_abs_diff(const std::vector<std::vector<float>>& a, const std::vector<std::vector<float>>& b);
// Rows of a host F32 tensor [R, C] (any float dtype is converted).
std::vector<std::vector<float>> rows_of(const Tensor& t);

}  // namespace dsserve::test
