// What the scheduler runs a forward through: one model replica, on one device (DeepseekV3Model)
// or split over several GPUs of this process (TensorParallelModel). Outputs live on backend().
#pragma once
#include <vector>

#include "backend/backend.h"
#include "core/error.h"
#include "io/model_config.h"
#include "model/forward_batch.h"

namespace dsserve {

class DeepseekV3Model;

struct ForwardOutput {
  Tensor logits;  // [logit_rows, vocab] float (backend activation dtype may differ: read with to_host_f32)
  Tensor hidden;  // [T, hidden] final hidden states after the final norm (what MTP consumes)
};

class ModelRunner {
 public:
  virtual ~ModelRunner() = default;
  virtual const ModelConfig& config() const = 0;
  virtual int64_t context_len() const = 0;
  virtual Backend& backend() = 0;  // where forward's outputs live
  // cache: the latent cache the caller allocated through this runner (a tensor-parallel runner
  // keeps one per rank and hands out rank 0's).
  // The outputs stay valid until the next forward.
  virtual ForwardOutput forward(const ForwardBatch& batch, LatentCache& cache) = 0;
  // Records the decode forward over `cache` at these batch sizes (CUDA graphs; see
  // model/decode_graphs.h) so later decode batches replay it. trash_slot: a slot no sequence reads.
  // Returns false, recording nothing, when the backend cannot record forwards.
  virtual bool capture_decode_graphs(LatentCache& cache, int32_t trash_slot, const std::vector<int>& batch_sizes) = 0;
  // The recorded batch sizes (empty: decode runs eagerly) and the seconds the recording took.
  virtual std::vector<int> decode_graph_sizes() const = 0;
  virtual double decode_graph_capture_seconds() const = 0;
  // Decoder layers run so far (over all forwards) plus the backend's own count (Backend::progress),
  // readable from any thread: a long forward's sign of life for the watchdog. 0 when the runner
  // does not count.
  virtual int64_t progress() const { return 0; }
  // Non-empty when a device of this runner can run nothing more (see Backend::fatal_error).
  virtual std::string device_fatal_error() = 0;
  // Data-parallel attention: the scheduler says whether it has work (true: a forward of its will
  // follow; false: it is about to wait for requests, or its last step ran no forward), so that the
  // lockstep rounds of the attention groups do not wait for it. Runners of one replica ignore it.
  virtual void set_has_work(bool has_work) { (void)has_work; }
  // The model itself when it runs on one device (its CUDA graphs for verification and drafting);
  // nullptr otherwise.
  virtual DeepseekV3Model* single_device() { return nullptr; }

  // Speculative decoding (EAGLE with the MTP layer). has_mtp: whether the MTP layer is loaded.
  virtual bool has_mtp() const { return false; }
  // The MTP module over `batch` (see DeepseekV3Model::forward_mtp); prev_hidden: float32 [T, hidden]
  // on backend() or on the host; mtp_cache: the MTP cache allocated through this runner.
  virtual ForwardOutput forward_mtp(const ForwardBatch& batch, const Tensor& prev_hidden, LatentCache& mtp_cache) {
    (void)batch, (void)prev_hidden, (void)mtp_cache;
    fail("this model runner has no MTP layer");
  }
  // Moves latent-cache slots, src[i] to dst[i] in order, in every layer of `cache` (allocated
  // through this runner) on every device that holds a copy of it.
  virtual void move_cache_slots(LatentCache& cache, const std::vector<int32_t>& src, const std::vector<int32_t>& dst) {
    Backend& be = backend();
    Tensor s = be.upload_i32(src, {int64_t(src.size())}), d = be.upload_i32(dst, {int64_t(dst.size())});
    be.move_cache_slots(cache.data, s, d);
  }
};

}  // namespace dsserve
