// The engine of data-parallel attention (--enable-dp-attention --dp-size D): D engines, one per
// attention group (each a scheduler with its own batch, page pool and prefix cache), behind the one
// Engine the server sees. Requests go to the groups round-robin (SGLang's default load balancing);
// an abort goes to the group holding the request; stats are summed over the groups; flush_cache
// and shutdown reach every group.
#pragma once
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "runtime/engine.h"

namespace dsserve {

class DataParallelEngine final : public Engine {
 public:
  explicit DataParallelEngine(std::vector<std::unique_ptr<Engine>> groups);
  ~DataParallelEngine() override;

  void submit(GenerationRequest req, OutputCallback on_output) override;
  void abort(const std::string& rid) override;
  void flush_cache() override;
  EngineStats stats() const override;  // counts and totals summed; current_step_s the longest
  int64_t context_length() const override { return groups_[0]->context_length(); }
  int vocab_size() const override { return groups_[0]->vocab_size(); }
  int64_t max_queued_requests() const override;  // summed over the groups
  void shutdown() override;

  int groups() const { return int(groups_.size()); }
  // The group holding a request still in flight (-1: none); tests read where requests went.
  int group_of(const std::string& rid) const;

 private:
  std::vector<std::unique_ptr<Engine>> groups_;
  mutable std::mutex mu_;
  struct InFlight {
    int group = 0;
    uint64_t serial = 0;  // which submission of the rid owns the entry
  };
  std::unordered_map<std::string, InFlight> in_flight_;
  uint64_t submissions_ = 0;
  size_t next_ = 0;  // round-robin position
};

}  // namespace dsserve
