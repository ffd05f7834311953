// `dsserve bench-speculative-cost`: what speculative decoding costs on this device, measured as the
// speculative-decoding issue asks, and the projected speed-up of the full model. For each layer
// count given (e.g. 2 3 4 5 of configs/deepseek-v3: two and three dense layers, then one and two
// MoE layers after the three dense ones) and each batch size, over --context-tokens cached tokens:
// the plain decode step, the verify forward with 2, 4 and 8 tokens per request, and one draft step
// (eh_proj, the MTP layer, the head). Per-layer times come from differences between layer counts;
// the projection is speed-up(a) = a x T_decode / (T_verify + steps x T_draft) for the real depth.
// Verify forwards carry a chain's tree mask, as the scheduler's do; on a GPU the decode step and the
// 4-token verify replay CUDA graphs (as when serving with steps 3, topk 1), the others run eagerly.
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <iostream>
#include <map>
#include <random>

#include "cli/commands.h"
#include "cli/model_options.h"
#include "core/error.h"
#include "runtime/batch_builder.h"
#include "runtime/scheduler.h"

namespace dsserve {

namespace {
struct CostOptions {
  ModelOptions model;
  std::vector<int> layers{2, 3, 4, 5};
  std::vector<int> batch_sizes{1, 32};
  int context_tokens = 1024;
  int steps = 3;
  double acceptance = 2.44;  // SGLang's measured acceptance length on DeepSeek-V3 (steps 3, topk 1, 4 tokens)
  int repeats = 10;
};

struct Times {
  double decode = 0, draft = 0;
  std::map<int, double> verify;  // tokens per request -> seconds
};

template <typename F>
double median_time(LoadedModel& m, int repeats, F&& f) {
  for (int i = 0; i < 3; ++i) f();  // warm-up
  m.runner().synchronize();
  std::vector<double> t;
  for (int i = 0; i < repeats; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    f();
    m.runner().synchronize();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

Times measure(LoadedModel& m, const CostOptions& o, int B) {
  ModelRunner& model = m.runner();  // one device, or the tensor-parallel ranks
  const int ctx = o.context_tokens, ps = m.pool->page_size();
  std::vector<SequencePages> seqs(static_cast<size_t>(B));
  for (auto& s : seqs) DS_CHECK(s.reserve(*m.pool, ctx + 16), "bench-speculative-cost: KV cache too small");
  std::mt19937 g(7);
  // Fill the caches with a real prefill (in forwards of at most 16k tokens).
  std::vector<SequenceChunk> pre;
  int64_t in_batch = 0;
  for (auto& s : seqs) {
    std::vector<int32_t> ids(static_cast<size_t>(ctx));
    for (auto& t : ids) t = int32_t(g() % uint32_t(model.config().vocab_size));
    pre.push_back({&s, 0, std::move(ids), {ctx - 1}});
    in_batch += ctx;
    if (in_batch >= 16384 || pre.size() == seqs.size() || &s == &seqs.back()) {
      model.forward(build_forward_batch(pre, ps, AttentionMode::Expanded), m.cache);
      pre.clear();
      in_batch = 0;
    }
  }
  m.runner().synchronize();
  auto rows = [&](int n) {
    std::vector<SequenceChunk> c;
    for (auto& s : seqs) {
      SequenceChunk k{&s, ctx, std::vector<int32_t>(static_cast<size_t>(n), 5), {}};
      for (int j = 0; j < n; ++j) k.logit_offsets.push_back(j);
      if (n > 1) {  // a chain as the verify forward sees it: a tree mask where each node sees those before
        k.tree_mask.assign(size_t(n) * size_t(n), 0);
        for (int a = 0; a < n; ++a)
          for (int c = 0; c <= a; ++c) k.tree_mask[size_t(a) * size_t(n) + size_t(c)] = 1;
      }
      c.push_back(std::move(k));
    }
    return build_forward_batch(c, ps, AttentionMode::Absorbed);
  };
  Times t;
  ForwardBatch one = rows(1);
  t.decode = median_time(m, o.repeats, [&] { model.forward(one, m.cache); });
  for (int n : {2, 4, 8}) {
    ForwardBatch v = rows(n);
    t.verify[n] = median_time(m, o.repeats, [&] { model.forward(v, m.cache); });
  }
  BatchLayout draft_layout{ps, AttentionMode::Absorbed, 1, int32_t(m.pool->num_pages() * ps)};
  std::vector<SequenceChunk> dc;
  for (auto& s : seqs) dc.push_back({&s, ctx - 1, {5}, {0}});
  ForwardBatch draft = build_forward_batch(dc, draft_layout);
  HiddenRows hidden{HiddenRows::Target, {}};  // rows of the last verify forward, as the draft worker passes them
  for (int i = 0; i < B; ++i) hidden.rows.push_back(i * 8);
  t.draft = median_time(m, o.repeats, [&] { model.forward_mtp(draft, hidden, m.mtp_cache); });
  for (auto& s : seqs) s.release_all(*m.pool);
  return t;
}

void run(CostOptions& o) {
  ModelConfig base = load_model_config(o.model);
  const int dense = base.first_k_dense_replace, full = base.num_hidden_layers;
  std::map<int, std::map<int, Times>> by_layers;  // layers -> batch -> times
  const std::string user_overrides = o.model.json_model_override_args;
  for (int L : o.layers) {
    nlohmann::json ov = user_overrides.empty() ? nlohmann::json::object() : nlohmann::json::parse(user_overrides);
    ov["num_hidden_layers"] = L;
    ModelOptions mo = o.model;
    mo.json_model_override_args = ov.dump();
    const int largest = *std::max_element(o.batch_sizes.begin(), o.batch_sizes.end());
    mo.max_total_tokens = int64_t(largest) * (o.context_tokens + 32 + std::max(mo.page_size, 64));
    mo.verify_tokens = 4;  // the verify forward of steps 3, topk 1 replays CUDA graphs, as when serving
    LoadedModel m = load_model(mo, /*with_mtp_cache=*/true);
    for (int B : o.batch_sizes) {
      Times t = measure(m, o, B);
      by_layers[L][B] = t;
      std::cout << nlohmann::json{{"layers", L}, {"batch_size", B}, {"context_tokens", o.context_tokens},
                                  {"t_decode_ms", t.decode * 1e3}, {"t_verify_2_ms", t.verify[2] * 1e3},
                                  {"t_verify_4_ms", t.verify[4] * 1e3}, {"t_verify_8_ms", t.verify[8] * 1e3},
                                  {"t_draft_ms", t.draft * 1e3}}
                       .dump()
                << std::endl;
    }
  }
  // Per layer from differences: dense = T(d) - T(d - 1) for two dense-only depths, MoE = T(m) - T(m - 1)
  // for two depths past the dense layers; the rest (embedding, head, norms) = T(d) - d x dense.
  auto have = [&](int L) { return by_layers.count(L) > 0; };
  int d1 = -1, m1 = -1;
  for (int L = 2; L <= dense; ++L)
    if (have(L) && have(L - 1)) d1 = L;
  for (int L : o.layers)
    if (L >= dense + 2 && have(L - 1)) m1 = L;
  if (d1 < 0 || m1 < 0) {
    spdlog::warn("no projection: give two consecutive dense-only layer counts (<= {}) and two consecutive counts above {}",
                 dense, dense);
    return;
  }
  for (int B : o.batch_sizes) {
    auto project = [&](auto get) {
      double dense_l = get(by_layers[d1][B]) - get(by_layers[d1 - 1][B]);
      double moe_l = get(by_layers[m1][B]) - get(by_layers[m1 - 1][B]);
      double rest = get(by_layers[d1][B]) - d1 * dense_l;
      return std::array<double, 4>{rest + dense * dense_l + (full - dense) * moe_l, dense_l, moe_l, rest};
    };
    auto dec = project([](const Times& t) { return t.decode; });
    auto ver4 = project([](const Times& t) { return t.verify.at(4); });
    auto ver2 = project([](const Times& t) { return t.verify.at(2); });
    auto ver8 = project([](const Times& t) { return t.verify.at(8); });
    const double draft = by_layers[m1][B].draft;  // one MTP layer + head: the same at any depth
    const double speedup = o.acceptance * dec[0] / (ver4[0] + o.steps * draft);
    std::cout << nlohmann::json{{"projection", full},
                                {"batch_size", B},
                                {"dense_layer_decode_ms", dec[1] * 1e3},
                                {"moe_layer_decode_ms", dec[2] * 1e3},
                                {"embed_head_decode_ms", dec[3] * 1e3},
                                {"t_decode_ms", dec[0] * 1e3},
                                {"t_verify_2_ms", ver2[0] * 1e3},
                                {"t_verify_4_ms", ver4[0] * 1e3},
                                {"t_verify_8_ms", ver8[0] * 1e3},
                                {"t_draft_ms", draft * 1e3},
                                {"steps", o.steps},
                                {"acceptance_length", o.acceptance},
                                {"projected_speedup", speedup}}
                     .dump()
              << std::endl;
  }
}
}  // namespace

void add_bench_speculative_cost_command(CLI::App& app) {
  auto o = std::make_shared<CostOptions>();
  CLI::App* sub = app.add_subcommand("bench-speculative-cost",
                                     "Measure decode, verify and draft costs and project the speculative speed-up");
  o->model.add_to(*sub);
  sub->add_option("--tp-size,--tp", o->model.tp_size, "GPUs to split the model over (tensor parallel)")->capture_default_str();
  sub->add_option("--ep-size,--ep", o->model.ep_size, "1, or --tp-size: routed experts placed whole on the ranks")
      ->capture_default_str();
  sub->add_option("--layers", o->layers, "Layer counts to measure (overriding num_hidden_layers)")->capture_default_str();
  sub->add_option("--batch-size", o->batch_sizes)->capture_default_str();
  sub->add_option("--context-tokens", o->context_tokens, "Tokens already cached per request")->capture_default_str();
  sub->add_option("--steps", o->steps, "Draft steps of the projected setting")->capture_default_str();
  sub->add_option("--acceptance-length", o->acceptance, "Acceptance length to project with")->capture_default_str();
  sub->add_option("--repeats", o->repeats)->capture_default_str();
  sub->callback([o] { run(*o); });
}

}  // namespace dsserve
