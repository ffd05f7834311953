// `dsserve bench-grammar`: what structured output costs. (1) Compile time of typical tool schemas
// (grammar, automaton and every state's token masks over the tokenizer's vocabulary), each compiled
// afresh. (2) The per-token mask time on a JSON-schema workload at batch 1, 8 and 64: for each
// request of a batch, the time to fill its allowed-token bitmask and take the chosen token (a
// random allowed one), as the scheduler does every step; percentiles per token and the host time a
// whole step adds, beside the floor of writing one 16 KB bitmask; a first pass on freshly compiled
// grammars (token sets left to first use are computed then) and a steady pass on the same ones. (3) Decode throughput with every
// request constrained against the same batch unconstrained (--batch-size, default 64), through the
// engine on any --device (the CPU tiny model, or e.g. 4 full-width layers with --load-format dummy
// on a GPU), the constraint a word regex that cannot end within the run. A benchmark: it prints numbers, it does not judge them.
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <random>

#include "cli/commands.h"
#include "cli/model_options.h"
#include "core/error.h"
#include "grammar/grammar_cache.h"
#include "grammar/matcher.h"
#include "server/grammar_constraint.h"
#include "text/tokenizer.h"

namespace dsserve {

namespace {

using Clock = std::chrono::steady_clock;
double us_since(Clock::time_point t0) { return std::chrono::duration<double, std::micro>(Clock::now() - t0).count(); }

struct BenchGrammarOptions {
  ModelOptions model;
  std::string tokenizer_path;
  int batch_size = 64;
  int output_len = 64;
  int mask_steps = 4000;
  bool skip_decode = false;
};

const char* kWeatherTool = R"({"type":"object","properties":{
  "location":{"type":"string","description":"City and country, e.g. Paris, France"},
  "unit":{"type":"string","enum":["celsius","fahrenheit"]},
  "days":{"type":"integer","minimum":1,"maximum":14}},"required":["location"],"additionalProperties":false})";

const char* kOrderTool = R"({"type":"object","properties":{
  "customer":{"type":"object","properties":{"name":{"type":"string","maxLength":40},"email":{"type":"string","format":"email"},
    "vip":{"type":"boolean"}},"required":["name","email"]},
  "items":{"type":"array","items":{"type":"object","properties":{"sku":{"type":"string","pattern":"^[A-Z]{3}-\\d{4}$"},
    "qty":{"type":"integer","minimum":1,"maximum":100},"price":{"type":"number","minimum":0,"maximum":10000}},
    "required":["sku","qty"]},"minItems":1,"maxItems":20},
  "shipping":{"anyOf":[{"type":"object","properties":{"method":{"const":"pickup"},"store":{"type":"string","maxLength":20}},"required":["method","store"]},
    {"type":"object","properties":{"method":{"const":"courier"},"address":{"type":"string","maxLength":80},"date":{"type":"string","format":"date"}},"required":["method","address"]}]},
  "notes":{"type":["string","null"],"maxLength":200},
  "priority":{"enum":["low","normal","high"]}},"required":["customer","items","shipping"]})";

const std::vector<std::string> kWorkload = {
    kWeatherTool,
    kOrderTool,
    R"({"type":"object","properties":{"name":{"type":"string","maxLength":16},"age":{"type":"integer","minimum":0,"maximum":120},"tags":{"type":"array","items":{"type":"string","maxLength":8},"maxItems":4}},"required":["name","age"]})",
    R"({"$defs":{"node":{"type":"object","properties":{"v":{"type":"integer"},"kids":{"type":"array","items":{"$ref":"#/$defs/node"},"maxItems":2}},"required":["v"]}},"$ref":"#/$defs/node"})",
    R"({"type":"array","items":{"type":"object","properties":{"x":{"type":"number"},"y":{"type":"number"},"label":{"type":"string","maxLength":12}},"required":["x","y"]},"maxItems":6})",
    R"({"type":"object","properties":{"when":{"type":"string","format":"date-time"},"id":{"type":"string","format":"uuid"},"ok":{"type":"boolean"}},"required":["when","id","ok"]})",
};

grammar::GrammarRequest schema_request(const std::string& s) {
  grammar::GrammarRequest r;
  r.kind = grammar::GrammarRequest::Kind::JsonSchema;
  r.text = s;
  return r;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, size_t(p * double(v.size())))];
}

