// What the scheduler runs a forward through: one model replica over this process's ranks, one
// device or several (parallel/replica_runner.h), over several nodes (MultiNodeModel), or one
// attention group of a data-parallel model. Outputs live on backend().
#pragma once
#include <optional>
#include <vector>

#include "backend/backend.h"
#include "core/error.h"
#include "io/model_config.h"
#include "model/forward_batch.h"

namespace dsserve {

struct ForwardOutput {
  Tensor logits;  // [logit_rows, vocab] float (backend activation dtype may differ: read with to_host_f32)
  Tensor hidden;  // [T, hidden] final hidden states after the final norm (what MTP consumes)
};

// The CUDA graphs a runner records: plain decode at decode_sizes, EAGLE's verify forward
// (verify_tokens per sequence, tree masks) at verify_sizes, one MTP draft step at mtp_sizes.
// trash_slot: a cache slot no sequence reads (where padding rows write).
struct GraphPlan {
  int32_t trash_slot = 0;
  std::vector<int> decode_sizes, verify_sizes, mtp_sizes;
  int verify_tokens = 0;
};

// The batch sizes recorded of each kind, the seconds the recording took, and the replays so far of
// each kind (rank 0's where the runner has several).
struct RecordedGraphs {
  std::vector<int> decode, verify, mtp;
  double capture_s = 0;
  int64_t decode_replays = 0, verify_replays = 0, mtp_replays = 0;
};

// The previous hidden states of an MTP forward, left on the device where they were computed: rows
// of the final hidden states of the runner's last target forward or of its last MTP forward
// (every rank gathers from its own copy). Row t of the MTP batch reads rows[t].
struct HiddenRows {
  enum Source { Target, Draft } source = Target;
  std::vector<int32_t> rows;
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
  // A latent cache of num_pages pages for the target's layers (mtp: the MTP layer's) on every device
  // of the runner, of element type dtype (unset: the backend's activation type): the handle to pass
  // to forward, forward_mtp and capture_graphs.
  virtual LatentCache make_cache(int64_t num_pages, int page_size, bool mtp, std::optional<DType> dtype) = 0;
  // Records the forwards of `plan` over `cache` and `mtp_cache` (allocated through this runner; the
  // MTP cache may be empty when the plan has no draft step) as CUDA graphs (model/decode_graphs.h)
  // on every device of the runner, so later batches of those shapes replay them. Returns false,
  // recording nothing, when the backend cannot record forwards.
  virtual bool capture_graphs(const GraphPlan& plan, LatentCache& cache, LatentCache& mtp_cache) = 0;
  // What is recorded (empty sizes: that kind runs eagerly).
  virtual RecordedGraphs recorded_graphs() const = 0;
  // Waits for the device work of every device of the runner.
  virtual void synchronize() { backend().synchronize(); }
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
  // Speculative decoding (EAGLE with the MTP layer). has_mtp: whether the MTP layer is loaded.
  virtual bool has_mtp() const { return false; }
  // The MTP module over `batch` (see DeepseekV3Model::forward_mtp), its previous hidden states
  // gathered on the device; mtp_cache: the MTP cache allocated through this runner.
  virtual ForwardOutput forward_mtp(const ForwardBatch& batch, const HiddenRows& prev_hidden, LatentCache& mtp_cache) {
    (void)batch, (void)prev_hidden, (void)mtp_cache;
    fail("this model runner has no MTP layer");
  }
  // Moves latent-cache slots, src[i] to dst[i] in order, in every layer of `cache` (allocated
  // through this runner) on every device that holds a copy of it (speculative decoding's accepted
  // tokens; runners without speculative decoding refuse it).
  virtual void move_cache_slots(LatentCache& cache, const std::vector<int32_t>& src, const std::vector<int32_t>& dst) {
    (void)cache, (void)src, (void)dst;
    fail("this model runner does not move cache slots (speculative decoding runs on one node without "
         "data-parallel attention)");
  }
};

}  // namespace dsserve
