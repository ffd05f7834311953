// `dsserve bench-one-batch`: the latency of one static batch through the model alone (no
// scheduler, no server), as SGLang's bench_one_batch: a prefill of batch_size x input_len random
// tokens (expanded attention), then output_len greedy decode steps of batch_size tokens (absorbed
// attention through the paged cache). Prints one JSON line per input length: prefill latency and
// throughput, median decode-step latency and throughput. Works on any backend (--device).
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <random>

#include "cli/commands.h"
#include "cli/model_options.h"
#include "core/error.h"
#include "runtime/batch_builder.h"
#include "runtime/scheduler.h"

namespace dsserve {

namespace {

struct BenchOneBatchOptions {
  ModelOptions model;
  std::vector<int> batch_sizes{1};
  std::vector<int> input_lens{1024};
  int output_len = 16;
};

SequenceChunk make_chunk(const SequencePages* pages, int64_t prefix, std::vector<int32_t> tokens, int32_t logit) {
  SequenceChunk c;
  c.pages = pages;
  c.prefix_len = prefix;
  c.tokens = std::move(tokens);
  c.logit_offsets = {logit};
  return c;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// One forward, waited for; returns the greedy next token of each sequence.
std::vector<int32_t> step(LoadedModel& m, const std::vector<SequenceChunk>& chunks, AttentionMode mode) {
  ForwardBatch fb = build_forward_batch(chunks, BatchLayout{m.cache.page_size, mode});
  ForwardOutput out = m.model->forward(fb, m.cache);
  Tensor logits = m.backend->to_host_f32(out.logits);  // synchronises the device
  std::vector<int32_t> next;
  const int64_t V = logits.size(1);
  for (int64_t r = 0; r < logits.size(0); ++r) {
    const float* row = logits.ptr<float>() + r * V;
    next.push_back(int32_t(std::max_element(row, row + V) - row));
  }
  return next;
}

nlohmann::json run(LoadedModel& m, const BenchOneBatchOptions& o, int B, int input_len, std::mt19937& rng) {
  const int vocab = m.model->config().vocab_size;
  std::vector<SequencePages> seqs(static_cast<size_t>(B));
  for (auto& s : seqs)
    DS_CHECK(s.reserve(*m.pool, input_len + o.output_len),
             "bench-one-batch: the KV cache is too small for batch {} x {} tokens (raise --max-total-tokens)", B,
             input_len + o.output_len);
  std::uniform_int_distribution<int32_t> tok(0, vocab - 1);
  std::vector<SequenceChunk> prefill;
  for (auto& s : seqs) {
    std::vector<int32_t> ids(static_cast<size_t>(input_len));
    for (auto& t : ids) t = tok(rng);
    prefill.push_back(make_chunk(&s, 0, std::move(ids), input_len - 1));
  }
  auto t0 = std::chrono::steady_clock::now();
  std::vector<int32_t> next = step(m, prefill, AttentionMode::Expanded);
  const double prefill_s = seconds_since(t0);
  std::vector<double> decode_s;
  for (int i = 0; i < o.output_len; ++i) {
    std::vector<SequenceChunk> chunks;
    for (int b = 0; b < B; ++b) chunks.push_back(make_chunk(&seqs[b], input_len + i, {next[b]}, 0));
    t0 = std::chrono::steady_clock::now();
    next = step(m, chunks, AttentionMode::Absorbed);
    decode_s.push_back(seconds_since(t0));
  }
  for (auto& s : seqs) s.release_all(*m.pool);
  std::vector<double> sorted = decode_s;
  std::sort(sorted.begin(), sorted.end());
  const double median = sorted.empty() ? 0.0 : sorted[sorted.size() / 2];
  return {{"batch_size", B},
          {"input_len", input_len},
          {"output_len", o.output_len},
          {"device", m.backend->name()},
          {"prefill_latency_s", prefill_s},
          {"prefill_throughput_tok_s", double(B) * input_len / prefill_s},
          {"median_decode_latency_s", median},
          {"median_decode_throughput_tok_s", median > 0 ? B / median : 0.0}};
}

}  // namespace

void add_bench_one_batch_command(CLI::App& app) {
  auto o = std::make_shared<BenchOneBatchOptions>();
  CLI::App* cmd = app.add_subcommand("bench-one-batch", "Latency of one static batch: prefill, then decode steps");
  o->model.add_to(*cmd);
  cmd->add_option("--batch-size", o->batch_sizes, "Sequences in the batch (one run each)")->capture_default_str();
  cmd->add_option("--input-len", o->input_lens, "Prompt lengths to measure (one run each)");
  cmd->add_option("--output-len", o->output_len, "Decode steps after the prefill")->capture_default_str();
  cmd->callback([o] {
    DS_CHECK(!o->batch_sizes.empty() && *std::min_element(o->batch_sizes.begin(), o->batch_sizes.end()) >= 1 &&
                 o->output_len >= 0,
             "bench-one-batch: every --batch-size must be >= 1, --output-len >= 0");
    const int largest = *std::max_element(o->batch_sizes.begin(), o->batch_sizes.end());
    DS_CHECK(!o->input_lens.empty() && *std::min_element(o->input_lens.begin(), o->input_lens.end()) >= 1,
             "bench-one-batch: every --input-len must be >= 1");
    const int longest = *std::max_element(o->input_lens.begin(), o->input_lens.end());
    ModelOptions mo = o->model;
    const int64_t need = int64_t(largest) * (longest + o->output_len + mo.page_size);
    if (mo.max_total_tokens < need) mo.max_total_tokens = need;
    if (mo.context_length > 0 && mo.context_length < longest + o->output_len)
      fail("bench-one-batch: --context-length {} is shorter than input + output ({})", mo.context_length,
           longest + o->output_len);
    LoadedModel m = load_model(mo);
    std::mt19937 rng(uint32_t(mo.random_seed));
    run(m, *o, 1, std::min(longest, 16), rng);  // warm-up: library handles, algorithm choices, scratch
    for (int b : o->batch_sizes)
      for (int len : o->input_lens) std::cout << run(m, *o, b, len, rng).dump() << std::endl;
  });
}

}  // namespace dsserve