void bench_compile(const std::shared_ptr<const grammar::Vocabulary>& vocab) {
  for (auto [name, schema] : {std::pair{"weather tool (3 properties)", kWeatherTool}, std::pair{"order tool (nested, 14 properties)", kOrderTool}}) {
    std::vector<double> total, automaton, masks;
    size_t states = 0, bytes = 0;
    int classes = 0, eager = 0;
    for (int i = 0; i < 7; ++i) {
      const auto t0 = Clock::now();
      auto g = grammar::compile_grammar(grammar::build_grammar(schema_request(schema)), vocab);
      total.push_back(us_since(t0) / 1000);
      automaton.push_back(g->automaton_ms);
      masks.push_back(g->masks_ms);
      states = size_t(g->automaton.num_states());
      bytes = g->memory_bytes();
      classes = g->num_classes();
      eager = g->eager_classes;
    }
    std::printf("compile %-36s median %7.2f ms (automaton %.2f ms, token sets %.2f ms): %zu states, %d token classes, "
                "%d computed at compile time (the rest on first use), %.1f MiB\n",
                name, percentile(total, 0.5), percentile(automaton, 0.5), percentile(masks, 0.5), states, classes, eager,
                double(bytes) / 1048576);
  }
}

void bench_masks(const std::shared_ptr<const grammar::Vocabulary>& vocab, int steps) {
  std::vector<std::shared_ptr<const grammar::CompiledGrammar>> grammars;
  for (const std::string& s : kWorkload) grammars.push_back(grammar::compile_grammar(grammar::build_grammar(schema_request(s)), vocab));
  const size_t words = size_t(vocab->words());
  {  // the floor: writing one bitmask (zero it, OR a dense one in)
    std::vector<uint32_t> a(words, 0), b(words, 0x55555555u);
    std::vector<double> t;
    for (int i = 0; i < 2000; ++i) {
      const auto t0 = Clock::now();
      std::memset(a.data(), 0, words * 4);
      for (size_t w = 0; w < words; ++w) a[w] |= b[w];
      t.push_back(us_since(t0));
      if (a[size_t(i) % words] == 1) std::printf(" ");
    }
    std::printf("mask floor: zero + OR one %zu-word bitmask: median %.2f us\n", words, percentile(t, 0.5));
  }
  std::mt19937 rng(1);
  for (const char* pass : {"first use", "steady"})
  for (int batch : {1, 8, 64}) {
    std::vector<std::unique_ptr<grammar::Matcher>> ms;
    for (int i = 0; i < batch; ++i) ms.push_back(std::make_unique<grammar::Matcher>(grammars[size_t(i) % grammars.size()]));
    std::vector<uint32_t> bits(words);
    std::vector<double> per_token, per_step;
    int restarts = 0;
    for (int s = 0; s < std::max(1, steps / batch) + 1; ++s) {
      double step_us = 0;
      for (int i = 0; i < batch; ++i) {
        grammar::Matcher& m = *ms[size_t(i)];
        if (m.is_complete() || (m.can_end() && rng() % 8 == 0)) {
          ms[size_t(i)] = std::make_unique<grammar::Matcher>(grammars[size_t(i + s) % grammars.size()]);
          ++restarts;
          continue;
        }
        auto t0 = Clock::now();
        m.fill_next_token_bitmask(bits);
        double us = us_since(t0);
        std::vector<int32_t> allowed;  // not timed: the sampler's choice
        for (size_t w = 0; w < words; ++w)
          for (uint32_t x = bits[w]; x; x &= x - 1) allowed.push_back(int32_t(w * 32 + size_t(__builtin_ctz(x))));
        if (allowed.empty()) continue;
        const int32_t tok = allowed[rng() % allowed.size()];
        t0 = Clock::now();
        DS_CHECK(m.accept_token(tok), "bench-grammar: a token of the mask was refused");
        us += us_since(t0);
        per_token.push_back(us);
        step_us += us;
      }
      if (s > 0) per_step.push_back(step_us);
    }
    std::printf("[%-9s] mask + accept per token, batch %2d: p50 %6.1f us  p90 %6.1f us  p99 %7.1f us  max %7.1f us (%zu tokens, %d texts ended); "
                "a step adds p50 %7.1f us, p90 %7.1f us of host time\n",
                pass, batch, percentile(per_token, 0.5), percentile(per_token, 0.9), percentile(per_token, 0.99),
                percentile(per_token, 1.0), per_token.size(), restarts, percentile(per_step, 0.5), percentile(per_step, 0.9));
  }
}

