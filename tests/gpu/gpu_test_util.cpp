// GPU test helpers (see gpu_test_util.h).
#include "gpu/gpu_test_util.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>

#include "backend/weight_dequant.h"
#include "common/test_paths.h"
#include "core/error.h"
#include "runtime/batch_builder.h"

namespace dsserve::test {

bool gpu_available() { return cuda_device_count() > 0; }

Backend& cpu() {
  static std::unique_ptr<Backend> b = create_backend(DeviceKind::Cpu);
  return *b;
}

namespace {
bool g_sm80_forced = false;
}  // namespace

bool sm80_forced() { return g_sm80_forced; }
void set_sm80_forced(bool on) { g_sm80_forced = on; }

void configure_gpu_backend(Backend& b) {
  if (g_sm80_forced) b.force_sm80_kernels();
}

std::vector<std::unique_ptr<Backend>> configure_gpu_backends(std::vector<std::unique_ptr<Backend>> group) {
  for (auto& b : group) configure_gpu_backend(*b);
  return group;
}

std::unique_ptr<Backend> make_gpu_backend() {
  std::unique_ptr<Backend> b = create_backend(DeviceKind::Cuda);
  configure_gpu_backend(*b);
  return b;
}

Backend& gpu() {
  static std::unique_ptr<Backend> b = make_gpu_backend();
  return *b;
}

Tensor randn(Shape s, Rng& rng, float scale) {
  std::normal_distribution<float> nd(0.0f, scale);
  Tensor t = Tensor::zeros_host(DType::F32, s);
  for (int64_t i = 0; i < t.numel(); ++i) t.ptr<float>()[i] = bf16_to_f32(f32_to_bf16(nd(rng)));
  return t;
}

Tensor uniform(Shape s, Rng& rng, float lo, float hi) {
  std::uniform_real_distribution<float> ud(lo, hi);
  Tensor t = Tensor::zeros_host(DType::F32, s);
  for (int64_t i = 0; i < t.numel(); ++i) t.ptr<float>()[i] = bf16_to_f32(f32_to_bf16(ud(rng)));
  return t;
}

WeightPart random_fp8_part(int64_t out, int64_t in, Rng& rng) {
  WeightPart p;
  p.weight = Tensor::zeros_host(DType::F8_E4M3, {out, in});
  // e4m3 codes of N(0, 64^2) samples, drawn from a table (large expert stacks stay quick to make).
  static const std::vector<uint8_t> codes = [] {
    Rng r(12345);
    std::normal_distribution<float> nd(0.0f, 64.0f);
    std::vector<uint8_t> c(1 << 16);
    for (auto& v : c) v = f32_to_e4m3(nd(r));
    return c;
  }();
  uint8_t* w = p.weight.ptr<uint8_t>();
  for (int64_t i = 0; i < out * in; i += 4) {
    uint64_t bits = rng();
    for (int64_t j = i; j < std::min(i + 4, out * in); ++j, bits >>= 16) w[j] = codes[bits & 0xffff];
  }
  const int64_t br = (out + 127) / 128, bc = (in + 127) / 128;
  p.scale = Tensor::zeros_host(DType::F32, {br, bc});
  std::uniform_real_distribution<float> ud(0.5f, 1.5f);
  for (int64_t i = 0; i < br * bc; ++i) p.scale.ptr<float>()[i] = ud(rng) / (64.0f * std::sqrt(float(in)));
  return p;
}

WeightPart random_bf16_part(int64_t out, int64_t in, Rng& rng) {
  Tensor f = randn({out, in}, rng, 1.0f / std::sqrt(float(in)));
  WeightPart p;
  p.weight = Tensor::zeros_host(DType::BF16, {out, in});
  convert_from_f32(DType::BF16, f.ptr<float>(), p.weight.data(), size_t(f.numel()));
  return p;
}

WeightPart random_awq_part(int64_t out, int64_t in, int64_t group, Rng& rng) {
  WeightPart p;
  p.format = WeightFormat::Awq;
  p.group_size = group;
  p.name = "random awq [" + std::to_string(out) + ", " + std::to_string(in) + "]";
  p.weight = Tensor::zeros_host(DType::I32, {in, out / 8});
  p.zeros = Tensor::zeros_host(DType::I32, {in / group, out / 8});
  p.scale = Tensor::zeros_host(DType::F16, {in / group, out});
  for (int64_t i = 0; i < p.weight.numel(); ++i) p.weight.ptr<uint32_t>()[i] = uint32_t(rng());
  for (int64_t i = 0; i < p.zeros.numel(); ++i) p.zeros.ptr<uint32_t>()[i] = uint32_t(rng());
  std::uniform_real_distribution<float> ud(0.5f, 1.5f);
  for (int64_t i = 0; i < p.scale.numel(); ++i)
    p.scale.ptr<uint16_t>()[i] = f32_to_f16(ud(rng) / (6.5f * std::sqrt(float(in))));
  return p;
}

WeightPart random_int8_part(int64_t out, int64_t in, bool channel, Rng& rng) {
  WeightPart p;
  p.format = channel ? WeightFormat::ChannelInt8 : WeightFormat::BlockInt8;
  p.name = std::string("random int8 ") + (channel ? "channel" : "block") + " [" + std::to_string(out) + ", " +
           std::to_string(in) + "]";
  p.weight = Tensor::zeros_host(DType::I8, {out, in});
  std::normal_distribution<float> nd(0.0f, 32.0f);
  for (int64_t i = 0; i < p.weight.numel(); ++i)
    p.weight.ptr<int8_t>()[i] = int8_t(std::clamp(std::nearbyint(nd(rng)), -127.0f, 127.0f));
  const Shape ss = channel ? Shape{out, 1} : Shape{(out + 127) / 128, (in + 127) / 128};
  p.scale = Tensor::zeros_host(DType::F32, ss);
  std::uniform_real_distribution<float> ud(0.5f, 1.5f);
  for (int64_t i = 0; i < p.scale.numel(); ++i) p.scale.ptr<float>()[i] = ud(rng) / (32.0f * std::sqrt(float(in)));
  return p;
}

Tensor to_backend(Backend& b, const Tensor& host_f32) {
  if (b.activation_dtype() == DType::F32) return b.to_device(host_f32);
  Tensor h = Tensor::zeros_host(DType::BF16, host_f32.shape());
  Tensor c = host_to_f32(host_f32);
  convert_from_f32(DType::BF16, c.ptr<float>(), h.data(), size_t(c.numel()));
  return b.to_device(h);
}

double rel_err(const Tensor& a, const Tensor& b) {
  if (a.numel() != b.numel()) return INFINITY;
  double num = 0, den = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    double x = a.ptr<float>()[i], y = b.ptr<float>()[i];
    if (!std::isfinite(x) || !std::isfinite(y)) return INFINITY;
    num += (x - y) * (x - y);
    den += y * y;
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

double rel_err(Backend& ga, const Tensor& a, Backend& gb, const Tensor& b) {
  Tensor ha = ga.to_host_f32(a), hb = gb.to_host_f32(b);
  return rel_err(ha, hb);
}

BatchSpec make_batch_spec(const std::vector<std::pair<int, int>>& seqs, int page_size, Rng& rng, int key_shift,
                          bool tree_mask) {
  BatchSpec s;
  s.seqs = seqs;
  s.page_size = page_size;
  s.key_shift = key_shift;
  if (tree_mask) {  // random trees over the new tokens and up to 3 earlier keys; each node sees itself
    for (auto [prefix, n] : seqs) {
      const int cols = n + std::min(prefix, 3), extra = cols - n;
      s.mask_cols.push_back(cols);
      for (int i = 0; i < n; ++i)
        for (int j = 0; j < cols; ++j) s.tree_mask.push_back(j == extra + i || (j < extra + i && rng() % 2 == 0) ? 1 : 0);
    }
  }
  std::vector<int> pages_of;
  for (auto [prefix, n] : seqs) {
    int pages = (prefix + n + key_shift + page_size - 1) / page_size;
    pages_of.push_back(pages);
    s.max_pages = std::max(s.max_pages, pages);
    s.num_pages += pages;
  }
  s.num_pages += 3;  // a few unused pages
  std::vector<int32_t> perm(size_t(s.num_pages));
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  size_t next = 0;
  for (size_t i = 0; i < seqs.size(); ++i) {
    std::vector<int32_t> row(size_t(s.max_pages), 0);
    for (int j = 0; j < pages_of[i]; ++j) row[j] = perm[next++];
    s.page_table.insert(s.page_table.end(), row.begin(), row.end());
  }
  return s;
}

AttentionBatch make_batch(Backend& be, const BatchSpec& s) {
  const int B = int(s.seqs.size());
  AttentionBatch ab;
  ab.num_seqs = B;
  ab.page_size = s.page_size;
  ab.max_pages = s.max_pages;
  ab.h_query_start.assign(1, 0);
  ab.h_key_start.assign(1, 0);
  std::vector<int32_t> positions, slots;
  for (int i = 0; i < B; ++i) {
    auto [prefix, n] = s.seqs[i];
    for (int j = 0; j < n; ++j) {
      int pos = prefix + j, at = pos + s.key_shift;
      positions.push_back(pos);
      slots.push_back(s.page_table[size_t(i) * s.max_pages + at / s.page_size] * s.page_size + at % s.page_size);
    }
    ab.h_query_start.push_back(ab.h_query_start.back() + n);
    ab.h_seq_lens.push_back(prefix + n);
    ab.h_key_start.push_back(ab.h_key_start.back() + prefix + n);
  }
  ab.num_tokens = ab.h_query_start.back();
  const int T = ab.num_tokens;
  ab.positions = be.upload_i32(positions, {T});
  ab.out_slots = be.upload_i32(slots, {T});
  ab.query_start = be.upload_i32(ab.h_query_start, {B + 1});
  ab.seq_lens = be.upload_i32(ab.h_seq_lens, {B});
  ab.key_start = be.upload_i32(ab.h_key_start, {B + 1});
  ab.page_table = be.upload_i32(s.page_table, {B, s.max_pages});
  ab.key_shift = s.key_shift;
  if (!s.tree_mask.empty()) {
    ab.h_mask_start.assign(1, 0);
    for (int i = 0; i < B; ++i) ab.h_mask_start.push_back(ab.h_mask_start.back() + s.seqs[i].second * s.mask_cols[i]);
    ab.h_mask_cols = s.mask_cols;
    ab.h_tree_mask = s.tree_mask;
    ab.mask_start = be.upload_i32(ab.h_mask_start, {B + 1});
    ab.mask_cols = be.upload_i32(ab.h_mask_cols, {B});
    ab.tree_mask = be.upload_i32(std::vector<int32_t>(s.tree_mask.begin(), s.tree_mask.end()),
                                 {int64_t(s.tree_mask.size())});
  }
  return ab;
}

namespace {
std::vector<double> log_softmax(const std::vector<float>& x) {
  double mx = *std::max_element(x.begin(), x.end()), s = 0;
  for (float v : x) s += std::exp(v - mx);
  double lse = mx + std::log(s);
  std::vector<double> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) out[i] = x[i] - lse;
  return out;
}
}  // namespace

void LogprobStats::add(const std::vector<std::vector<float>>& got, const std::vector<std::vector<float>>& ref) {
  for (size_t t = 0; t < std::min(got.size(), ref.size()); ++t) {
    auto lg = log_softmax(got[t]), lr = log_softmax(ref[t]);
    std::vector<size_t> idx(lg.size());
    std::iota(idx.begin(), idx.end(), 0);
    std::partial_sort(idx.begin(), idx.begin() + 5, idx.end(), [&](size_t a, size_t b) { return lg[a] > lg[b]; });
    for (int k = 0; k < 5; ++k) diffs.push_back(std::fabs(lg[idx[k]] - lr[idx[k]]));
    std::vector<size_t> ridx(lr.size());
    std::iota(ridx.begin(), ridx.end(), 0);
    std::partial_sort(ridx.begin(), ridx.begin() + 2, ridx.end(), [&](size_t a, size_t b) { return lr[a] > lr[b]; });
    if (lr[ridx[0]] - lr[ridx[1]] > 0.5) {
      ++confident;
      if (idx[0] == ridx[0]) ++agree;
    }
  }
}

double LogprobStats::quantile(double q) const {
  if (diffs.empty()) return 0;
  std::vector<double> d = diffs;
  std::sort(d.begin(), d.end());
  size_t i = std::min(d.size() - 1, size_t(q * double(d.size() - 1) + 0.5));
  return d[i];
}

std::string LogprobStats::str() const {
  char buf[200];
  std::snprintf(buf, sizeof(buf), "median %.4f p90 %.4f p99 %.4f max %.3f top1 %d/%d (%.1f%%)", quantile(0.5),
                quantile(0.9), quantile(0.99), quantile(1.0), agree, confident, 100.0 * agreement());
  return buf;
}

TestModel load_model_on(DeviceKind kind, const std::string& dir, int page_size, int64_t tokens,
                        std::optional<DType> cache_dtype) {
  TestModel m;
  m.backend = kind == DeviceKind::Cuda ? make_gpu_backend() : create_backend(kind);
  ModelConfig cfg = ModelConfig::load(dir, "", fixture_quantization(dir));
  m.source = std::make_unique<CheckpointWeights>(dir, cfg);
  m.model = std::make_unique<ReplicaRunner>(cfg, *m.backend, *m.source, 4096);
  int64_t pages = (tokens + page_size - 1) / page_size;
  m.pool = std::make_unique<PagePool>(pages, page_size);
  m.cache = m.model->make_cache(pages, page_size, false, cache_dtype);
  m.mtp_pool = std::make_unique<PagePool>(pages, page_size);
  if (m.model->has_mtp()) m.mtp_cache = m.model->make_cache(pages, page_size, /*mtp=*/true, cache_dtype);
  return m;
}

namespace {
SequenceChunk chunk(const SequencePages* pages, int64_t prefix, std::vector<int32_t> tokens,
                    std::vector<int32_t> logit_offsets) {
  SequenceChunk c;
  c.pages = pages;
  c.prefix_len = prefix;
  c.tokens = std::move(tokens);
  c.logit_offsets = std::move(logit_offsets);
  return c;
}

std::vector<std::vector<float>> host_rows(Backend& be, const Tensor& t) {
  Tensor h = be.to_host_f32(t);
  std::vector<std::vector<float>> rows(static_cast<size_t>(h.size(0)));
  for (int64_t r = 0; r < h.size(0); ++r)
    rows[r].assign(h.ptr<float>() + r * h.size(1), h.ptr<float>() + (r + 1) * h.size(1));
  return rows;
}
}  // namespace

RunResult run_on(TestModel& m, const std::vector<int32_t>& ids, const RunOptions& opt) {
  const int64_t T = int64_t(ids.size());
  const int ps = m.pool->page_size();
  SequencePages seq;
  if (!seq.reserve(*m.pool, T)) throw Error("test pool too small");
  RunResult r;
  const int64_t prefill_end = opt.decode_from >= 0 ? std::min<int64_t>(opt.decode_from, T) : T;
  auto step = [&](int64_t s, int64_t e, AttentionMode mode) {
    SequenceChunk c = chunk(&seq, s, std::vector<int32_t>(ids.begin() + s, ids.begin() + e), {});
    c.logit_offsets.resize(size_t(e - s));
    std::iota(c.logit_offsets.begin(), c.logit_offsets.end(), 0);
    ForwardOutput out = m.model->forward(build_forward_batch({c}, ps, mode), m.cache);
    for (auto& row : host_rows(*m.backend, out.logits)) r.logits.push_back(std::move(row));
    for (auto& row : host_rows(*m.backend, out.hidden)) r.hidden.push_back(std::move(row));
  };
  const int64_t chunk = opt.chunk > 0 ? opt.chunk : std::max<int64_t>(prefill_end, 1);
  for (int64_t s = 0; s < prefill_end; s += chunk) step(s, std::min(prefill_end, s + chunk), opt.prefill);
  for (int64_t s = prefill_end; s < T; ++s) step(s, s + 1, opt.decode);
  seq.release_all(*m.pool);
  return r;
}

std::vector<std::vector<float>> run_mtp_on(TestModel& m, const std::vector<int32_t>& ids,
                                           const std::vector<std::vector<float>>& hidden) {
  const int64_t T = int64_t(ids.size()) - 1;
  if (T <= 0) return {};
  const int ps = m.mtp_pool->page_size();
  SequencePages seq;
  if (!seq.reserve(*m.mtp_pool, T)) throw Error("test pool too small");
  SequenceChunk c = chunk(&seq, 0, std::vector<int32_t>(ids.begin() + 1, ids.end()), {});
  c.logit_offsets.resize(size_t(T));
  std::iota(c.logit_offsets.begin(), c.logit_offsets.end(), 0);
  const int64_t H = int64_t(hidden[0].size());
  Tensor prev = Tensor::zeros_host(DType::F32, {T, H});
  for (int64_t t = 0; t < T; ++t) std::copy(hidden[t].begin(), hidden[t].end(), prev.ptr<float>() + t * H);
  Tensor dev_prev = m.backend->to_device(prev);
  ForwardOutput out =
      m.forward_model().forward_mtp(build_forward_batch({c}, ps, AttentionMode::Expanded), dev_prev, m.mtp_cache);
  auto rows = host_rows(*m.backend, out.logits);
  seq.release_all(*m.mtp_pool);
  return rows;
}

std::vector<int32_t> greedy_on(TestModel& m, const std::vector<int32_t>& ids, int n) {
  const int ps = m.pool->page_size();
  SequencePages seq;
  if (!seq.reserve(*m.pool, int64_t(ids.size()) + n)) throw Error("test pool too small");
  std::vector<int32_t> out;
  SequenceChunk c = chunk(&seq, 0, ids, {int32_t(ids.size()) - 1});
  auto logits = host_rows(*m.backend, m.model->forward(build_forward_batch({c}, ps, AttentionMode::Expanded), m.cache).logits);
  for (int i = 0; i < n; ++i) {
    const auto& row = logits[0];
    int32_t tok = int32_t(std::max_element(row.begin(), row.end()) - row.begin());
    out.push_back(tok);
    SequenceChunk d = chunk(&seq, int64_t(ids.size()) + i, {tok}, {0});
    logits = host_rows(*m.backend, m.model->forward(build_forward_batch({d}, ps, AttentionMode::Absorbed), m.cache).logits);
  }
  seq.release_all(*m.pool);
  return out;
}

double median_ms(CUstream_st* stream, const std::function<void()>& fn, int warmups, int iters) {
  for (int i = 0; i < warmups; ++i) fn();
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  std::vector<double> t;
  for (int i = 0; i < iters; ++i) {
    cudaEventRecord(a, stream);
    fn();
    cudaEventRecord(b, stream);
    cudaEventSynchronize(b);
    float ms = 0;
    cudaEventElapsedTime(&ms, a, b);
    t.push_back(ms);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace dsserve::test
