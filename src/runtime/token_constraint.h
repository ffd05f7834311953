// What the scheduler asks of a constrained request (structured output): which tokens may come
// next, whether the text may end here, taking the chosen token, and undoing tokens (speculative
// drafts). The grammar behind it lives outside the runtime (src/grammar, wired by the server);
// end-of-text tokens (eos, stop_token_ids) are the scheduler's: allowed where can_end() says so.
#pragma once
#include <cstdint>
#include <span>

namespace dsserve {

class TokenConstraint {
 public:
  virtual ~TokenConstraint() = default;
  // Writes the tokens that may come next as bits (bit t % 32 of word t / 32) over the model's
  // vocabulary. Returns false when nothing constrains this step (every token allowed; `allowed`
  // left as it was), e.g. while a reasoning model thinks.
  virtual bool fill_next_tokens(std::span<uint32_t> allowed) = 0;
  virtual bool can_end() const = 0;
  // The text may end here and nothing else may follow.
  virtual bool is_complete() const = 0;
  // Takes the chosen token; false (and no change) when it is not allowed.
  virtual bool accept(int32_t token) = 0;
  // Undoes the last `tokens` accepted tokens.
  virtual void rollback(int tokens) = 0;
};

}  // namespace dsserve
