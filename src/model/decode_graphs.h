// Decode, verify and draft forwards replayed from captured graphs (CUDA graphs). For each recorded
// batch size, the forward of q new tokens per sequence through absorbed attention is recorded once
// over fixed device buffers (token ids, positions, cache slots, sequence lengths, page table, and for
// speculative verification the per-sequence [q, q] tree masks; for the MTP draft step the previous
// hidden states and the cache's key shift). q = 1 is plain decode; q = num_draft_tokens with tree
// masks is EAGLE's verify forward; q = 1 with hidden states over the MTP cache is one draft step. A batch of B sequences is padded to
// the smallest recorded size >= B: padding rows read and write only the trash page. Replaying
// copies the batch into those buffers and launches the graph; nothing is allocated and the host
// does not wait for the device.
#pragma once
#include <functional>
#include <memory>
#include <vector>

#include "backend/backend.h"
#include "model/forward_batch.h"
#include "model/model_runner.h"

namespace dsserve {

// What one set of recorded forwards takes per sequence.
struct DecodeGraphShape {
  int tokens_per_seq = 1;    // q
  bool tree = false;         // batches carry tree masks (verify) or are causal (q = 1)
  int key_shift = 0;         // 1 for the MTP cache
  int64_t hidden_cols = 0;   // > 0: each row also takes a hidden state of this width (activation dtype)
};

class DecodeGraphs {
 public:
  // The body of a forward over all rows of `ab` (token ids `ids`; `hidden`: the rows' previous
  // hidden states when the graphs take them, else empty): what gets recorded.
  using Body = std::function<ForwardOutput(const AttentionBatch& ab, const Tensor& ids, const Tensor& hidden)>;

  // cache: the latent cache the graphs read and write (its address is recorded); trash_slot: the
  // first slot of a page no sequence reads; context_len bounds positions and sequence lengths.
  DecodeGraphs(Backend& be, const LatentCache& cache, int32_t trash_slot, int64_t context_len,
               std::vector<int> batch_sizes, const Body& body, DecodeGraphShape shape = DecodeGraphShape());

  // Whether `b` is a batch this can replay over `cache`.
  bool covers(const ForwardBatch& b, const LatentCache& cache) const;
  // Replays the graph of the smallest recorded size >= b.num_seqs(), or of batch_size when given (a
  // recorded size >= B; B may then be 0: all rows padding); `hidden` ([T, hidden_cols] of the
  // backend's activation dtype, on the device) when the graphs take hidden states. The outputs'
  // first B * q rows are b's; they stay valid until the next replay.
  ForwardOutput replay(const ForwardBatch& b, int batch_size = 0, const Tensor* hidden = nullptr);
  // The recorded size a batch of B sequences replays through (0: none holds it).
  int size_for(int num_seqs) const;

  const std::vector<int>& batch_sizes() const { return sizes_; }
  int tokens_per_seq() const { return q_; }
  double capture_seconds() const { return capture_s_; }
  int64_t replays() const { return replays_; }

 private:
  struct Graph {
    int batch_size = 0;
    std::unique_ptr<CapturedForward> forward;
    ForwardOutput out;
  };
  AttentionBatch batch_view(int bs) const;

  Backend& be_;
  const void* cache_data_ = nullptr;
  int page_size_ = 0;
  int32_t trash_slot_ = 0;
  int64_t context_len_ = 0;
  int q_ = 1;
  bool tree_ = false;
  int key_shift_ = 0;
  int64_t hidden_cols_ = 0;
  int max_pages_ = 0;  // page-table width of the recorded forwards
  std::vector<int> sizes_;
  std::vector<Graph> graphs_;
  // Fixed inputs, sized for the largest batch: a recorded forward of size bs reads their first rows.
  Tensor ids_, positions_, out_slots_, query_start_, seq_lens_, key_start_, page_table_;
  Tensor tree_mask_, mask_start_, mask_cols_;  // tree: [max_bs * q * q], [max_bs + 1], [max_bs]
  Tensor hidden_;                              // hidden_cols > 0: [max_bs * q, hidden_cols], activation dtype
  std::vector<int32_t> h_pages_;  // host staging for the page table
  double capture_s_ = 0;
  int64_t replays_ = 0;
};

// Batch sizes recorded by default, up to max_bs (which is always included): 1, 2, 4, 8, 12, 16,
// then steps of 8 to 256 and steps of 32 beyond, as SGLang's list does.
std::vector<int> default_cuda_graph_batch_sizes(int max_bs);

}  // namespace dsserve
