// CUDA backend: token choice (Backend::sample). Checks the rows, packs their settings and lists
// into one buffer uploaded once, runs the sampling kernel (sampling/) over every row, and reads
// back only the chosen tokens and the log-probabilities asked for. Scratch only: the packed lists
// (and the allowed-token bitmasks of constrained rows: a bitmask upload, never a logits copy), the
// working copies of rows that have lists, and the results.
#include <algorithm>
#include <cstring>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/sampling/sampling.h"
#include "backend/sampling_math.h"
#include "core/error.h"

namespace dsserve::cuda {

namespace {

int32_t float_as_int(float v) {
  int32_t i;
  std::memcpy(&i, &v, 4);
  return i;
}

size_t align_up(size_t v, size_t a) { return (v + a - 1) / a * a; }

}  // namespace

std::vector<SampledToken> CudaBackend::sample(const Tensor& logits_in, std::span<const SamplingRow> rows) {
  DS_CHECK(logits_in.device() == Device::CUDA && logits_in.ndim() == 2,
           "sample: expected GPU logits [rows, vocab], found {} on the {}", logits_in.shape().str(),
           logits_in.device() == Device::CUDA ? "GPU" : "host");
  DS_CHECK(logits_in.dtype() == DType::F32 || logits_in.dtype() == DType::BF16,
           "sample: logits must be F32 or BF16, found {}", dtype_name(logits_in.dtype()));
  DS_CHECK(logits_in.size(0) == int64_t(rows.size()), "sample: {} rows of logits for {} sampling rows",
           logits_in.size(0), rows.size());
  const int64_t R = logits_in.size(0), V = logits_in.size(1);
  DS_CHECK(V > 0 && V < (int64_t(1) << 23), "sample: vocabulary of {} tokens (expected 1 to 2^23)", V);
  check_sampling_rows(rows, V);
  if (R == 0) return {};
  const Tensor logits = logits_in.stride(1) == 1 ? logits_in : as_dtype(logits_in, logits_in.dtype(), false);

  // Row settings, then every row's lists, in one host buffer. The lists and the packed buffer are
  // the backend's, reused from call to call (a call has synchronized before it returns, and a
  // pageable upload has read its source by the time cudaMemcpyAsync returns): a batch of 64
  // constrained rows packs 1 MB of masks, which fresh vectors grown value by value took about
  // 1.7 ms to build on a 2-core host against 0.03 ms for copies into warm memory.
  std::vector<SampleRowDesc> desc(static_cast<size_t>(R));
  std::vector<int32_t>& ints = sample_ints_;
  ints.clear();
  size_t list_values = 0;
  for (const SamplingRow& r : rows)
    list_values += 2 * r.logit_bias.size() + 2 * r.output_counts.size() + r.seen.size() + r.suppressed.size() +
                   r.allowed.size();
  ints.reserve(list_values);
  int32_t work_rows = 0, top_stride = 0;
  for (int64_t i = 0; i < R; ++i) {
    const SamplingRow& r = rows[size_t(i)];
    SampleRowDesc& d = desc[size_t(i)];
    d = SampleRowDesc{};
    d.temperature = r.temperature, d.top_p = r.top_p, d.min_p = r.min_p, d.top_k = r.top_k;
    d.frequency_penalty = r.frequency_penalty, d.presence_penalty = r.presence_penalty;
    d.repetition_penalty = r.repetition_penalty;
    d.top_logprobs = r.top_logprobs, d.want_logprob = r.want_logprob;
    d.seed = r.seed, d.step = r.step;
    const bool lists = !r.logit_bias.empty() || !r.output_counts.empty() || !r.seen.empty() || !r.suppressed.empty();
    d.work_row = lists ? work_rows++ : -1;
    d.bias_start = int32_t(ints.size()), d.bias_count = int32_t(r.logit_bias.size());
    for (auto& [t, b] : r.logit_bias) ints.push_back(t);
    for (auto& [t, b] : r.logit_bias) ints.push_back(float_as_int(b));
    d.counts_start = int32_t(ints.size()), d.counts_count = int32_t(r.output_counts.size());
    for (auto& [t, n] : r.output_counts) ints.push_back(t);
    for (auto& [t, n] : r.output_counts) ints.push_back(n);
    d.seen_start = int32_t(ints.size()), d.seen_count = int32_t(r.seen.size());
    ints.insert(ints.end(), r.seen.begin(), r.seen.end());
    d.suppressed_start = int32_t(ints.size()), d.suppressed_count = int32_t(r.suppressed.size());
    ints.insert(ints.end(), r.suppressed.begin(), r.suppressed.end());
    d.mask_start = r.allowed.empty() ? -1 : int32_t(ints.size());
    if (!r.allowed.empty()) {
      const size_t at = ints.size();
      ints.resize(at + r.allowed.size());
      std::memcpy(ints.data() + at, r.allowed.data(), r.allowed.size() * sizeof(uint32_t));
    }
    DS_CHECK(ints.size() < size_t(INT32_MAX), "sample: the rows' lists hold more than 2^31 values");
    top_stride = std::max(top_stride, int32_t(std::min<int64_t>(r.top_logprobs, V)));
  }
  const size_t desc_bytes = align_up(desc.size() * sizeof(SampleRowDesc), 256);
  std::vector<char>& packed = sample_packed_;
  packed.resize(desc_bytes + ints.size() * sizeof(int32_t));
  std::memcpy(packed.data(), desc.data(), desc.size() * sizeof(SampleRowDesc));
  if (!ints.empty()) std::memcpy(packed.data() + desc_bytes, ints.data(), ints.size() * sizeof(int32_t));
  Tensor upload = scratch(DType::U8, {int64_t(packed.size())});
  check(cudaMemcpyAsync(upload.data(), packed.data(), packed.size(), cudaMemcpyHostToDevice, stream_),
        "sample (upload of the rows)");

  // Results: one record per row, then the top log-probabilities, read back in one copy.
  const size_t result_bytes = size_t(R) * sizeof(SampleResult);
  const size_t out_bytes = result_bytes + size_t(R) * size_t(top_stride) * sizeof(TopLogprob);
  Tensor out = scratch(DType::U8, {int64_t(out_bytes)});
  Tensor work;
  if (work_rows > 0) work = scratch(DType::F32, {work_rows, V});

  SampleParams p{};
  p.logits = logits.data();
  p.dtype = logits.dtype();
  p.logits_stride = logits.stride(0);
  p.rows = R, p.vocab = V;
  p.desc = reinterpret_cast<const SampleRowDesc*>(upload.data());
  p.ints = reinterpret_cast<const int32_t*>(static_cast<const char*>(upload.data()) + desc_bytes);
  p.work = work_rows > 0 ? work.ptr<float>() : nullptr;
  p.results = reinterpret_cast<SampleResult*>(out.data());
  p.top = reinterpret_cast<TopLogprob*>(static_cast<char*>(out.data()) + result_bytes);
  p.top_stride = top_stride;
  // Few greedy rows without lists (fused decode path): each row over many blocks (one block per row
  // leaves the GPU idle).
  bool greedy = true;
  for (int64_t i = 0; i < R; ++i)
    greedy = greedy && desc[size_t(i)].temperature == 0.0f && desc[size_t(i)].work_row < 0 &&
             desc[size_t(i)].top_logprobs == 0;
  if (fused_decode_ && greedy && sample_greedy_split_applies(R, V)) {
    Tensor partial = scratch(DType::U8, {R * sample_greedy_split_chunks(V) * int64_t(sizeof(GreedyPartial))});
    check(launch_sample_greedy_split(p, reinterpret_cast<GreedyPartial*>(partial.data()), stream_), "sample (greedy)");
  } else {
    check(launch_sample(p, stream_), "sample");
  }

  std::vector<char> host(out_bytes);
  check(cudaMemcpyAsync(host.data(), out.data(), out_bytes, cudaMemcpyDeviceToHost, stream_), "sample (read back)");
  check(cudaStreamSynchronize(stream_), "sample (synchronize: the kernel or an earlier one failed)");
  std::vector<SampledToken> picked(static_cast<size_t>(R));
  for (int64_t i = 0; i < R; ++i) {
    SampleResult res;
    std::memcpy(&res, host.data() + size_t(i) * sizeof(SampleResult), sizeof(res));
    DS_CHECK(res.token >= 0 && res.token < V, "sample: row {} came back with token {} (vocabulary {})", i, res.token,
             V);
    SampledToken& t = picked[size_t(i)];
    t.token = res.token;
    t.logprob = res.logprob;
    for (int32_t j = 0; j < res.top_count; ++j) {
      TopLogprob e;
      std::memcpy(&e, host.data() + result_bytes + (size_t(i) * size_t(top_stride) + size_t(j)) * sizeof(TopLogprob),
                  sizeof(e));
      t.top_logprobs.push_back({e.logprob, e.id});
    }
  }
  return picked;
}

}  // namespace dsserve::cuda
