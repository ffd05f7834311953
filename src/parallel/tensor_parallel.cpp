// Tensor-parallel runner (see tensor_parallel.h): rank threads, per-rank loading, and forwards
// launched on all ranks together.
#include "parallel/tensor_parallel.h"

#include <mutex>

#include "core/error.h"
#include "model/weight_source.h"

namespace dsserve {

RankThreads::RankThreads(int world) {
  DS_CHECK(world >= 1, "RankThreads: world size {}", world);
  for (int r = 0; r < world; ++r) workers_.push_back(std::make_unique<Worker>());
  for (int r = 0; r < world; ++r) workers_[size_t(r)]->thread = std::thread([this, r] { loop(r); });
}

RankThreads::~RankThreads() {
  for (auto& w : workers_) {
    std::lock_guard<std::mutex> lock(w->mu);
    w->stop = true;
    w->cv.notify_all();
  }
  for (auto& w : workers_) w->thread.join();
}

void RankThreads::loop(int rank) {
  Worker& w = *workers_[size_t(rank)];
  uint64_t seen = 0;
  for (;;) {
    const std::function<void(int)>* job = nullptr;
    {
      std::unique_lock<std::mutex> lock(w.mu);
      w.cv.wait(lock, [&] { return w.stop || w.generation != seen; });
      if (w.stop) return;
      seen = w.generation;
      job = w.job;
    }
    std::exception_ptr err;
    try {
      (*job)(rank);
    } catch (...) {
      err = std::current_exception();
    }
    std::lock_guard<std::mutex> lock(w.mu);
    w.error = err;
    w.done = seen;
    w.cv.notify_all();
  }
}

void RankThreads::run_all(const std::function<void(int)>& job) {
  for (auto& w : workers_) {
    std::lock_guard<std::mutex> lock(w->mu);
    w->job = &job;
    ++w->generation;
    w->cv.notify_all();
  }
  std::exception_ptr first;
  for (auto& w : workers_) {
    std::unique_lock<std::mutex> lock(w->mu);
    w->cv.wait(lock, [&] { return w->done == w->generation; });
    if (w->error && !first) first = w->error;
    w->error = nullptr;
  }
  if (first) std::rethrow_exception(first);
}

TensorParallelModel::TensorParallelModel(const ModelConfig& cfg, std::vector<std::unique_ptr<Backend>> backends,
                                         WeightSource& weights, int64_t context_len, const LoadOptions& opt,
                                         RankSpan span)
    : first_rank_(span.first), threads_(int(backends.size())) {
  const int local_world = int(backends.size());
  const int world = span.world > 0 ? span.world : local_world;
  DS_CHECK(span.first >= 0 && span.first + local_world <= world, "TensorParallelModel: ranks {}..{} of a group of {}",
           span.first, span.first + local_world - 1, world);
  ranks_.resize(size_t(local_world));
  for (int r = 0; r < local_world; ++r) ranks_[size_t(r)].backend = std::move(backends[size_t(r)]);
  std::mutex load_mu;  // one rank loads at a time: the weight source is not thread-safe
  threads_.run_all([&](int r) {
    Rank& k = ranks_[size_t(r)];
    k.backend->bind_thread();
    LoadOptions lo = opt;
    lo.shard = ShardSpec{span.first + r, world, opt.shard.expert_parallel};
    {
      std::lock_guard<std::mutex> lock(load_mu);
      k.model = std::make_unique<DeepseekV3Model>(cfg, *k.backend, weights, context_len, lo);
    }
    k.backend->synchronize();
  });
}

LatentCache& TensorParallelModel::allocate_cache(int64_t num_pages, int page_size, std::optional<DType> dtype) {
  threads_.run_all([&](int r) {
    Rank& k = ranks_[size_t(r)];
    k.backend->bind_thread();
    k.cache = k.model->allocate_cache(num_pages, page_size, false, dtype);
    k.backend->synchronize();
  });
  return ranks_[0].cache;
}

LatentCache& TensorParallelModel::allocate_mtp_cache(int64_t num_pages, int page_size, std::optional<DType> dtype) {
  threads_.run_all([&](int r) {
    Rank& k = ranks_[size_t(r)];
    k.backend->bind_thread();
    k.mtp_cache = k.model->allocate_cache(num_pages, page_size, /*mtp=*/true, dtype);
    k.backend->synchronize();
  });
  return ranks_[0].mtp_cache;
}

ForwardOutput TensorParallelModel::forward_mtp(const ForwardBatch& batch, const Tensor& prev_hidden,
                                               LatentCache& mtp_cache) {
  DS_CHECK(mtp_cache.data.data() == ranks_[0].mtp_cache.data.data(),
           "TensorParallelModel::forward_mtp: pass the cache from allocate_mtp_cache");
  // Every rank's shard of the MTP layer needs all rows' previous hidden states on its own device.
  const Tensor host = prev_hidden.device() == Device::CPU ? prev_hidden : ranks_[0].backend->to_host_f32(prev_hidden);
  threads_.run_all([&](int r) {
    Rank& k = ranks_[size_t(r)];
    k.backend->bind_thread();
    k.last = k.model->forward_mtp(batch, k.backend->to_device(host), k.mtp_cache);
  });
  return ranks_[0].last;
}

void TensorParallelModel::move_cache_slots(LatentCache& cache, const std::vector<int32_t>& src,
                                           const std::vector<int32_t>& dst) {
  const bool mtp = cache.data.data() == ranks_[0].mtp_cache.data.data();
  DS_CHECK(mtp || cache.data.data() == ranks_[0].cache.data.data(),
           "TensorParallelModel::move_cache_slots: pass a cache from allocate_cache or allocate_mtp_cache");
  threads_.run_all([&](int r) {
    Rank& k = ranks_[size_t(r)];
    k.backend->bind_thread();
    Tensor s = k.backend->upload_i32(src, {int64_t(src.size())}), d = k.backend->upload_i32(dst, {int64_t(dst.size())});
    k.backend->move_cache_slots(mtp ? k.mtp_cache.data : k.cache.data, s, d);
  });
}

ForwardOutput TensorParallelModel::forward(const ForwardBatch& batch, LatentCache& cache) {
  DS_CHECK(cache.data.data() == ranks_[0].cache.data.data(),
           "TensorParallelModel::forward: pass the cache from allocate_cache");
  return forward(batch);
}

TensorParallelModel::~TensorParallelModel() {
  // Device memory is freed on each rank's own thread (its device current).
  threads_.run_all([&](int r) {
    Rank& k = ranks_[size_t(r)];
    k.backend->bind_thread();
    k.backend->synchronize();
    k.last = {};
    k.cache = {};
    k.mtp_cache = {};
    k.model.reset();
  });
}

ForwardOutput TensorParallelModel::forward(const ForwardBatch& batch) {
  threads_.run_all([&](int r) {
    Rank& k = ranks_[size_t(r)];
    k.backend->bind_thread();
    k.last = k.model->forward(batch, k.cache);
  });
  return ranks_[0].last;
}

bool TensorParallelModel::capture_decode_graphs(LatentCache& cache, int32_t trash_slot,
                                                const std::vector<int>& batch_sizes) {
  DS_CHECK(cache.data.data() == ranks_[0].cache.data.data(),
           "TensorParallelModel::capture_decode_graphs: pass the cache from allocate_cache");
  std::vector<char> ok(ranks_.size(), 0);
  threads_.run_all([&](int r) {
    Rank& k = ranks_[size_t(r)];
    k.backend->bind_thread();
    k.last = {};
    ok[size_t(r)] = k.model->capture_decode_graphs(k.cache, trash_slot, batch_sizes);
  });
  return ok[0] != 0;
}

std::string TensorParallelModel::device_fatal_error() {
  for (size_t r = 0; r < ranks_.size(); ++r) {
    std::string e = ranks_[r].backend->fatal_error();
    if (!e.empty()) return fmt::format("rank {}: {}", first_rank_ + int(r), e);
  }
  return {};
}

void TensorParallelModel::synchronize() {
  threads_.run_all([&](int r) {
    ranks_[size_t(r)].backend->bind_thread();
    ranks_[size_t(r)].backend->synchronize();
  });
}

}  // namespace dsserve
