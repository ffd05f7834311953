// The CUDA backend's device-side services: random weights generated in place (their statistics,
// determinism, e4m3 values), the memory it reports and counts, the ceilings it measures, and a
// --load-format dummy model whose matrices are generated on the GPU, checked against the CPU oracle
// run on host copies of the very same values.
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <cmath>
#include <cstring>

#include "backend/cuda/cuda_backend.h"
#include "common/test_paths.h"
#include "gpu/gpu_test_util.h"
#include "backend/weight_dequant.h"
#include "model/tensor_specs.h"

namespace dsserve::test {
namespace {

// Raw bytes of a device tensor in a host tensor of the same dtype.
Tensor host_bytes(const Tensor& d) {
  Tensor h = Tensor::zeros_host(d.dtype(), d.shape());
  EXPECT_EQ(cudaMemcpy(h.data(), d.data(), d.nbytes(), cudaMemcpyDeviceToHost), cudaSuccess);
  return h;
}

struct Moments {
  double mean = 0, sd = 0, lo = INFINITY, hi = -INFINITY;
  bool finite = true;
};
Moments moments(const Tensor& host) {
  Tensor f = host_to_f32(host);
  Moments m;
  double s = 0, s2 = 0;
  for (int64_t i = 0; i < f.numel(); ++i) {
    const double v = f.ptr<float>()[i];
    m.finite = m.finite && std::isfinite(v);
    s += v, s2 += v * v;
    m.lo = std::min(m.lo, v), m.hi = std::max(m.hi, v);
  }
  m.mean = s / double(f.numel());
  m.sd = std::sqrt(s2 / double(f.numel()) - m.mean * m.mean);
  return m;
}

TEST(GpuRandomWeight, NormalAndUniformStatistics) {
  DS_REQUIRE_GPU();
  const int64_t n = 1 << 22;
  for (DType dt : {DType::F32, DType::BF16}) {
    Moments a = moments(host_bytes(gpu().random_weight(dt, {n}, {11, true, 2.0f, 1.0f})));
    EXPECT_TRUE(a.finite);
    EXPECT_NEAR(a.mean, 1.0, 0.01);
    EXPECT_NEAR(a.sd, 2.0, 0.01);
    EXPECT_LT(a.hi, 1.0 + 2.0 * 6.5);  // Box-Muller from 24-bit uniforms: |z| < 5.8
    Moments u = moments(host_bytes(gpu().random_weight(dt, {n}, {12, false, 0.05f, 0.3f})));
    EXPECT_GE(u.lo, 0.3 - 1e-3);
    EXPECT_LE(u.hi, 0.35 + 1e-3);
    EXPECT_NEAR(u.mean, 0.325, 1e-3);
    EXPECT_NEAR(u.sd, 0.05 / std::sqrt(12.0), 1e-3);
  }
}

TEST(GpuRandomWeight, Fp8ValuesAsDummyWeights) {
  DS_REQUIRE_GPU();
  // DummyWeights' FP8 linear weights: N(0, 64^2) rounded to e4m3 (finite, no NaN codes).
  Tensor h = host_bytes(gpu().random_weight(DType::F8_E4M3, {2048, 1024}, {13, true, 64.0f, 0.0f}));
  int nan = 0;
  for (int64_t i = 0; i < h.numel(); ++i) nan += (h.ptr<uint8_t>()[i] & 0x7f) == 0x7f;
  EXPECT_EQ(nan, 0);
  Moments m = moments(h);
  EXPECT_TRUE(m.finite);
  EXPECT_NEAR(m.mean, 0.0, 0.5);
  EXPECT_NEAR(m.sd, 64.0, 1.0);
  EXPECT_LE(m.hi, 448.0);
}

TEST(GpuRandomWeight, DeterministicPerSeed) {
  DS_REQUIRE_GPU();
  Tensor a = host_bytes(gpu().random_weight(DType::BF16, {1000, 37}, {5, true, 1.0f, 0.0f}));
  Tensor b = host_bytes(gpu().random_weight(DType::BF16, {1000, 37}, {5, true, 1.0f, 0.0f}));
  Tensor c = host_bytes(gpu().random_weight(DType::BF16, {1000, 37}, {6, true, 1.0f, 0.0f}));
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.nbytes()), 0);
  EXPECT_NE(std::memcmp(a.data(), c.data(), a.nbytes()), 0);
}

TEST(GpuMemory, ReportsAndCountsPersistentBytes) {
  DS_REQUIRE_GPU();
  DeviceMemory m = gpu().memory();
  EXPECT_GT(m.total_bytes, int64_t(1) << 30);
  EXPECT_GT(m.free_bytes, 0);
  EXPECT_LE(m.free_bytes, m.total_bytes);
  const int64_t before = gpu().persistent_bytes();
  {
    Tensor t = gpu().alloc(DType::BF16, {1 << 25});
    EXPECT_EQ(gpu().persistent_bytes() - before, int64_t(64) << 20);
    EXPECT_LT(gpu().memory().free_bytes, m.free_bytes);
  }
  EXPECT_EQ(gpu().persistent_bytes(), before);
}

