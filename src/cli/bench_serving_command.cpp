// `dsserve bench-serving`: load generator in the manner of sglang.bench_serving. Sends --num-prompts
// streaming /generate requests (random token prompts of --random-input-len, or ShareGPT prompts from
// --dataset-path) to a running server at --request-rate (Poisson; inf: all at once) with at most
// --max-concurrency in flight, and reports request and token throughput, TTFT, inter-token latency
// and end-to-end latency (mean, p50, p99), on stdout and as JSON (--output-file).
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <utility>  // before Asio: Boost 1.74 awaitable.hpp uses std::exchange

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <iostream>
#include <limits>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "cli/commands.h"
#include "core/error.h"

namespace dsserve {

namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using Clock = std::chrono::steady_clock;

struct BenchOptions {
  std::string host = "127.0.0.1", base_url, dataset_name = "random", dataset_path, output_file, api_key;
  int port = 30000, num_prompts = 1000, random_input_len = 1024, random_output_len = 128, max_concurrency = 0;
  double random_range_ratio = 1.0, request_rate = std::numeric_limits<double>::infinity();
  uint64_t seed = 1;
  int vocab_size = 32000;
};

struct Prompt {
  std::vector<int32_t> ids;  // random dataset
  std::string text;          // ShareGPT
  int output_len = 0;
};

struct Result {
  bool ok = false;
  std::string error;
  int prompt_tokens = 0, output_tokens = 0;
  double ttft_s = 0, e2e_s = 0;
  std::vector<double> itl_s;
};

std::vector<Prompt> make_prompts(const BenchOptions& o) {
  std::mt19937_64 rng(o.seed);
  std::vector<Prompt> out;
  if (o.dataset_name == "sharegpt") {
    DS_CHECK(!o.dataset_path.empty(), "--dataset-name sharegpt needs --dataset-path FILE");
    std::ifstream f(o.dataset_path);
    DS_CHECK(f.good(), "cannot read {}", o.dataset_path);
    nlohmann::json data = nlohmann::json::parse(f);
    DS_CHECK(data.is_array(), "{}: expected a JSON list of {{\"conversations\": [...]}}", o.dataset_path);
    for (auto& e : data) {
      if (!e.contains("conversations") || e["conversations"].size() < 2) continue;
      auto& c = e["conversations"];
      Prompt p;
      p.text = c[0].value("value", "");
      // Without a tokenizer here, the reply's length in tokens is estimated at 4 characters per token.
      p.output_len = std::max<int>(4, int(c[1].value("value", "").size() / 4));
      if (o.random_output_len > 0 && p.output_len > o.random_output_len) p.output_len = o.random_output_len;
      if (p.text.empty()) continue;
      out.push_back(std::move(p));
      if (int(out.size()) == o.num_prompts) break;
    }
    DS_CHECK(!out.empty(), "{}: no usable conversations", o.dataset_path);
    while (int(out.size()) < o.num_prompts) out.push_back(out[out.size() % out.size()]);
    return out;
  }
  DS_CHECK(o.dataset_name == "random", "--dataset-name: expected random or sharegpt, found {}", o.dataset_name);
  auto len = [&](int full) {
    int lo = std::max(1, int(full * o.random_range_ratio));
    return std::uniform_int_distribution<int>(lo, std::max(lo, full))(rng);
  };
  std::uniform_int_distribution<int32_t> tok(1000, std::max(1001, o.vocab_size - 1000));
  for (int i = 0; i < o.num_prompts; ++i) {
    Prompt p;
    p.ids.resize(size_t(len(o.random_input_len)));
    for (auto& t : p.ids) t = tok(rng);
    p.output_len = len(o.random_output_len);
    out.push_back(std::move(p));
  }
  return out;
}

// One streaming /generate request over its own connection.
Result run_one(const BenchOptions& o, const std::string& host, const std::string& port, const Prompt& p) {
  Result r;
  nlohmann::json body = {{"sampling_params", {{"max_new_tokens", p.output_len}, {"ignore_eos", true}, {"temperature", 0}}},
                         {"stream", true}};
  if (!p.ids.empty()) body["input_ids"] = p.ids;
  else body["text"] = p.text;
  auto t0 = Clock::now();
  try {
    net::io_context ioc;
    net::ip::tcp::resolver resolver(ioc);
    beast::tcp_stream stream(ioc);
    stream.connect(resolver.resolve(host, port));
    http::request<http::string_body> req{http::verb::post, "/generate", 11};
    req.set(http::field::host, host);
    req.set(http::field::content_type, "application/json");
    if (!o.api_key.empty()) req.set(http::field::authorization, "Bearer " + o.api_key);
    req.body() = body.dump();
    req.prepare_payload();
    http::write(stream, req);
    beast::flat_buffer buf;
    http::response_parser<http::empty_body> parser;
    parser.body_limit(std::numeric_limits<uint64_t>::max());
    http::read_header(stream, buf, parser);
    if (parser.get().result_int() != 200) {
      r.error = fmt::format("HTTP {}", parser.get().result_int());
      return r;
    }
    std::string pending;
    int seen_tokens = 0;
    auto last = t0;
    bool finished = false;
    auto on_event = [&](const std::string& data) {
      if (data == "[DONE]") return;
      auto j = nlohmann::json::parse(data);
      auto& meta = j["meta_info"];
      int n = meta.value("completion_tokens", 0);
      auto now = Clock::now();
      if (n > seen_tokens) {
        if (seen_tokens == 0) r.ttft_s = std::chrono::duration<double>(now - t0).count();
        else {
          double gap = std::chrono::duration<double>(now - last).count();
          for (int k = seen_tokens; k < n; ++k) r.itl_s.push_back(gap / (n - seen_tokens));
        }
        seen_tokens = n;
        last = now;
      }
      r.prompt_tokens = meta.value("prompt_tokens", 0);
      if (!meta["finish_reason"].is_null()) finished = true;
    };
    auto on_chunk = [&](std::uint64_t, beast::string_view chunk, beast::error_code&) -> std::size_t {
      pending.append(chunk.data(), chunk.size());
      size_t pos;
      while ((pos = pending.find("\n\n")) != std::string::npos) {
        std::string ev = pending.substr(0, pos);
        pending.erase(0, pos + 2);
        if (ev.rfind("data: ", 0) == 0) on_event(ev.substr(6));
      }
      return chunk.size();
    };
    auto on_header = [](std::uint64_t, beast::string_view, beast::error_code&) {};
    parser.on_chunk_header(on_header);
    parser.on_chunk_body(on_chunk);
    while (!parser.is_done()) http::read(stream, buf, parser);
    r.output_tokens = seen_tokens;
    r.e2e_s = std::chrono::duration<double>(Clock::now() - t0).count();
    r.ok = finished;
    if (!finished) r.error = "stream ended without a finish reason";
    beast::error_code ec;
    stream.socket().shutdown(net::ip::tcp::socket::shutdown_both, ec);
  } catch (const std::exception& e) {
    r.error = e.what();
  }
  return r;
}

struct Stat {
  double mean = 0, p50 = 0, p99 = 0;
};
Stat stat_of(std::vector<double> v) {
  Stat s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  double sum = 0;
  for (double x : v) sum += x;
  s.mean = sum / double(v.size());
  auto pct = [&](double q) { return v[std::min(v.size() - 1, size_t(q * double(v.size() - 1) + 0.5))]; };
  s.p50 = pct(0.5);
  s.p99 = pct(0.99);
  return s;
}

void run_bench(BenchOptions& o) {
  std::string host = o.host, port = std::to_string(o.port);
  if (!o.base_url.empty()) {
    std::string u = o.base_url;
    DS_CHECK(u.rfind("http://", 0) == 0, "--base-url: expected http://HOST:PORT, found {}", u);
    u = u.substr(7);
    if (auto slash = u.find('/'); slash != std::string::npos) u = u.substr(0, slash);
    auto colon = u.rfind(':');
    host = u.substr(0, colon);
    port = colon == std::string::npos ? "80" : u.substr(colon + 1);
  }
  DS_CHECK(o.num_prompts > 0, "--num-prompts must be positive");
  std::vector<Prompt> prompts = make_prompts(o);
  int concurrency = o.max_concurrency > 0 ? o.max_concurrency : o.num_prompts;
  spdlog::info("bench-serving: {} prompts to {}:{}, request rate {}, max concurrency {}", prompts.size(), host, port,
               o.request_rate, o.max_concurrency > 0 ? std::to_string(o.max_concurrency) : "unlimited");

  std::vector<Result> results(prompts.size());
  std::mutex mu;
  std::condition_variable cv;
  int in_flight = 0;
  std::vector<std::thread> threads;
  std::mt19937_64 rng(o.seed + 7);
  std::exponential_distribution<double> gap(std::isinf(o.request_rate) ? 1.0 : o.request_rate);
  auto t0 = Clock::now();
  auto next_send = t0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    if (!std::isinf(o.request_rate)) {
      std::this_thread::sleep_until(next_send);
      next_send += std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(gap(rng)));
    }
    {
      std::unique_lock lk(mu);
      cv.wait(lk, [&] { return in_flight < concurrency; });
      ++in_flight;
    }
    threads.emplace_back([&, i] {
      results[i] = run_one(o, host, port, prompts[i]);
      std::lock_guard lk(mu);
      --in_flight;
      cv.notify_one();
    });
  }
  for (auto& t : threads) t.join();
  double duration = std::chrono::duration<double>(Clock::now() - t0).count();

  int ok = 0;
  int64_t in_tokens = 0, out_tokens = 0;
  std::vector<double> ttft, itl, e2e;
  std::string first_error;
  for (auto& r : results) {
    if (!r.ok) {
      if (first_error.empty()) first_error = r.error;
      continue;
    }
    ++ok;
    in_tokens += r.prompt_tokens;
    out_tokens += r.output_tokens;
    ttft.push_back(r.ttft_s * 1000);
    e2e.push_back(r.e2e_s * 1000);
    for (double g : r.itl_s) itl.push_back(g * 1000);
  }
  Stat st = stat_of(ttft), si = stat_of(itl), se = stat_of(e2e);
  nlohmann::json out = {
      {"backend", "dsserve"}, {"dataset_name", o.dataset_name}, {"request_rate", std::isinf(o.request_rate) ? nlohmann::json("inf") : nlohmann::json(o.request_rate)},
      {"max_concurrency", o.max_concurrency > 0 ? nlohmann::json(o.max_concurrency) : nlohmann::json(nullptr)},
      {"num_prompts", prompts.size()}, {"completed", ok}, {"failed", int(prompts.size()) - ok},
      {"duration", duration}, {"total_input_tokens", in_tokens}, {"total_output_tokens", out_tokens},
      {"request_throughput", ok / duration}, {"input_throughput", double(in_tokens) / duration},
      {"output_throughput", double(out_tokens) / duration},
      {"total_token_throughput", double(in_tokens + out_tokens) / duration},
      {"mean_ttft_ms", st.mean}, {"median_ttft_ms", st.p50}, {"p99_ttft_ms", st.p99},
      {"mean_itl_ms", si.mean}, {"median_itl_ms", si.p50}, {"p99_itl_ms", si.p99},
      {"mean_e2e_latency_ms", se.mean}, {"median_e2e_latency_ms", se.p50}, {"p99_e2e_latency_ms", se.p99}};
  if (!first_error.empty()) out["first_error"] = first_error;
  auto line = [](const char* k, const std::string& v) { fmt::print("{:<40}{:>20}\n", k, v); };
  fmt::print("{:=^60}\n", " Serving Benchmark Result ");
  line("Successful requests:", fmt::format("{}", ok));
  line("Failed requests:", fmt::format("{}", int(prompts.size()) - ok));
  line("Benchmark duration (s):", fmt::format("{:.2f}", duration));
  line("Total input tokens:", fmt::format("{}", in_tokens));
  line("Total generated tokens:", fmt::format("{}", out_tokens));
  line("Request throughput (req/s):", fmt::format("{:.2f}", ok / duration));
  line("Input token throughput (tok/s):", fmt::format("{:.2f}", in_tokens / duration));
  line("Output token throughput (tok/s):", fmt::format("{:.2f}", out_tokens / duration));
  line("Total token throughput (tok/s):", fmt::format("{:.2f}", (in_tokens + out_tokens) / duration));
  auto block = [&](const char* title, const char* name, const Stat& s) {
    fmt::print("{:-^60}\n", fmt::format(" {} ", title));
    line(fmt::format("Mean {} (ms):", name).c_str(), fmt::format("{:.2f}", s.mean));
    line(fmt::format("Median {} (ms):", name).c_str(), fmt::format("{:.2f}", s.p50));
    line(fmt::format("P99 {} (ms):", name).c_str(), fmt::format("{:.2f}", s.p99));
  };
  block("Time to First Token", "TTFT", st);
  block("Inter-token Latency", "ITL", si);
  block("End-to-End Latency", "E2E Latency", se);
  fmt::print("{:=^60}\n", "");
  if (!first_error.empty()) spdlog::warn("first failure: {}", first_error);
  if (!o.output_file.empty()) {
    std::ofstream f(o.output_file, std::ios::app);
    DS_CHECK(f.good(), "cannot write {}", o.output_file);
    f << out.dump() << "\n";
  }
  DS_CHECK(ok > 0, "every request failed (first error: {})", first_error);
}

}  // namespace

