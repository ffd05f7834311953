// Cross-process CPU collectives (see multi_node_cpu_group.h): a breakable barrier among this
// node's rank threads, whose last arrival runs the exchange with the other nodes.
#include "parallel/multi_node_cpu_group.h"

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <mutex>

#include "backend/cpu/cpu_backend.h"
#include "core/error.h"

namespace dsserve {

namespace {

// What this node's ranks share: a barrier that a failure breaks for good, the posted buffers and
// the gathered values of every global rank.
class NodeRanks {
 public:
  NodeRanks(std::shared_ptr<NodeExchange> exchange, double timeout_s)
      : exchange_(std::move(exchange)), timeout_s_(timeout_s), buffers_(size_t(exchange_->ranks_per_node())),
        sizes_(size_t(exchange_->ranks_per_node())) {}

  // Posts rank `local`'s buffer; returns every global rank's values ([world * n]) once all are in.
  // Callers must then call done() before the next collective.
  const std::vector<float>& gather(int local, const float* x, int64_t n, const char* op) {
    buffers_[size_t(local)] = x;
    sizes_[size_t(local)] = n;
    arrive_and_wait(local, [&] {
      for (size_t l = 0; l < sizes_.size(); ++l)
        DS_CHECK(sizes_[l] == n, "{}: local rank {} has {} values, local rank {} has {}", op, l, sizes_[l], local, n);
      exchange_->all_gather(buffers_, n, all_);
    });
    return all_;
  }
  void done(int local) { arrive_and_wait(local, {}); }

  std::string broken() {
    std::lock_guard lk(mu_);
    return broken_;
  }
  int world() const { return exchange_->world(); }
  int first_rank() const { return exchange_->node_rank() * exchange_->ranks_per_node(); }

 private:
  // Waits for all of this node's ranks; the last to arrive runs `last` first. An exception there,
  // or a rank that never arrives within timeout_s, breaks the group for every rank.
  void arrive_and_wait(int local, const std::function<void()>& last) {
    std::unique_lock lk(mu_);
    if (!broken_.empty()) fail("{}", broken_);
    const uint64_t phase = phase_;
    if (++arrived_ == int(buffers_.size())) {
      arrived_ = 0;
      if (last) {
        lk.unlock();
        try {
          last();
        } catch (const std::exception& e) {
          lk.lock();
          broken_ = e.what();
          cv_.notify_all();
          throw;
        }
        lk.lock();
      }
      ++phase_;
      cv_.notify_all();
      return;
    }
    // The last arrival may itself wait up to timeout_s for the other nodes: allow for both.
    const bool ok = cv_.wait_for(lk, std::chrono::duration<double>(2 * timeout_s_),
                                 [&] { return phase_ != phase || !broken_.empty(); });
    if (!ok)
      broken_ = fmt::format("global rank {} waited {} s (twice --dist-timeout) at a collective for the other ranks "
                            "of its node", first_rank() + local, 2 * timeout_s_);
    if (!broken_.empty()) fail("{}", broken_);
  }

  std::shared_ptr<NodeExchange> exchange_;
  double timeout_s_;
  std::mutex mu_;
  std::condition_variable cv_;
  int arrived_ = 0;
  uint64_t phase_ = 0;
  std::string broken_;
  std::vector<const float*> buffers_;
  std::vector<int64_t> sizes_;
  std::vector<float> all_;
};

class CpuNodeGroupBackend final : public CpuBackend {
 public:
  CpuNodeGroupBackend(std::shared_ptr<NodeRanks> ranks, int local) : ranks_(std::move(ranks)), local_(local) {}

  void all_reduce_sum(Tensor& x) override {
    DS_CHECK(x.dtype() == DType::F32 && x.is_contiguous(), "all_reduce_sum: expected a contiguous F32 tensor, found {} {}",
             dtype_name(x.dtype()), x.shape().str());
    const int64_t n = x.numel();
    const std::vector<float>& all = ranks_->gather(local_, x.ptr<float>(), n, "all_reduce_sum");
    // Global rank order from zero, as the in-process group sums: the same bits on every rank.
    sum_.assign(size_t(n), 0.0f);
    for (int r = 0; r < ranks_->world(); ++r) {
      const float* src = all.data() + size_t(r) * size_t(n);
      for (int64_t i = 0; i < n; ++i) sum_[size_t(i)] += src[i];
    }
    ranks_->done(local_);
    std::memcpy(x.ptr<float>(), sum_.data(), sum_.size() * sizeof(float));
  }

  Tensor all_gather_cols(const Tensor& x) override {
    DS_CHECK(x.dtype() == DType::F32 && x.is_contiguous() && x.ndim() == 2,
             "all_gather_cols: expected a contiguous F32 [R, C] tensor, found {} {}", dtype_name(x.dtype()),
             x.shape().str());
    const int64_t R = x.size(0), C = x.size(1), world = ranks_->world();
    const std::vector<float>& all = ranks_->gather(local_, x.ptr<float>(), x.numel(), "all_gather_cols");
    Tensor out = Tensor::zeros_host(DType::F32, {R, world * C});
    for (int64_t r = 0; r < world; ++r)
      for (int64_t i = 0; i < R; ++i)
        std::memcpy(out.ptr<float>() + i * world * C + r * C, all.data() + r * R * C + i * C, size_t(C) * sizeof(float));
    ranks_->done(local_);
    return out;
  }

  std::string fatal_error() override { return ranks_->broken(); }

 private:
  std::shared_ptr<NodeRanks> ranks_;
  int local_;
  std::vector<float> sum_;
};

}  // namespace

std::vector<std::unique_ptr<Backend>> create_multi_node_cpu_backends(std::shared_ptr<NodeExchange> exchange,
                                                                     double timeout_s) {
  auto ranks = std::make_shared<NodeRanks>(exchange, timeout_s);
  std::vector<std::unique_ptr<Backend>> out;
  for (int l = 0; l < exchange->ranks_per_node(); ++l) out.push_back(std::make_unique<CpuNodeGroupBackend>(ranks, l));
  return out;
}

}  // namespace dsserve
