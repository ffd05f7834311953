// Tensor-parallel groups of CPU backends: each rank a CpuBackend whose all_reduce_sum meets the
// other ranks' threads at a barrier and sums their float32 buffers in rank order (so every rank gets
// bit-identical sums).
#include <barrier>
#include <cstring>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/cpu_backend.h"
#include "core/error.h"

namespace dsserve {

namespace {

// What the ranks of one CPU group share: each rank's buffer for the reduction in progress.
struct HostReduceGroup {
  explicit HostReduceGroup(int world) : world(world), barrier(world), buffers(world), sizes(world) {}
  int world;
  std::barrier<> barrier;
  std::vector<float*> buffers;
  std::vector<int64_t> sizes;
};

class CpuGroupBackend final : public CpuBackend {
 public:
  CpuGroupBackend(std::shared_ptr<HostReduceGroup> group, int rank) : group_(std::move(group)), rank_(rank) {}

  void all_reduce_sum(Tensor& x) override {
    DS_CHECK(x.dtype() == DType::F32 && x.is_contiguous(), "all_reduce_sum: expected a contiguous F32 tensor, found {} {}",
             dtype_name(x.dtype()), x.shape().str());
    HostReduceGroup& g = *group_;
    g.buffers[rank_] = x.ptr<float>();
    g.sizes[rank_] = x.numel();
    g.barrier.arrive_and_wait();  // every rank's buffer is posted
    for (int r = 0; r < g.world; ++r)
      DS_CHECK(g.sizes[r] == x.numel(), "all_reduce_sum: rank {} has {} values, rank {} has {}", r, g.sizes[r], rank_,
               x.numel());
    sum_.assign(size_t(x.numel()), 0.0f);
    for (int r = 0; r < g.world; ++r) {
      const float* src = g.buffers[r];
      for (int64_t i = 0; i < x.numel(); ++i) sum_[size_t(i)] += src[i];
    }
    g.barrier.arrive_and_wait();  // nobody reads the buffers any more
    std::memcpy(x.ptr<float>(), sum_.data(), sum_.size() * sizeof(float));
  }

  Tensor all_gather_cols(const Tensor& x) override {
    DS_CHECK(x.dtype() == DType::F32 && x.is_contiguous() && x.ndim() == 2,
             "all_gather_cols: expected a contiguous F32 [R, C] tensor, found {} {}", dtype_name(x.dtype()),
             x.shape().str());
    HostReduceGroup& g = *group_;
    const int64_t R = x.size(0), C = x.size(1);
    g.buffers[rank_] = x.ptr<float>();
    g.sizes[rank_] = x.numel();
    g.barrier.arrive_and_wait();
    Tensor out = Tensor::zeros_host(DType::F32, {R, g.world * C});
    for (int r = 0; r < g.world; ++r) {
      DS_CHECK(g.sizes[r] == x.numel(), "all_gather_cols: rank {} has {} values, rank {} has {}", r, g.sizes[r], rank_,
               x.numel());
      for (int64_t i = 0; i < R; ++i)
        std::memcpy(out.ptr<float>() + i * g.world * C + r * C, g.buffers[r] + i * C, size_t(C) * sizeof(float));
    }
    g.barrier.arrive_and_wait();
    return out;
  }

 private:
  std::shared_ptr<HostReduceGroup> group_;
  int rank_;
  std::vector<float> sum_;
};

}  // namespace

std::vector<std::unique_ptr<Backend>> create_cpu_group_backends(int world) {
  auto group = std::make_shared<HostReduceGroup>(world);
  std::vector<std::unique_ptr<Backend>> out;
  for (int r = 0; r < world; ++r) out.push_back(std::make_unique<CpuGroupBackend>(group, r));
  return out;
}

}  // namespace dsserve
