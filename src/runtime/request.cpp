// SamplingParams::validate: the range of every sampling field, checked once for every route and
// the engine (see request.h).
#include "runtime/request.h"

#include "backend/sampling_math.h"
#include "runtime/engine_error.h"

namespace dsserve {

void SamplingParams::validate(int vocab_size, const std::string& prefix) const {
  auto bad = [&](const char* field, const std::string& rule) {
    throw EngineError(EngineErrorKind::InvalidRequest, fmt::format("'{}{}' {}", prefix, field, rule),
                      prefix + field);
  };
  if (!sampling::valid_temperature(temperature))
    bad("temperature", fmt::format("must be a non-negative number, found {}", temperature));
  if (!sampling::valid_top_p(top_p)) bad("top_p", fmt::format("must be in (0, 1], found {}", top_p));
  if (!sampling::valid_top_k(top_k)) bad("top_k", fmt::format("must be -1 (all tokens) or positive, found {}", top_k));
  if (!sampling::valid_min_p(min_p)) bad("min_p", fmt::format("must be in [0, 1], found {}", min_p));
  if (!sampling::valid_penalty(frequency_penalty))
    bad("frequency_penalty", fmt::format("must be in [-2, 2], found {}", frequency_penalty));
  if (!sampling::valid_penalty(presence_penalty))
    bad("presence_penalty", fmt::format("must be in [-2, 2], found {}", presence_penalty));
  if (!sampling::valid_repetition_penalty(repetition_penalty))
    bad("repetition_penalty", fmt::format("must be in (0, 2], found {}", repetition_penalty));
  if (max_new_tokens < 0) bad("max_new_tokens", fmt::format("must be non-negative, found {}", max_new_tokens));
  if (min_new_tokens < 0) bad("min_new_tokens", fmt::format("must be non-negative, found {}", min_new_tokens));
  for (auto& [id, b] : logit_bias) {
    if (!sampling::valid_logit_bias(b))
      bad("logit_bias", fmt::format("holds bias {} for token {} (expected a bias in [-100, 100])", b, id));
    if (id < 0 || (vocab_size > 0 && id >= vocab_size))
      bad("logit_bias", fmt::format("holds token {}, outside the vocabulary [0, {})", id, vocab_size));
  }
  for (int32_t id : stop_token_ids)
    if (id < 0 || (vocab_size > 0 && id >= vocab_size))
      bad("stop_token_ids", fmt::format("holds token {}, outside the vocabulary [0, {})", id, vocab_size));
}

}  // namespace dsserve
