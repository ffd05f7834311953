// One rank's share of a model replica: the forward (DeepseekV3Model) with the latent caches it runs
// over, its recorded forwards (decode, EAGLE's verify, the MTP draft step; model/decode_graphs.h) and
// the final hidden states of its last target and MTP forwards, which the next draft step gathers on
// the device (HiddenRows). A runner (parallel/replica_runner.h, parallel/data_parallel_model.h)
// drives one per rank, each on its own thread with its device bound.
#pragma once
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "model/decode_graphs.h"
#include "model/deepseek_v3.h"
#include "model/model_runner.h"

namespace dsserve {

class RankModel {
 public:
  RankModel(const ModelConfig& cfg, Backend& backend, WeightSource& weights, int64_t context_len,
            const LoadOptions& opt);
  ~RankModel();

  DeepseekV3Model& model() { return *model_; }
  const DeepseekV3Model& model() const { return *model_; }
  Backend& backend() { return be_; }
  // The target's latent cache, or the MTP layer's (mtp), once allocated.
  LatentCache& cache(bool mtp = false) { return mtp ? mtp_cache_ : cache_; }
  void allocate_cache(int64_t num_pages, int page_size, bool mtp, std::optional<DType> dtype);

  // One forward over the target's cache: a recorded decode or verify forward when one covers the
  // batch (decode only without data-parallel attention, whose rounds choose the size), else eager.
  ForwardOutput forward(const ForwardBatch& batch);
  // Data-parallel attention's eager round (DeepseekV3Model::forward_all_groups).
  ForwardOutput forward_all_groups(const ForwardBatch& batch, std::span<const int32_t> group_tokens);
  // The MTP module over the MTP cache, its previous hidden states gathered from this rank's last
  // target or MTP forward; replays a recorded draft step when one covers the batch.
  ForwardOutput forward_mtp(const ForwardBatch& batch, const HiddenRows& prev_hidden);
  // Moves cache slots src[i] -> dst[i] in every layer of the target's (or the MTP layer's) cache.
  void move_cache_slots(bool mtp, const std::vector<int32_t>& src, const std::vector<int32_t>& dst);

  // Records every kind of `plan` over this rank's caches (verify when plan.verify_tokens > 1, the
  // draft step when the MTP cache exists). False, recording nothing, when the backend cannot record.
  bool capture_graphs(const GraphPlan& plan);
  RecordedGraphs recorded_graphs() const;
  // Data-parallel decode: the recorded size a decode batch of this group replays at (0: not
  // recordable: the round runs eagerly; an empty batch takes the smallest), and the replay of
  // `batch` padded to batch_size.
  int decode_graph_size(const ForwardBatch& batch) const;
  ForwardOutput replay_decode_graph(const ForwardBatch& batch, int batch_size);

 private:
  Backend& be_;
  std::unique_ptr<DeepseekV3Model> model_;
  LatentCache cache_, mtp_cache_;
  std::unique_ptr<DecodeGraphs> decode_, verify_, draft_;
  Tensor last_hidden_[2];  // the last forward's and forward_mtp's final hidden states (HiddenRows::Source)
};

}  // namespace dsserve
