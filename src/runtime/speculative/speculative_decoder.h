// The speculative step as the scheduler calls it (EAGLE with the checkpoint's MTP layer; see
// eagle.h for drafting and tree_verify.h for verification). After a prefill forward: the MTP
// layer's rows of the new tokens, and the first drafts of the requests whose prompt is complete.
// At decode: one target forward verifying every running request's draft tree, the target's choice
// at every row in one Backend::sample call, the acceptance walk, the cache moves of accepted nodes
// off the first chain, the MTP rows of the accepted tokens, and the next drafts.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "model/model_runner.h"
#include "runtime/batch_builder.h"
#include "runtime/speculative/eagle.h"
#include "runtime/token_choice.h"

namespace dsserve {

class SpeculativeDecoder {
 public:
  using Forward = std::function<ForwardOutput(const ForwardBatch&)>;
  // cache: the target's latent cache; mtp_cache: the MTP layer's (same pages), both allocated
  // through `model`; trash_slot: a slot no sequence reads.
  SpeculativeDecoder(ModelRunner& model, LatentCache& cache, LatentCache& mtp_cache, int page_size, int32_t trash_slot,
                     const SpeculativeOptions& opt);

  // Cache positions a request may touch beyond its tokens in one round.
  int64_t cache_margin() const { return drafter_.cache_margin(); }

  // After the prefill forward `fo` over `chunks` (batch[i]'s chunk is chunks[i]): MTP rows for every
  // new token, then drafts for the requests in `completed` (their first token chosen).
  void after_prefill(const std::vector<RequestState*>& batch, const std::vector<SequenceChunk>& chunks,
                     const ForwardOutput& fo, const std::vector<RequestState*>& completed);

  // What one verification emitted for a request: output_ids[first_new...], picked[k] the choice of
  // output_ids[first_new + k] (with its logprobs).
  struct Emitted {
    size_t first_new = 0;
    std::vector<SampledToken> picked;
  };
  // One round over `batch` (each holding cache room for cache_margin() more positions).
  std::vector<Emitted> verify(const std::vector<RequestState*>& batch, TokenChooser& chooser, const Forward& forward);

  int64_t verify_total() const { return verify_total_; }      // verifications (per request)
  int64_t accepted_total() const { return accepted_total_; }  // tokens they emitted

 private:
  ModelRunner& model_;
  LatentCache& cache_;
  int page_size_;
  int32_t trash_slot_;
  EagleWorker drafter_;
  int64_t verify_total_ = 0, accepted_total_ = 0;
};

}  // namespace dsserve
