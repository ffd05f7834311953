// Helpers for the GPU tests: the CPU oracle and the CUDA backend side by side, random inputs
// rounded to BF16 (so both backends see identical values), relative errors, attention batches
// built for both backends, and the model runs and robust logit statistics of the golden tests.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "model/model_test_util.h"

struct CUstream_st;  // cudaStream_t

namespace dsserve::test {

// True when a CUDA device is visible (tests skip themselves otherwise).
bool gpu_available();
// The CPU oracle and the CUDA backend, created once per process.
Backend& cpu();
Backend& gpu();
// test_gpu --sm80-kernels (gpu_test_main.cpp): every CUDA backend the tests make runs the Ampere
// kernel set (Backend::force_sm80_kernels), so the whole suite checks what an A100 runs.
bool sm80_forced();
void set_sm80_forced(bool on);
// A new CUDA backend as the tests make them (the Ampere set with --sm80-kernels), and the same
// applied to backends made elsewhere (tensor- and data-parallel groups).
std::unique_ptr<Backend> make_gpu_backend();
void configure_gpu_backend(Backend& b);
std::vector<std::unique_ptr<Backend>> configure_gpu_backends(std::vector<std::unique_ptr<Backend>> group);

#define DS_REQUIRE_GPU()                                              \
  do {                                                                \
    if (!::dsserve::test::gpu_available()) GTEST_SKIP() << "no CUDA device visible"; \
  } while (0)

using Rng = std::mt19937_64;

// Host F32 tensors of N(0, scale^2) values rounded to BF16.
Tensor randn(Shape s, Rng& rng, float scale = 1.0f);
// Host F32 of uniform values in [lo, hi) rounded to BF16.
Tensor uniform(Shape s, Rng& rng, float lo, float hi);
// A checkpoint-style FP8 weight part: e4m3 values with one F32 scale per 128x128 block.
WeightPart random_fp8_part(int64_t out, int64_t in, Rng& rng);
// A BF16 weight part (host), values N(0, 1/in).
WeightPart random_bf16_part(int64_t out, int64_t in, Rng& rng);
// Checkpoint-style quantized parts (host): AWQ (random 4-bit values and zeros, F16 scales of about
// 1 / (6.5 sqrt(in)) per group), and INT8 (values ~ N(0, 32^2) clamped to +-127, F32 scales of about
// 1 / (32 sqrt(in)) per 128 x 128 block or per row). All dequantize to weights of about N(0, 1/in).
WeightPart random_awq_part(int64_t out, int64_t in, int64_t group, Rng& rng);
WeightPart random_int8_part(int64_t out, int64_t in, bool channel, Rng& rng);

// Host F32 -> device tensor of the backend's activation dtype (BF16 on CUDA, F32 on CPU).
Tensor to_backend(Backend& b, const Tensor& host_f32);
// ||a - b|| / ||b|| over all elements (host tensors of equal numel); infinity if any is not finite.
double rel_err(const Tensor& a, const Tensor& b);
// Host F32 copies of the results of both backends.
double rel_err(Backend& ga, const Tensor& a, Backend& gb, const Tensor& b);

// Attention batch of sequences (prefix_len, new_tokens) with randomly placed pages, built for one
// backend (device tensors uploaded through it) from a fixed description.
struct BatchSpec {
  std::vector<std::pair<int, int>> seqs;  // (cached prefix, new tokens)
  int page_size = 16;
  int64_t num_pages = 0;                  // pages in the cache
  std::vector<int32_t> page_table;        // [B, max_pages]
  int max_pages = 0;
  int key_shift = 0;                      // as the MTP cache's batches
  std::vector<uint8_t> tree_mask;         // per sequence [qlen, mask_cols] row-major; empty: causal
  std::vector<int32_t> mask_cols;         // per sequence: the mask covers its last mask_cols keys
};
BatchSpec make_batch_spec(const std::vector<std::pair<int, int>>& seqs, int page_size, Rng& rng,
                          int key_shift = 0, bool tree_mask = false);
AttentionBatch make_batch(Backend& b, const BatchSpec& spec);

// The golden tests' robust statistics over each position's top-5 tokens (of the tested logits).
struct LogprobStats {
  std::vector<double> diffs;  // |dlogprob| over the top-5 of every position
  int agree = 0, confident = 0;  // top-1 agreement where the reference top-1 margin > 0.5
  void add(const std::vector<std::vector<float>>& got, const std::vector<std::vector<float>>& ref);
  double quantile(double q) const;
  double agreement() const { return confident ? double(agree) / confident : 1.0; }
  std::string str() const;
};

// A model on a given backend (CPU or CUDA) from a checkpoint directory; cache_dtype: the latent
// caches' element type (unset: the backend's activation type; F8_E4M3 / F8_E5M2: an FP8 cache).
// The config is read with the --quantization the fixture needs (common/test_paths.h).
TestModel load_model_on(DeviceKind kind, const std::string& dir, int page_size = 16, int64_t tokens = 2048,
                        std::optional<DType> cache_dtype = std::nullopt);
// As run_sequence / run_mtp / greedy of model_test_util, through Backend::to_host_f32 (any backend).
RunResult run_on(TestModel& m, const std::vector<int32_t>& ids, const RunOptions& opt = {});
std::vector<std::vector<float>> run_mtp_on(TestModel& m, const std::vector<int32_t>& ids,
                                           const std::vector<std::vector<float>>& hidden);
std::vector<int32_t> greedy_on(TestModel& m, const std::vector<int32_t>& ids, int n);

// Median milliseconds of fn over `iters` runs after `warmups`, timed with events on the stream
// (the benchmarks' timer).
double median_ms(CUstream_st* stream, const std::function<void()>& fn, int warmups, int iters);

}  // namespace dsserve::test
