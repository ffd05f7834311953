// `dsserve bench-speculative`: sweeps batch size x draft steps x topk x draft tokens (skipping
// invalid combinations, with the non-speculative baseline at steps 0) over one loaded model, runs
// the same prompt set at each point with the batch size as concurrency, and prints one JSON line per
// point: {batch_size, steps, topk, num_draft_tokens, acc_length, step_time, speed}. Prompts are
// random token ids, or with --prompts-file real text (JSON lines: a string, tokenized with the
// model's tokenizer, or an array of token ids), used in turn up to --num-prompts.
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <chrono>
#include <condition_variable>
#include <fstream>
#include <iostream>
#include <limits>
#include <mutex>
#include <random>
#include <set>

#include "cli/commands.h"
#include "cli/model_options.h"
#include "core/error.h"
#include "runtime/scheduler.h"
#include "text/tokenizer.h"

namespace dsserve {

namespace {
struct BenchOptions {
  ModelOptions model;
  std::vector<int> batch_sizes{1, 8};
  std::vector<int> steps{0, 1, 3};
  std::vector<int> topks{1};
  std::vector<int> draft_tokens{0};  // 0: steps * topk + 1 capped by the chain rule
  int input_len = 128, output_len = 64, num_prompts = 16;
  std::string output_file;
  std::string prompts_file;
};

struct Point {
  int batch, steps, topk, draft;
};

nlohmann::json run_point(LoadedModel& m, const BenchOptions& o, const Point& p,
                         const std::vector<std::vector<int32_t>>& prompts) {
  SchedulerOptions so;
  so.max_running_requests = p.batch;
  so.random_seed = o.model.random_seed;
  so.disable_radix_cache = true;  // every point starts from the same empty cache
  if (p.steps > 0) {
    so.speculative.algorithm = "EAGLE";
    so.speculative.num_steps = p.steps;
    so.speculative.eagle_topk = p.topk;
    so.speculative.num_draft_tokens = p.draft;
    so.mtp_cache = &m.mtp_cache;
  }
  auto engine = create_engine(m.runner(), m.cache, *m.pool, so);
  std::mutex mu;
  std::condition_variable cv;
  size_t done = 0, next = 0;
  int64_t tokens = 0;
  auto t0 = std::chrono::steady_clock::now();
  std::function<void()> submit_next = [&] {
    size_t i = next++;
    GenerationRequest r;
    r.rid = "bench-" + std::to_string(i);
    r.input_ids = prompts[i];
    r.sampling.temperature = 0;
    r.sampling.max_new_tokens = o.output_len;
    r.sampling.ignore_eos = true;
    engine->submit(r, [&](RequestOutput ev) {
      std::lock_guard lk(mu);
      tokens += int64_t(ev.new_token_ids.size());
      if (ev.finished) {
        ++done;
        cv.notify_all();
      }
    });
  };
  {
    std::unique_lock lk(mu);
    while (next < prompts.size() && next < size_t(p.batch)) submit_next();
    while (done < prompts.size()) {
      size_t before = done;
      cv.wait(lk, [&] { return done > before; });
      while (next < prompts.size() && next - done < size_t(p.batch)) submit_next();
    }
  }
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EngineStats st = engine->stats();
  engine->shutdown();
  double acc = p.steps > 0 ? st.spec_accept_length() : 1.0;
  // Decode rounds as seen by one request slot: verifications, or one token per round without speculation.
  double rounds = double(p.steps > 0 ? st.spec_verify_total : tokens) / std::max(1, p.batch);
  return {{"batch_size", p.batch}, {"steps", p.steps}, {"topk", p.topk}, {"num_draft_tokens", p.draft},
          {"acc_length", acc}, {"step_time", s / std::max(rounds, 1.0)}, {"speed", double(tokens) / s / p.batch},
          {"total_tokens_per_s", double(tokens) / s}};
}

// --prompts-file: one prompt a line, a JSON string (tokenized with BOS) or an array of token ids.
std::vector<std::vector<int32_t>> read_prompts(const std::string& path, const std::string& model_dir, int vocab) {
  std::ifstream in(path);
  DS_CHECK(in.good(), "--prompts-file {}: cannot open it", path);
  std::unique_ptr<text::Tokenizer> tok;
  std::vector<std::vector<int32_t>> out;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    std::vector<int32_t> ids;
    if (j.is_string()) {
      if (!tok) tok = std::make_unique<text::Tokenizer>(text::Tokenizer::load(model_dir));
      ids = tok->encode(j.get<std::string>(), /*add_special_tokens=*/true);
    } else if (j.is_array()) {
      for (const auto& v : j) {
        DS_CHECK(v.is_number_integer() && v.get<int64_t>() >= 0 && v.get<int64_t>() < vocab,
                 "--prompts-file {} line {}: expected token ids in [0, {}), found {}", path, n, vocab, v.dump());
        ids.push_back(v.get<int32_t>());
      }
    } else {
      fail("--prompts-file {} line {}: expected a JSON string or an array of token ids, found {}", path, n,
           line.substr(0, 80));
    }
    DS_CHECK(!ids.empty(), "--prompts-file {} line {}: an empty prompt", path, n);
    out.push_back(std::move(ids));
  }
  DS_CHECK(!out.empty(), "--prompts-file {}: no prompts in it", path);
  return out;
}

void run(BenchOptions& o) {
  std::mt19937 g(uint32_t(o.model.random_seed));
  int max_steps = *std::max_element(o.steps.begin(), o.steps.end());
  int max_batch = *std::max_element(o.batch_sizes.begin(), o.batch_sizes.end());
  std::vector<std::vector<int32_t>> file_prompts;
  if (!o.prompts_file.empty()) {
    file_prompts = read_prompts(o.prompts_file, o.model.model_path, std::numeric_limits<int>::max());
    size_t longest = 0;
    for (const auto& p : file_prompts) longest = std::max(longest, p.size());
    o.input_len = int(longest);
  }
  if (o.model.max_total_tokens == 0)
    o.model.max_total_tokens = int64_t(max_batch) * (o.input_len + o.output_len + 4 * max_steps + 80);
  LoadedModel m = load_model(o.model, max_steps > 0);
  const int vocab = int(m.runner().config().vocab_size);
  std::vector<std::vector<int32_t>> prompts(static_cast<size_t>(o.num_prompts));
  for (size_t i = 0; i < prompts.size(); ++i) {
    if (!file_prompts.empty()) {
      prompts[i] = file_prompts[i % file_prompts.size()];
      for (int32_t id : prompts[i])
        DS_CHECK(id < vocab, "--prompts-file {}: token id {} is outside the model's vocabulary of {}",
                 o.prompts_file, id, vocab);
      continue;
    }
    for (int j = 0; j < o.input_len; ++j) prompts[i].push_back(int32_t(2 + g() % uint32_t(vocab - 2)));
  }
  std::ofstream file;
  if (!o.output_file.empty()) file.open(o.output_file, std::ios::app);
  std::set<std::array<int, 4>> done;
  for (int b : o.batch_sizes)
    for (int s : o.steps)
      for (int k : (s == 0 ? std::vector<int>{1} : o.topks))
        for (int d : (s == 0 ? std::vector<int>{1} : o.draft_tokens)) {
          int draft = s == 0 ? 1 : (d > 0 ? d : s * k + 1);
          if (s > 0 && (s * k + 1 < draft || draft < 2 || (k == 1 && draft != s + 1))) {
            spdlog::info("skipping steps {} topk {} draft tokens {}: not a valid combination", s, k, draft);
            continue;
          }
          if (!done.insert({b, s, k, draft}).second) continue;  // the same point twice
          nlohmann::json line = run_point(m, o, {b, s, k, draft}, prompts);
          std::cout << line.dump() << std::endl;
          if (file.is_open()) file << line.dump() << "\n";
        }
}
}  // namespace