void add_bench_serving_command(CLI::App& app) {
  auto o = std::make_shared<BenchOptions>();
  CLI::App* s = app.add_subcommand("bench-serving", "Benchmark a running server with streaming requests (like sglang.bench_serving)");
  s->add_option("--host", o->host)->capture_default_str();
  s->add_option("--port", o->port)->capture_default_str();
  s->add_option("--base-url", o->base_url, "http://HOST:PORT (overrides --host/--port)");
  s->add_option("--dataset-name", o->dataset_name, "random | sharegpt")->capture_default_str();
  s->add_option("--dataset-path", o->dataset_path, "ShareGPT-format JSON (implies --dataset-name sharegpt)");
  s->add_option("--num-prompts", o->num_prompts)->capture_default_str();
  s->add_option("--random-input-len", o->random_input_len)->capture_default_str();
  s->add_option("--random-output-len", o->random_output_len)->capture_default_str();
  s->add_option("--random-range-ratio", o->random_range_ratio, "Lengths drawn from [ratio * len, len]")->capture_default_str();
  s->add_option("--request-rate", o->request_rate, "Requests per second (Poisson); inf: all at once");
  s->add_option("--max-concurrency", o->max_concurrency, "Requests in flight at most (0: no limit)");
  s->add_option("--seed", o->seed)->capture_default_str();
  s->add_option("--vocab-size", o->vocab_size, "Random prompt token ids are drawn below this")->capture_default_str();
  s->add_option("--output-file", o->output_file, "Append the results as one JSON line");
  s->add_option("--api-key", o->api_key);
  s->callback([o] {
    if (!o->dataset_path.empty() && o->dataset_name == "random") o->dataset_name = "sharegpt";
    run_bench(*o);
  });
}

}  // namespace dsserve