TEST(GpuMemory, Ceilings) {
  DS_REQUIRE_GPU();
  DeviceCeilings c = gpu().measure_ceilings();
  std::printf("[ bench    ] ceilings: copy %.0f GB/s, bf16 %.0f TFLOP/s, fp8 %.0f TFLOP/s\n", c.copy_gbs,
              c.bf16_tflops, c.fp8_tflops);
  RecordProperty("copy_gbs", std::to_string(c.copy_gbs));
  RecordProperty("bf16_tflops", std::to_string(c.bf16_tflops));
  RecordProperty("fp8_tflops", std::to_string(c.fp8_tflops));
  EXPECT_GT(c.copy_gbs, 500);
  EXPECT_GT(c.bf16_tflops, 100);
  if (sm80_forced())
    EXPECT_EQ(c.fp8_tflops, 0.0) << "the sm80 kernel set has no FP8 products";
  else
    EXPECT_GT(c.fp8_tflops, c.bf16_tflops);
}

// For the CPU oracle: host copies of exactly what the loader generates on the GPU (matrices and the
// embedding, but not kv_b_proj, which the loader splits on the host), DummyWeights' host values else.
class DeviceValuesOnHost final : public WeightSource {
 public:
  DeviceValuesOnHost(const ModelConfig& cfg, DummyWeights& inner, Backend& gpu) : cfg_(cfg), inner_(inner), gpu_(gpu) {}
  std::vector<std::string> check(const std::vector<TensorSpec>&) override { return {}; }
  bool has(const std::string&) const override { return true; }
  std::string describe() const override { return "device dummy values on the host"; }
  Tensor get(const TensorSpec& s) override {
    const bool matrix = s.role == TensorRole::Linear || s.role == TensorRole::Dense || s.role == TensorRole::Embedding;
    if (!matrix || s.name.ends_with("kv_b_proj.weight")) return inner_.get(s);
    return host_bytes(gpu_.random_weight(spec_storage_dtype(cfg_, s), s.shape, *inner_.random_fill(s)));
  }

 private:
  const ModelConfig& cfg_;
  DummyWeights& inner_;
  Backend& gpu_;
};

TEST(GpuDummyWeights, DeviceGeneratedModelMatchesCpuOnSameValues) {
  DS_REQUIRE_GPU();
  DS_REQUIRE_FIXTURES();
  for (const char* name : {"tiny-v3-fp8", "tiny-v3-bf16"}) {
    const ModelConfig cfg = ModelConfig::load(fixtures_dir() + "/" + name);
    TestModel g;
    g.backend = make_gpu_backend();
    g.source = std::make_unique<DummyWeights>(cfg, 7);
    const int64_t before = g.backend->persistent_bytes();
    g.model = std::make_unique<ReplicaRunner>(cfg, *g.backend, *g.source, 4096);
    EXPECT_GT(g.backend->persistent_bytes(), before);
    g.pool = std::make_unique<PagePool>(64, 16);
    g.cache = g.model->make_cache(64, 16, false, std::nullopt);

    TestModel c;
    c.backend = create_backend(DeviceKind::Cpu);
    auto dummy = std::make_unique<DummyWeights>(cfg, 7);
    DeviceValuesOnHost host_values(cfg, *dummy, *g.backend);
    c.model = std::make_unique<ReplicaRunner>(cfg, *c.backend, host_values, 4096);
    c.source = std::move(dummy);
    c.pool = std::make_unique<PagePool>(64, 16);
    c.cache = c.model->make_cache(64, 16, false, std::nullopt);

    std::vector<int32_t> ids;
    for (int i = 0; i < 40; ++i) ids.push_back((i * 577 + 13) % cfg.vocab_size);
    RunResult got = run_on(g, ids, RunOptions{0, 20}), ref = run_on(c, ids, RunOptions{0, 20});
    LogprobStats s;
    s.add(got.logits, ref.logits);
    std::printf("[ stats    ] dummy %s on the GPU vs the CPU on the same values: %s\n", name, s.str().c_str());
    for (const auto& row : got.logits)
      for (float v : row) ASSERT_TRUE(std::isfinite(v)) << name;
    EXPECT_LE(s.quantile(0.5), 0.25) << name << ": " << s.str();
    EXPECT_LE(s.quantile(0.9), 1.0) << name << ": " << s.str();
    EXPECT_GE(s.agreement(), 0.85) << name << ": " << s.str();
  }
}

}  // namespace
}  // namespace dsserve::test
