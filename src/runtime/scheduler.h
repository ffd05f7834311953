// The engine implementation: one scheduler thread running continuous batching over the paged
// latent cache (chunked prefill, admission against free pages, retraction, radix prefix cache,
// fcfs or longest-prefix-match order) and the sampler, on one model replica.
#pragma once
#include <memory>
#include <string>

#include "model/deepseek_v3.h"
#include "runtime/engine.h"
#include "runtime/page_pool.h"
#include "runtime/speculative/eagle.h"

namespace dsserve {

struct SchedulerOptions {
  int max_running_requests = 256;
  int chunked_prefill_size = 8192;   // tokens of one prefill forward; <= 0: no chunking
  int max_prefill_tokens = 16384;    // prompt tokens admitted per prefill forward
  std::string schedule_policy = "fcfs";  // fcfs | lpm
  bool disable_radix_cache = false;
  int max_queued_requests = 4096;    // beyond this, submit() throws QueueFull (see check_queue_room)
  uint64_t random_seed = 0;          // seeds requests that bring no seed of their own
  SpeculativeOptions speculative;    // EAGLE with the MTP layer when enabled
  LatentCache* mtp_cache = nullptr;  // the MTP layer's cache (same pages as the target's), when speculative
  // Decode's attention: absorbed (MLA), or expanded as prefill's (--disable-mla; not with speculative decoding).
  AttentionMode decode_attention = AttentionMode::Absorbed;
  int decode_log_interval = 0;       // log decode statistics every this many decode steps (0: never)
};

// Both latent caches need one page beyond the pool's: the trash page, where recomputed tokens of a
// reused prefix write what no sequence reads.
inline int64_t cache_pages_for(const PagePool& pool) { return pool.num_pages() + 1; }

// The model, caches and pool must outlive the engine.
std::unique_ptr<Engine> create_engine(ModelRunner& model, LatentCache& cache, PagePool& pool,
                                      const SchedulerOptions& opt);

}  // namespace dsserve
