// Token choice on the GPU (Backend::sample): one block per row of logits applies the penalties,
// finds the top-k / top-p / min-p thresholds by radix selection over order keys, draws the token
// by inverse CDF over integer weights, and gathers the log-probabilities of the raw logits, all by
// the rules of backend/sampling_math.h (the CPU oracle's). No host synchronisation, no allocation:
// the caller uploads the row descriptions and the sparse lists in one packed buffer and provides
// the work rows and the result buffers.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "core/dtype.h"

namespace dsserve::cuda {

// One row's settings (SamplingRow with its lists as offsets into SampleParams::ints / floats).
struct SampleRowDesc {
  float temperature, top_p, min_p;
  int32_t top_k;  // <= 0 or >= vocab: no cut
  float frequency_penalty, presence_penalty, repetition_penalty;
  int32_t top_logprobs;  // 0 to sampling::kMaxTopLogprobs
  uint64_t seed, step;
  int32_t want_logprob;
  int32_t work_row;      // row of SampleParams::work holding this row's adjusted logits; -1: none (no lists)
  // The lists in SampleParams::ints: bias token j at [bias_start + j], its value (float bits) at
  // [bias_start + bias_count + j]; output-count token j at [counts_start + j], its count at
  // [counts_start + counts_count + j]; seen and suppressed tokens at [seen_start + j] and
  // [suppressed_start + j].
  int32_t bias_start, bias_count;
  int32_t counts_start, counts_count;
  int32_t seen_start, seen_count;
  int32_t suppressed_start, suppressed_count;
  // Constrained decoding: the allowed-token bitmask at ints[mask_start, mask_start + ceil(vocab / 32))
  // (bit t % 32 of word t / 32); -1: every token allowed.
  int32_t mask_start;
};

struct SampleResult {
  int32_t token;
  float logprob;       // log_softmax(raw)[token] when asked, else 0
  int32_t top_count;   // pairs written to the row's top_logprobs
  int32_t unused;
};

struct TopLogprob {
  float logprob;
  int32_t id;
};

struct SampleParams {
  const void* logits;          // [rows, vocab], rows strided by logits_stride elements
  DType dtype;                 // F32 or BF16
  int64_t logits_stride;
  int64_t rows, vocab;
  const SampleRowDesc* desc;   // [rows]
  const int32_t* ints;         // the packed lists of every row (offsets in desc)
  float* work;                 // [rows with lists, vocab] F32: adjusted logits
  SampleResult* results;       // [rows]
  TopLogprob* top;             // [rows, top_stride]: best first, ties lower id first
  int top_stride;
};

// One block of 1024 threads per row.
cudaError_t launch_sample(const SampleParams& p, cudaStream_t stream);

// Greedy rows without lists or top log-probabilities, few of them (decode at small batch): each
// row split over sample_greedy_split_chunks(vocab) blocks (best order key, raw log-sum-exp terms),
// then one warp per row merges the chunks in a fixed order. The same token as launch_sample; the
// logprob's float sums in another order (about 1e-7 apart).
struct GreedyPartial {
  uint32_t key;
  int32_t id;
  float m, s;
};
bool sample_greedy_split_applies(int64_t rows, int64_t vocab);
int sample_greedy_split_chunks(int64_t vocab);
cudaError_t launch_sample_greedy_split(const SampleParams& p, GreedyPartial* partial, cudaStream_t stream);

}  // namespace dsserve::cuda
