// `dsserve generate`: one request through the engine (the same scheduler the server uses), printed
// as SGLang's /generate response.
#include <nlohmann/json.hpp>

#include <future>
#include <iostream>

#include "cli/commands.h"
#include "cli/model_options.h"
#include "core/error.h"
#include "runtime/scheduler.h"

namespace dsserve {

namespace {
struct GenerateOptions {
  ModelOptions model;
  std::string input_ids;
  int max_new_tokens = 16;
  float temperature = 0.0f;
  bool return_logprob = false;
  int logprob_start_len = -1;
  int top_logprobs_num = 0;
  int chunked_prefill_size = 8192;
  bool ignore_eos = false;
  bool disable_mla = false;
  SpeculativeOptions speculative;
};

std::vector<int32_t> parse_ids(const std::string& s) {
  std::vector<int32_t> ids;
  size_t i = 0;
  while (i <= s.size()) {
    size_t j = s.find(',', i);
    if (j == std::string::npos) j = s.size();
    std::string tok = s.substr(i, j - i);
    size_t used = 0;
    long v = 0;
    try {
      v = std::stol(tok, &used);
    } catch (...) {
      used = 0;
    }
    DS_CHECK(used == tok.size() && !tok.empty() && v >= INT32_MIN && v <= INT32_MAX,
             "--input-ids: '{}' is not an integer (expected a comma-separated list such as 1,2,3)", tok);
    ids.push_back(int32_t(v));
    i = j + 1;
  }
  return ids;
}

nlohmann::json entry(const TokenLogprob& lp) {
  return nlohmann::json::array({lp.first ? nlohmann::json(*lp.first) : nlohmann::json(nullptr), lp.second, nullptr});
}

nlohmann::json tops(const TopLogprobs& t) {
  if (!t) return nullptr;
  nlohmann::json a = nlohmann::json::array();
  for (auto& [lp, id] : *t) a.push_back(nlohmann::json::array({lp, id, nullptr}));
  return a;
}

void run(GenerateOptions& o) {
  GenerationRequest req;
  req.rid = "generate-0";
  req.input_ids = parse_ids(o.input_ids);
  req.sampling.max_new_tokens = o.max_new_tokens;
  req.sampling.temperature = o.temperature;
  req.sampling.seed = o.model.random_seed;
  req.sampling.ignore_eos = o.ignore_eos;
  req.return_logprob = o.return_logprob;
  req.logprob_start_len = o.return_logprob && o.logprob_start_len < 0 ? 0 : o.logprob_start_len;
  req.top_logprobs_num = o.top_logprobs_num;
  o.speculative.validate_and_default();
  if (o.model.max_total_tokens == 0)  // one sequence, plus what one speculative round may touch
    o.model.max_total_tokens = int64_t(req.input_ids.size()) + std::max(0, req.sampling.max_new_tokens) +
                               o.speculative.cache_margin();
  o.model.verify_tokens = o.speculative.enabled() ? o.speculative.num_draft_tokens : 0;
  if (o.disable_mla) o.model.disable_cuda_graph = true;  // expanded decode runs eagerly
  LoadedModel m = load_model(o.model, o.speculative.enabled());
  SchedulerOptions so;
  so.chunked_prefill_size = o.chunked_prefill_size;
  so.random_seed = o.model.random_seed;
  so.speculative = o.speculative;
  so.mtp_cache = &m.mtp_cache;
  so.decode_attention = o.disable_mla ? AttentionMode::Expanded : AttentionMode::Absorbed;
  std::unique_ptr<Engine> engine = create_engine(m.runner(), m.cache, *m.pool, so);

  std::vector<int32_t> output_ids;
  nlohmann::json itl = nlohmann::json::array(), itop = nlohmann::json::array(), otl = nlohmann::json::array(),
                 otop = nlohmann::json::array();
  std::promise<RequestOutput> done;
  RequestOutput last;
  engine->submit(req, [&](RequestOutput out) {
    output_ids.insert(output_ids.end(), out.new_token_ids.begin(), out.new_token_ids.end());
    for (auto& e : out.input_token_logprobs) itl.push_back(entry(e));
    for (auto& e : out.input_top_logprobs) itop.push_back(tops(e));
    for (auto& e : out.output_token_logprobs) otl.push_back(entry(e));
    for (auto& e : out.output_top_logprobs) otop.push_back(tops(e));
    if (out.finished) done.set_value(std::move(out));
  });
  last = done.get_future().get();
  engine->shutdown();
  const FinishReason& fr = *last.finish_reason;
  DS_CHECK(fr.type != "abort", "generation failed: {}", fr.message);
  nlohmann::json meta = {{"prompt_tokens", last.prompt_tokens},
                         {"spec_verify_ct", last.spec_verify_ct},
                         {"completion_tokens", last.completion_tokens},
                         {"cached_tokens", last.cached_tokens},
                         {"finish_reason", fr.type == "length"
                                               ? nlohmann::json{{"type", "length"}, {"length", fr.length}}
                                               : nlohmann::json{{"type", "stop"}, {"matched", *fr.matched_token}}}};
  if (req.return_logprob) {
    meta["input_token_logprobs"] = itl;
    meta["input_top_logprobs"] = itop;
    meta["output_token_logprobs"] = otl;
    meta["output_top_logprobs"] = otop;
  }
  std::cout << nlohmann::json{{"output_ids", output_ids}, {"meta_info", meta}}.dump() << std::endl;
}
}  // namespace

void add_generate_command(CLI::App& app) {
  auto opt = std::make_shared<GenerateOptions>();
  CLI::App* sub = app.add_subcommand("generate", "Generate from token ids and print a /generate-style JSON response");
  opt->model.add_to(*sub);
  sub->add_option("--input-ids", opt->input_ids, "Prompt token ids, comma-separated")->required();
  sub->add_option("--max-new-tokens", opt->max_new_tokens)->capture_default_str();
  sub->add_option("--temperature", opt->temperature, "0: greedy")->capture_default_str();
  sub->add_flag("--return-logprob", opt->return_logprob);
  sub->add_option("--logprob-start-len", opt->logprob_start_len, "First prompt position with input logprobs");
  sub->add_option("--top-logprobs-num", opt->top_logprobs_num)->capture_default_str();
  sub->add_option("--chunked-prefill-size", opt->chunked_prefill_size, "Prefill chunk in tokens")->capture_default_str();
  sub->add_flag("--ignore-eos", opt->ignore_eos);
  sub->add_flag("--disable-mla", opt->disable_mla, "Decode with the non-absorbed attention too");
  sub->add_option("--tp-size,--tp", opt->model.tp_size, "GPUs to split the model over (tensor parallel)")
      ->capture_default_str();
  sub->add_option("--ep-size,--ep", opt->model.ep_size, "1, or --tp-size: routed experts placed whole on the ranks")
      ->capture_default_str();
  opt->model.add_single_node_flags(*sub, "generate");
  sub->add_option("--speculative-algorithm", opt->speculative.algorithm, "EAGLE or NEXTN: draft with the MTP layer");
  sub->add_option("--speculative-draft-model-path", opt->model.draft_model_path,
                  "Draft (MTP) model made by export-nextn (default: the target's own MTP layer)");
  sub->add_option("--speculative-num-steps", opt->speculative.num_steps, "Draft steps per round (default 3)");
  sub->add_option("--speculative-eagle-topk", opt->speculative.eagle_topk, "Branches per draft step (default 1)");
  sub->add_option("--speculative-num-draft-tokens", opt->speculative.num_draft_tokens,
                  "Tokens verified per round (default num_steps + 1)");
  sub->callback([opt] { run(*opt); });
}

}  // namespace dsserve
