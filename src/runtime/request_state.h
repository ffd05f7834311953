// The scheduler's view of one request while it lives: its tokens, its pages, where it is in the
// cache, its sampling state, and (with speculative decoding) its draft state.
#pragma once
#include <memory>
#include <optional>
#include <vector>

#include "runtime/page_pool.h"
#include "runtime/request.h"
#include "runtime/sampler.h"

namespace dsserve {

struct DraftState {
  // The draft tree of the next verification, parents before children: node i holds tokens[i], its
  // parent node parent[i] (-1: the request's last token, the root) and its depth (1 below the root).
  // A chain is the tree with parent[i] = i - 1.
  std::vector<int32_t> tokens, parent, depth;
  int verify_count = 0;                 // verification forwards so far (spec_verify_ct)
  int64_t accepted_total = 0;           // draft tokens accepted so far
};

struct RequestState {
  GenerationRequest g;
  OutputCallback cb;
  std::vector<int32_t> output_ids;
  SequencePages pages;
  int64_t kv_len = 0;         // tokens of fill() whose latents are in the cache
  int64_t discard_before = 0; // positions below this are recomputed without writing (prefix reuse)
  int cached_tokens = 0;      // prompt tokens reused from the prefix cache (first admission)
  bool admitted_once = false;
  bool sent_input_logprobs = false;
  std::optional<SamplingState> sampling;  // from its first token choice on
  bool grammar_ended = false;             // its constraint took an end token (runtime/constrained_rows.h)
  std::vector<TokenLogprob> input_lp;  // input logprobs gathered over prefill chunks
  std::vector<TopLogprobs> input_top;
  DraftState draft;

  // Tokens whose latents the sequence needs: the prompt, then every output token fed back.
  std::vector<int32_t> fill() const {
    std::vector<int32_t> f = g.input_ids;
    f.insert(f.end(), output_ids.begin(), output_ids.end());
    return f;
  }
  int64_t fill_len() const { return int64_t(g.input_ids.size() + output_ids.size()); }
  int64_t lp_start() const { return g.return_logprob && g.logprob_start_len >= 0 ? g.logprob_start_len : -1; }
};

using RequestPtr = std::shared_ptr<RequestState>;

}  // namespace dsserve
