// `dsserve bench-speculative`: sweeps batch size x draft steps x topk x draft tokens (skipping
// invalid combinations, with the non-speculative baseline at steps 0) over one loaded model, runs
// the same prompt set at each point with the batch size as concurrency, and prints one JSON line per
// point: {batch_size, steps, topk, num_draft_tokens, acc_length, step_time, speed}.
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <chrono>
#include <condition_variable>
#include <fstream>
#include <iostream>
#include <mutex>
#include <random>
#include <set>

#include "cli/commands.h"
#include "cli/model_options.h"
#include "core/error.h"
#include "runtime/scheduler.h"

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

void run(BenchOptions& o) {
  std::mt19937 g(uint32_t(o.model.random_seed));
  int max_steps = *std::max_element(o.steps.begin(), o.steps.end());
  int max_batch = *std::max_element(o.batch_sizes.begin(), o.batch_sizes.end());
  if (o.model.max_total_tokens == 0)
    o.model.max_total_tokens = int64_t(max_batch) * (o.input_len + o.output_len + 4 * max_steps + 80);
  LoadedModel m = load_model(o.model, max_steps > 0);
  std::vector<std::vector<int32_t>> prompts(static_cast<size_t>(o.num_prompts));
  for (auto& p : prompts)
    for (int i = 0; i < o.input_len; ++i) p.push_back(int32_t(2 + g() % uint32_t(m.runner().config().vocab_size - 2)));
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
  sub->callback([opt] { run(*opt); });
}

}  // namespace dsserve
