// What the serving layer hands the engine (a tokenized request with its sampling parameters) and
// what comes back (per-request output events). Text never enters the engine: stop strings,
// detokenization and parsing stay in the text/server layers, which abort a request on a stop string.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace dsserve {

struct SamplingParams {
  float temperature = 1.0f;         // 0: greedy
  float top_p = 1.0f;
  int top_k = -1;                   // -1 or 0: all tokens
  float min_p = 0.0f;
  float frequency_penalty = 0.0f;   // OpenAI semantics, over generated tokens
  float presence_penalty = 0.0f;
  float repetition_penalty = 1.0f;  // CTRL/HF semantics, over prompt and generated tokens
  int max_new_tokens = 128;
  int min_new_tokens = 0;           // eos and stop tokens are suppressed until this many are generated
  std::vector<int32_t> stop_token_ids;
  bool ignore_eos = false;
  std::optional<uint64_t> seed;     // same seed, same output
  std::vector<std::pair<int32_t, float>> logit_bias;

  // The one range rule of every field (backend/sampling_math.h holds the ranges): throws
  // EngineError(InvalidRequest) whose message and field name `prefix + field`, e.g.
  // "'sampling_params.top_p' must be in (0, 1], found 1.5". vocab_size > 0 also checks the token
  // ids of logit_bias and stop_token_ids.
  void validate(int vocab_size = 0, const std::string& prefix = "") const;
};

class TokenConstraint;  // runtime/token_constraint.h

struct GenerationRequest {
  std::string rid;
  std::string client;               // who sent it (a connection): waiting requests are admitted
                                    // round-robin over clients, and a full queue still takes a
                                    // client below its fair share
  std::vector<int32_t> input_ids;
  SamplingParams sampling;
  bool return_logprob = false;
  int logprob_start_len = -1;       // first prompt position with input logprobs; -1: none
  int top_logprobs_num = 0;
  // Structured output: the grammar every generated token must follow (one per request; null: free).
  std::shared_ptr<TokenConstraint> constraint;
};

using TokenLogprob = std::pair<std::optional<float>, int32_t>;  // (logprob or null, token id)
using TopLogprobs = std::optional<std::vector<std::pair<float, int32_t>>>;

struct FinishReason {
  std::string type;                 // "length", "stop" or "abort"
  std::optional<int32_t> matched_token;
  int length = 0;                   // for "length"
  std::string message;              // for "abort"
};

// One event of a request: the tokens generated since the last event. The first event also carries
// the prompt's logprobs; the last has `finished` set.
struct RequestOutput {
  std::string rid;
  std::vector<int32_t> new_token_ids;
  std::vector<TokenLogprob> output_token_logprobs;   // for new_token_ids, when return_logprob
  std::vector<TopLogprobs> output_top_logprobs;
  std::vector<TokenLogprob> input_token_logprobs;    // first event only
  std::vector<TopLogprobs> input_top_logprobs;
  int prompt_tokens = 0;
  int completion_tokens = 0;        // total so far
  int cached_tokens = 0;            // prompt tokens served from the prefix cache
  int spec_verify_ct = 0;           // speculative verification forwards so far
  bool finished = false;
  std::optional<FinishReason> finish_reason;
};

using OutputCallback = std::function<void(RequestOutput)>;

}  // namespace dsserve