void add_bench_speculative_command(CLI::App& app) {
  auto opt = std::make_shared<BenchOptions>();
  CLI::App* sub = app.add_subcommand("bench-speculative", "Sweep speculative-decoding settings and measure speed");
  opt->model.add_to(*sub);
  sub->add_option("--batch-size", opt->batch_sizes, "Concurrent requests (several values sweep)")->capture_default_str();
  sub->add_option("--steps", opt->steps, "Draft steps; 0 is the baseline without speculation")->capture_default_str();
  sub->add_option("--topk", opt->topks, "EAGLE branches per step")->capture_default_str();
  sub->add_option("--num-draft-tokens", opt->draft_tokens, "Verified tokens (0: steps x topk + 1)")->capture_default_str();
  sub->add_option("--input-len", opt->input_len)->capture_default_str();
  sub->add_option("--output-len", opt->output_len)->capture_default_str();
  sub->add_option("--num-prompts", opt->num_prompts)->capture_default_str();
  sub->add_option("--output", opt->output_file, "Append the JSON lines to this file too");
  sub->add_option("--prompts-file", opt->prompts_file,
                  "JSON lines of prompts (a string, tokenized with the model's tokenizer, or token ids) instead of random ids");
  sub->callback([opt] { run(*opt); });
}

}  // namespace dsserve
