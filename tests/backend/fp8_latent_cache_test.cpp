// The CPU oracle's FP8 latent cache (e4m3 / e5m2, scale 1.0): store then gather gives every value
// rounded to FP8 and widened back (FP8 values themselves exactly, beyond the largest finite value
// saturated), absorbed attention over an FP8 cache equals attention over a float32 cache holding the
// rounded values, and move_cache_slots moves one-byte rows.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "backend/backend.h"
#include "core/dtype.h"

namespace dsserve {
namespace {

constexpr int64_t kRank = 128, kRope = 32, kLatent = kRank + kRope, kSlots = 64;

Tensor host_i32(const std::vector<int32_t>& v) {
  Tensor t = Tensor::zeros_host(DType::I32, {int64_t(v.size())});
  std::copy(v.begin(), v.end(), t.ptr<int32_t>());
  return t;
}

// One sequence of `keys` tokens in slots page_table[j / page_size] * page_size + j % page_size,
// the last `queries` of which are new.
AttentionBatch one_sequence(int keys, int queries, int page_size, const std::vector<int32_t>& pages) {
  AttentionBatch b;
  b.num_seqs = 1;
  b.num_tokens = queries;
  b.page_size = page_size;
  b.max_pages = int(pages.size());
  std::vector<int32_t> slots, positions;
  for (int j = keys - queries; j < keys; ++j) {
    slots.push_back(pages[size_t(j / page_size)] * page_size + j % page_size);
    positions.push_back(j);
  }
  b.out_slots = host_i32(slots);
  b.positions = host_i32(positions);
  b.page_table = host_i32(pages);
  b.h_query_start = {0, queries};
  b.h_seq_lens = {keys};
  b.h_key_start = {0, keys};
  b.query_start = host_i32(b.h_query_start);
  b.seq_lens = host_i32(b.h_seq_lens);
  b.key_start = host_i32(b.h_key_start);
  return b;
}

// Random latent rows with a spread of magnitudes: subnormal FP8, ordinary, and beyond the range.
Tensor random_rows(int64_t rows, int64_t cols, uint32_t seed, float big) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> n(0.0f, 1.0f);
  std::uniform_int_distribution<int> kind(0, 9);
  Tensor t = Tensor::zeros_host(DType::F32, {rows, cols});
  for (int64_t i = 0; i < t.numel(); ++i) {
    const int k = kind(rng);
    const float scale = k == 0 ? 1e-3f : k == 1 ? big : 2.0f;
    t.ptr<float>()[i] = n(rng) * scale;
  }
  return t;
}

float rounded(DType t, float x) { return t == DType::F8_E4M3 ? e4m3_to_f32(f32_to_e4m3(x)) : e5m2_to_f32(f32_to_e5m2(x)); }

class Fp8LatentCache : public ::testing::TestWithParam<DType> {
 protected:
  std::unique_ptr<Backend> be_ = create_backend(DeviceKind::Cpu);
  DType t() const { return GetParam(); }
  float max_finite() const { return t() == DType::F8_E4M3 ? 448.0f : 57344.0f; }
};

TEST_P(Fp8LatentCache, StoreThenGatherRoundsEachValueOnce) {
  const int keys = 40, page = 8;
  const std::vector<int32_t> pages = {5, 2, 7, 0, 3};
  AttentionBatch b = one_sequence(keys, keys, page, pages);
  Tensor rows = random_rows(keys, kLatent, 7, 4.0f * max_finite());
  Tensor cache = be_->alloc(t(), {kSlots, kLatent});
  be_->store_latent(cache, rows.slice(1, 0, kRank), rows.slice(1, kRank, kLatent), b);
  Tensor got = be_->gather_latent(cache, b);
  ASSERT_EQ(got.dtype(), DType::F32);
  int saturated = 0, changed = 0;
  for (int64_t i = 0; i < rows.numel(); ++i) {
    const float x = rows.ptr<float>()[i], y = got.ptr<float>()[i];
    EXPECT_EQ(y, rounded(t(), x)) << "value " << i << ": " << x;
    if (std::fabs(x) >= max_finite()) {
      ++saturated;
      EXPECT_EQ(std::fabs(y), max_finite()) << x << " saturates";
    }
    changed += y != x;
    // Round to nearest: the error is at most half the spacing of FP8 values around x.
    if (std::fabs(x) < max_finite() && std::fabs(x) > 0.1f) {
      EXPECT_LE(std::fabs(y - x), std::fabs(x) * (t() == DType::F8_E4M3 ? 1.0f / 16 : 1.0f / 8)) << x;
    }
  }
  EXPECT_GT(saturated, 0) << "the input had values beyond the FP8 range";
  EXPECT_GT(changed, rows.numel() / 2) << "most random floats are not FP8 values";
  // The cache's bytes are the FP8 encodings.
  const uint8_t* bytes = static_cast<const uint8_t*>(cache.data());
  const int64_t slot0 = int64_t(pages[0]) * page;
  for (int64_t c = 0; c < kLatent; ++c) {
    const uint8_t want = t() == DType::F8_E4M3 ? f32_to_e4m3(rows.ptr<float>()[c]) : f32_to_e5m2(rows.ptr<float>()[c]);
    EXPECT_EQ(bytes[slot0 * kLatent + c], want) << "column " << c;
  }
}

TEST_P(Fp8LatentCache, Fp8ValuesRoundTripExactly) {
  // Every finite FP8 value (each byte decoded), stored and read back unchanged.
  std::vector<float> values;
  for (int v = 0; v < 256; ++v) {
    const float f = t() == DType::F8_E4M3 ? e4m3_to_f32(uint8_t(v)) : e5m2_to_f32(uint8_t(v));
    if (std::isfinite(f)) values.push_back(f);
  }
  const int keys = int((values.size() + kLatent - 1) / kLatent);
  std::vector<int32_t> pages;
  for (int i = 0; i < keys; ++i) pages.push_back(2 * i + 1);
  AttentionBatch b = one_sequence(keys, keys, 1, pages);
  Tensor rows = Tensor::zeros_host(DType::F32, {keys, kLatent});
  for (size_t i = 0; i < values.size(); ++i) rows.ptr<float>()[i] = values[i];
  Tensor cache = be_->alloc(t(), {kSlots, kLatent});
  be_->store_latent(cache, rows.slice(1, 0, kRank), rows.slice(1, kRank, kLatent), b);
  Tensor got = be_->gather_latent(cache, b);
  for (size_t i = 0; i < values.size(); ++i) EXPECT_EQ(got.ptr<float>()[i], values[i]) << "value " << i;
  EXPECT_GE(values.size(), t() == DType::F8_E4M3 ? 254u : 248u);
}

TEST_P(Fp8LatentCache, AbsorbedAttentionReadsTheRoundedValues) {
  const int keys = 37, queries = 3, page = 4, heads = 4;
  std::vector<int32_t> pages;
  for (int i = 0; i < 10; ++i) pages.push_back((7 * i + 3) % 16);
  AttentionBatch b = one_sequence(keys, keys, page, pages);
  Tensor rows = random_rows(keys, kLatent, 11, 2.0f * max_finite());
  Tensor fp8 = be_->alloc(t(), {kSlots, kLatent}), f32 = be_->alloc(DType::F32, {kSlots, kLatent});
  Tensor r = Tensor::zeros_host(DType::F32, {keys, kLatent});
  for (int64_t i = 0; i < rows.numel(); ++i) r.ptr<float>()[i] = rounded(t(), rows.ptr<float>()[i]);
  be_->store_latent(fp8, rows.slice(1, 0, kRank), rows.slice(1, kRank, kLatent), b);
  be_->store_latent(f32, r.slice(1, 0, kRank), r.slice(1, kRank, kLatent), b);
  AttentionBatch d = one_sequence(keys, queries, page, pages);
  Tensor q = random_rows(queries * heads, kLatent, 13, 1.0f);
  Tensor q3 = Tensor(q.data(), DType::F32, {queries, heads, kLatent}, Device::CPU, q.storage());
  Tensor a = be_->mla_attention_absorbed(q3, fp8, d, kRank, 0.05f);
  Tensor want = be_->mla_attention_absorbed(q3, f32, d, kRank, 0.05f);
  ASSERT_EQ(a.numel(), want.numel());
  for (int64_t i = 0; i < a.numel(); ++i) ASSERT_EQ(a.ptr<float>()[i], want.ptr<float>()[i]) << i;
}

TEST_P(Fp8LatentCache, MoveCacheSlotsMovesOneByteRows) {
  const int layers = 3;
  Tensor cache = be_->alloc(t(), {layers, kSlots, kLatent});
  uint8_t* bytes = static_cast<uint8_t*>(cache.data());
  for (int64_t i = 0; i < cache.numel(); ++i) bytes[i] = uint8_t((i * 37 + 11) % 251);
  std::vector<uint8_t> before(bytes, bytes + cache.numel());
  // A chain: 5 -> 9, then 9 -> 20 (moves run in order), then 30 -> 5.
  be_->move_cache_slots(cache, host_i32({5, 9, 30}), host_i32({9, 20, 5}));
  auto row = [&](const std::vector<uint8_t>& v, int l, int s) { return std::vector<uint8_t>(v.begin() + (l * kSlots + s) * kLatent, v.begin() + (l * kSlots + s + 1) * kLatent); };
  std::vector<uint8_t> after(bytes, bytes + cache.numel());
  for (int l = 0; l < layers; ++l) {
    EXPECT_EQ(row(after, l, 9), row(before, l, 5)) << "layer " << l;
    EXPECT_EQ(row(after, l, 20), row(before, l, 5)) << "layer " << l << ": the chain carries slot 5 on";
    EXPECT_EQ(row(after, l, 5), row(before, l, 30)) << "layer " << l;
    EXPECT_EQ(row(after, l, 4), row(before, l, 4)) << "layer " << l << ": untouched";
    EXPECT_EQ(row(after, l, 21), row(before, l, 21)) << "layer " << l << ": untouched";
  }
}

INSTANTIATE_TEST_SUITE_P(Formats, Fp8LatentCache, ::testing::Values(DType::F8_E4M3, DType::F8_E5M2),
                         [](const auto& info) { return info.param == DType::F8_E4M3 ? "e4m3" : "e5m2"; });

}  // namespace
}  // namespace dsserve
