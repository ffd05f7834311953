// `dsserve generate`: one request through the engine, printed as SGLang's /generate response.
#include <nlohmann/json.hpp>

#include <iostream>

#include "cli/commands.h"
#include "cli/model_options.h"
#include "core/error.h"
#include "runtime/generator.h"

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
  int chunked_prefill_size = 0;
  bool ignore_eos = false;
};

std::vector<int32_t> parse_ids(const std::string& s) {
  std::vector<int32_t> ids;
  size_t i = 0;
  while (i < s.size()) {
    size_t j = s.find(',', i);
    if (j == std::string::npos) j = s.size();
    std::string tok = s.substr(i, j - i);
    try {
      size_t used = 0;
      long v = std::stol(tok, &used);
      DS_CHECK(used == tok.size(), "");
      ids.push_back(int32_t(v));
    } catch (...) {
      fail("--input-ids: '{}' is not an integer (expected a comma-separated list such as 1,2,3)", tok);
    }
    i = j + 1;
  }
  return ids;
}

nlohmann::json entry(const TokenLogprob& lp) {
  return nlohmann::json::array({lp.first ? nlohmann::json(*lp.first) : nlohmann::json(nullptr), lp.second, nullptr});
}

nlohmann::json tops(const std::optional<std::vector<std::pair<float, int32_t>>>& t) {
  if (!t) return nullptr;
  nlohmann::json a = nlohmann::json::array();
  for (auto& [lp, id] : *t) a.push_back(nlohmann::json::array({lp, id, nullptr}));
  return a;
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
  sub->add_option("--chunked-prefill-size", opt->chunked_prefill_size, "Prefill chunk in tokens (0: whole prompt)");
  sub->add_flag("--ignore-eos", opt->ignore_eos);
  sub->callback([opt] {
    GenerateRequest req;
    req.input_ids = parse_ids(opt->input_ids);
    req.max_new_tokens = opt->max_new_tokens;
    req.sampling = {opt->temperature, opt->model.random_seed};
    req.return_logprob = opt->return_logprob;
    req.logprob_start_len = opt->return_logprob && opt->logprob_start_len < 0 ? 0 : opt->logprob_start_len;
    req.top_logprobs_num = opt->top_logprobs_num;
    req.chunk_size = opt->chunked_prefill_size;
    req.ignore_eos = opt->ignore_eos;
    if (opt->model.max_total_tokens == 0)
      opt->model.max_total_tokens = int64_t(req.input_ids.size()) + std::max(0, req.max_new_tokens);
    LoadedModel m = load_model(opt->model);
    Generator gen(*m.model, m.cache, *m.pool);
    GenerateResult r = gen.generate(req);

    nlohmann::json meta = {{"prompt_tokens", req.input_ids.size()},
                           {"completion_tokens", r.output_ids.size()},
                           {"finish_reason", r.finish_type == "length"
                                                 ? nlohmann::json{{"type", "length"}, {"length", r.finish_value}}
                                                 : nlohmann::json{{"type", "stop"}, {"matched", r.finish_value}}}};
    if (req.return_logprob) {
      nlohmann::json itl = nlohmann::json::array(), itop = nlohmann::json::array(), otl = nlohmann::json::array(),
                     otop = nlohmann::json::array();
      for (auto& e : r.input_token_logprobs) itl.push_back(entry(e));
      for (auto& e : r.input_top_logprobs) itop.push_back(tops(e));
      for (auto& e : r.output_token_logprobs) otl.push_back(entry(e));
      for (auto& e : r.output_top_logprobs) otop.push_back(tops(e));
      meta["input_token_logprobs"] = itl;
      meta["input_top_logprobs"] = itop;
      meta["output_token_logprobs"] = otl;
      meta["output_top_logprobs"] = otop;
    }
    std::cout << nlohmann::json{{"output_ids", r.output_ids}, {"meta_info", meta}}.dump() << std::endl;
  });
}

}  // namespace dsserve
