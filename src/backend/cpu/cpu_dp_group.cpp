// Data-parallel attention on the CPU backend: each rank a CpuBackend that belongs to three
// meeting places in host memory: its attention group (all_reduce_sum, all_gather_cols), the whole
// world (all_reduce_sum_world) and the ranks at its position in every group (all_gather_rows_groups).
// Sums run in member order after a barrier, so every member gets bit-identical values.
#include <barrier>
#include <cstring>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/cpu_backend.h"
#include "core/error.h"

namespace dsserve {

namespace {

// The members of one communicator and the buffer each posted for the collective in progress.
struct HostMeeting {
  explicit HostMeeting(int members) : members(members), barrier(members), buffers(size_t(members)), sizes(size_t(members)) {}
  int members;
  std::barrier<> barrier;
  std::vector<const float*> buffers;
  std::vector<int64_t> sizes;
};

// A place in a meeting: which one and this rank's index in it.
struct Seat {
  std::shared_ptr<HostMeeting> meeting;
  int index = 0;
};

void check_f32(const Tensor& x, const char* op) {
  DS_CHECK(x.dtype() == DType::F32 && x.is_contiguous(), "{}: expected a contiguous F32 tensor, found {} {}", op,
           dtype_name(x.dtype()), x.shape().str());
}

class CpuDataParallelBackend final : public CpuBackend {
 public:
  CpuDataParallelBackend(Seat group, Seat world, Seat across)
      : group_(std::move(group)), world_(std::move(world)), across_(std::move(across)) {}

  void all_reduce_sum(Tensor& x) override { reduce(group_, x, "all_reduce_sum"); }
  void all_reduce_sum_world(Tensor& x) override { reduce(world_, x, "all_reduce_sum_world"); }

  Tensor all_gather_cols(const Tensor& x) override {
    check_f32(x, "all_gather_cols");
    DS_CHECK(x.ndim() == 2, "all_gather_cols: expected [R, C], found {}", x.shape().str());
    HostMeeting& m = *group_.meeting;
    const int64_t R = x.size(0), C = x.size(1);
    post(group_, x.ptr<float>(), x.numel());
    Tensor out = Tensor::zeros_host(DType::F32, {R, m.members * C});
    for (int r = 0; r < m.members; ++r) {
      DS_CHECK(m.sizes[size_t(r)] == x.numel(), "all_gather_cols: member {} has {} values, member {} has {}", r,
               m.sizes[size_t(r)], group_.index, x.numel());
      for (int64_t i = 0; i < R; ++i)
        std::memcpy(out.ptr<float>() + i * m.members * C + r * C, m.buffers[size_t(r)] + i * C, size_t(C) * sizeof(float));
    }
    m.barrier.arrive_and_wait();
    return out;
  }

  Tensor all_gather_rows_groups(const Tensor& x, std::span<const int32_t> rows_per_group) override {
    HostMeeting& m = *across_.meeting;
    DS_CHECK(int(rows_per_group.size()) == m.members, "all_gather_rows_groups: {} row counts for {} groups",
             rows_per_group.size(), m.members);
    const int32_t mine = rows_per_group[size_t(across_.index)];
    DS_CHECK(x.ndim() == 2 && x.size(0) == mine && x.dtype() == DType::F32,
             "all_gather_rows_groups: group {} passes {} {}, expected {} F32 rows", across_.index,
             dtype_name(x.dtype()), x.shape().str(), mine);
    const int64_t C = x.size(1);
    if (mine > 0) check_f32(x, "all_gather_rows_groups");
    post(across_, mine > 0 ? x.ptr<float>() : nullptr, C);
    int64_t total = 0;
    for (int g = 0; g < m.members; ++g) total += rows_per_group[size_t(g)];
    Tensor out = Tensor::zeros_host(DType::F32, {total, C});
    int64_t row = 0;
    for (int g = 0; g < m.members; ++g) {
      DS_CHECK(m.sizes[size_t(g)] == C, "all_gather_rows_groups: group {} has {} columns, group {} has {}", g,
               m.sizes[size_t(g)], across_.index, C);
      const int64_t n = rows_per_group[size_t(g)];
      if (n > 0) {
        std::memcpy(out.ptr<float>() + row * C, m.buffers[size_t(g)], size_t(n * C) * sizeof(float));
      }
      row += n;
    }
    m.barrier.arrive_and_wait();
    return out;
  }

 private:
  // Posts this member's buffer and waits until every member's is posted.
  static void post(Seat& s, const float* data, int64_t size) {
    HostMeeting& m = *s.meeting;
    m.buffers[size_t(s.index)] = data;
    m.sizes[size_t(s.index)] = size;
    m.barrier.arrive_and_wait();
  }

  void reduce(Seat& s, Tensor& x, const char* op) {
    check_f32(x, op);
    HostMeeting& m = *s.meeting;
    post(s, x.ptr<float>(), x.numel());
    for (int r = 0; r < m.members; ++r)
      DS_CHECK(m.sizes[size_t(r)] == x.numel(), "{}: member {} has {} values, member {} has {}", op, r,
               m.sizes[size_t(r)], s.index, x.numel());
    sum_.assign(size_t(x.numel()), 0.0f);
    for (int r = 0; r < m.members; ++r) {
      const float* src = m.buffers[size_t(r)];
      for (int64_t i = 0; i < x.numel(); ++i) sum_[size_t(i)] += src[i];
    }
    m.barrier.arrive_and_wait();  // nobody reads the buffers any more
    std::memcpy(x.ptr<float>(), sum_.data(), sum_.size() * sizeof(float));
  }

  Seat group_, world_, across_;
  std::vector<float> sum_;
};

}  // namespace

std::vector<std::unique_ptr<Backend>> create_cpu_data_parallel_backends(int world, int groups) {
  const int per_group = world / groups;
  auto world_meeting = std::make_shared<HostMeeting>(world);
  std::vector<std::shared_ptr<HostMeeting>> group_meetings, across_meetings;
  for (int g = 0; g < groups; ++g) group_meetings.push_back(std::make_shared<HostMeeting>(per_group));
  for (int a = 0; a < per_group; ++a) across_meetings.push_back(std::make_shared<HostMeeting>(groups));
  std::vector<std::unique_ptr<Backend>> out;
  for (int r = 0; r < world; ++r) {
    const int g = r / per_group, a = r % per_group;
    out.push_back(std::make_unique<CpuDataParallelBackend>(Seat{group_meetings[size_t(g)], a}, Seat{world_meeting, r},
                                                           Seat{across_meetings[size_t(a)], g}));
  }
  return out;
}

}  // namespace dsserve
