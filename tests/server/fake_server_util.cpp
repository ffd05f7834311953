// FakeEngine: scripted outputs, one token per event (see fake_server_util.h).
#include "fake_server_util.h"

#include "core/error.h"

namespace dsserve::test {

void FakeEngine::submit(GenerationRequest req, OutputCallback cb) {
  if (!submit_error.empty()) throw EngineError(submit_error_kind, submit_error);
  submitted.push_back(req);
  int n = std::min<int>(int(script.size()), req.sampling.max_new_tokens);
  for (int i = 0; i < n; ++i) {
    RequestOutput o;
    o.rid = req.rid;
    o.new_token_ids = {script[size_t(i)]};
    if (req.return_logprob) {
      o.output_token_logprobs = {{-0.5f, script[size_t(i)]}};
      o.output_top_logprobs = {std::vector<std::pair<float, int32_t>>{{-0.5f, script[size_t(i)]}, {-1.5f, 7}}};
    }
    if (i == 0 && req.return_logprob && req.logprob_start_len == 0) {  // the prompt's logprobs (echo)
      for (size_t k = 0; k < req.input_ids.size(); ++k) {
        o.input_token_logprobs.push_back({k == 0 ? std::nullopt : std::optional<float>(-1.0f), req.input_ids[k]});
        o.input_top_logprobs.push_back(std::nullopt);
      }
    }
    o.prompt_tokens = int(req.input_ids.size());
    o.completion_tokens = i + 1;
    o.cached_tokens = 1;
    if (i + 1 == n) {
      o.finished = true;
      o.finish_reason = finish_with_stop && n == int(script.size()) ? FinishReason{"stop", std::nullopt, 0, ""}
                                                                    : FinishReason{"length", std::nullopt, n, ""};
    }
    cb(std::move(o));
  }
}

}  // namespace dsserve::test