// Tokens per second of the decode phase: between the moment every request has its first token and
// the moment the first one finishes.
double decode_rate(Engine& e, int batch, int output_len, int vocab, const std::shared_ptr<const grammar::CompiledGrammar>& g) {
  std::mutex mu;
  std::condition_variable cv;
  int started = 0, finished = 0;
  int64_t tokens = 0, tokens_at_start = 0, tokens_at_end = 0;
  Clock::time_point t_start, t_end;
  std::mt19937 rng(7);
  for (int i = 0; i < batch; ++i) {
    GenerationRequest r;
    r.rid = (g ? "c" : "f") + std::to_string(i);
    for (int k = 0; k < 32; ++k) r.input_ids.push_back(int32_t(rng() % uint32_t(vocab)));
    r.sampling.temperature = 1.0f;
    r.sampling.seed = uint64_t(i);
    r.sampling.max_new_tokens = output_len;
    r.sampling.ignore_eos = true;
    if (g) r.constraint = std::make_shared<server::GrammarConstraint>(g, false);
    e.submit(r, [&](RequestOutput out) {
      std::lock_guard lk(mu);
      tokens += int64_t(out.new_token_ids.size());
      if (out.completion_tokens == int(out.new_token_ids.size()) && !out.new_token_ids.empty() && ++started == batch) {
        t_start = Clock::now();
        tokens_at_start = tokens;
      }
      if (out.finished && ++finished == 1) {
        t_end = Clock::now();
        tokens_at_end = tokens;
      }
      cv.notify_all();
    });
  }
  std::unique_lock lk(mu);
  cv.wait(lk, [&] { return finished == batch; });
  const double s = std::chrono::duration<double>(t_end - t_start).count();
  return s > 0 ? double(tokens_at_end - tokens_at_start) / s : 0;
}

void run(BenchGrammarOptions& o) {
  std::string tok_dir = o.tokenizer_path.empty() ? o.model.model_path : o.tokenizer_path;
  DS_CHECK(std::filesystem::exists(std::filesystem::path(tok_dir) / "tokenizer.json"),
           "bench-grammar: no tokenizer.json in '{}' (pass --tokenizer-path DIR)", tok_dir);
  text::Tokenizer tok = text::Tokenizer::load(tok_dir);
  const int vocab_size = 129280;
  std::vector<std::string> bytes(vocab_size);
  for (int i = 0; i < tok.vocab_size() && i < vocab_size; ++i)
    if (!tok.is_special(i)) bytes[size_t(i)] = tok.token_bytes(i);
  auto vocab = std::make_shared<grammar::Vocabulary>(std::move(bytes));
  bench_compile(vocab);
  bench_masks(vocab, o.mask_steps);
  if (o.skip_decode) return;

  LoadedModel m = load_model(o.model);
  DS_CHECK(m.runner().config().vocab_size == vocab_size, "bench-grammar: the model's vocabulary is {} tokens (expected {})",
           m.runner().config().vocab_size, vocab_size);
  SchedulerOptions so;
  so.max_running_requests = std::max(o.batch_size, 1);
  auto engine = start_engine(m, so);
  // Words of lower-case letters: every token constrained (a dense mask, about a sixth of the
  // vocabulary), and no end before 3000 characters (ignore_eos: eos only where the grammar is complete).
  grammar::GrammarRequest words;
  words.kind = grammar::GrammarRequest::Kind::Regex;
  words.text = "[a-z ]{1,3000}";
  auto g = grammar::compile_grammar(grammar::build_grammar(words), vocab);
  decode_rate(*engine, std::min(o.batch_size, 8), 8, vocab_size, nullptr);  // warm-up
  decode_rate(*engine, std::min(o.batch_size, 8), 8, vocab_size, g);
  double free_rate = 0, constrained_rate = 0;
  for (int rep = 0; rep < 2; ++rep) {  // interleaved, the better of two each
    free_rate = std::max(free_rate, decode_rate(*engine, o.batch_size, o.output_len, vocab_size, nullptr));
    constrained_rate = std::max(constrained_rate, decode_rate(*engine, o.batch_size, o.output_len, vocab_size, g));
  }
  std::printf("decode at batch %d on %s: unconstrained %.1f tokens/s, every request constrained %.1f tokens/s: %.1f%%\n",
              o.batch_size, o.model.device.c_str(), free_rate, constrained_rate, 100.0 * constrained_rate / free_rate);
  engine->shutdown();
}

}  // namespace

void add_bench_grammar_command(CLI::App& app) {
  auto o = std::make_shared<BenchGrammarOptions>();
  CLI::App* s = app.add_subcommand("bench-grammar", "Structured output costs: grammar compile time, per-token mask time, constrained decode throughput");
  o->model.add_to(*s);
  s->add_option("--tokenizer-path", o->tokenizer_path, "Tokenizer directory (default: the model directory)");
  s->add_option("--batch-size", o->batch_size, "Requests of the decode-throughput runs (default 64)");
  s->add_option("--output-len", o->output_len, "Tokens per request of the decode-throughput runs (default 64)");
  s->add_option("--mask-steps", o->mask_steps, "Token choices per batch size of the mask benchmark (default 4000)");
  s->add_flag("--skip-decode", o->skip_decode, "Compile and mask times only (no model)");
  s->callback([o] { run(*o); });
}

}  // namespace dsserve
