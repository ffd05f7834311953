// MLA's fused steps around the projections (the fused decode path, which the tests turn on) against
// the CPU oracle's unfused ops (Backend's reference compositions) on fresh random inputs: mla_prologue (latents normed, RoPE'd and stored
// in BF16 and FP8 caches over pages of 1, 16 and 64 slots; the q_a norm with its quantization, bit
// for bit what the host quantizer makes of the GPU's rows) and mla_absorb_q (W_UK^T written into the
// absorbed query beside the RoPE'd q_pe), at the DeepSeek-V3 shape and a small one, and both replayed
// from a CUDA graph (bit for bit).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "backend/cuda/cuda_backend.h"
#include "gpu/gpu_test_util.h"

namespace dsserve::test {
namespace {

class MlaFusion : public ::testing::Test {
 protected:
  void SetUp() override {
    DS_REQUIRE_GPU();
    if (sm80_forced()) GTEST_SKIP() << "the fused decode path (FP8 tensor cores) is not in the sm80 kernel set";
    gpu().begin_forward();
    cpu().begin_forward();
    static_cast<cuda::CudaBackend&>(gpu()).set_fused_decode(true);  // the default
  }
  void record(const std::string& name, double err, double tol) {
    RecordProperty(name, std::to_string(err));
    EXPECT_LE(err, tol) << name;
  }
  Rng rng{std::random_device{}()};
};

// Host values of the e4m3 rows of an activation (dequantized with their scales) and the host
// quantizer applied to its BF16 rows: the number of values that differ, padding rows included.
int64_t quantization_mismatches(const Activation& a) {
  const Tensor rows = gpu().to_host_f32(a.x);
  const int64_t T = rows.size(0), K = rows.size(1), tq = a.q.size(0);
  std::vector<uint8_t> q(size_t(tq * K));
  std::vector<float> s(size_t(tq * K / 128));
  if (cudaMemcpy(q.data(), a.q.data(), q.size(), cudaMemcpyDeviceToHost) != cudaSuccess ||
      cudaMemcpy(s.data(), a.q_scale.data(), s.size() * 4, cudaMemcpyDeviceToHost) != cudaSuccess)
    return -1;
  int64_t wrong = 0;
  for (int64_t t = 0; t < tq; ++t)
    for (int64_t b = 0; b < K; b += 128) {
      float amax = 0;
      for (int64_t k = b; k < b + 128 && t < T; ++k) amax = std::max(amax, std::fabs(rows.ptr<float>()[t * K + k]));
      const float want_s = t < T ? std::max(amax, 1e-12f) / 448.0f : 1.0f;
      const float got_s = s[size_t((b / 128) * tq + t)];
      wrong += got_s != want_s;
      for (int64_t k = b; k < b + 128; ++k) {
        const uint8_t want = t < T ? f32_to_e4m3(rows.ptr<float>()[t * K + k] / want_s) : 0;
        wrong += q[size_t(t * K + k)] != want;
      }
    }
  return wrong;
}

TEST_F(MlaFusion, PrologueStoresLatentsAndNormsQ) {
  struct Case {
    int64_t q_part, kr, dr;
  };
  for (const Case cs : {Case{1536, 512, 64}, Case{128, 64, 16}}) {
    for (auto [page_size, cache_dtype] : {std::pair{16, DType::BF16}, std::pair{1, DType::BF16},
                                          std::pair{64, DType::F8_E4M3}}) {
      const int64_t L = cs.kr + cs.dr, width = cs.q_part + L;
      BatchSpec spec = make_batch_spec({{0, 37}, {5, 3}, {100, 1}}, page_size, rng);
      AttentionBatch bc = make_batch(cpu(), spec), bg = make_batch(gpu(), spec);
      const int64_t slots = spec.num_pages * page_size, T = bc.num_tokens;
      const std::string tag = "_q" + std::to_string(cs.q_part) + "_ps" + std::to_string(page_size) +
                              (cache_dtype == DType::BF16 ? "_bf16" : "_fp8");
      Tensor table = uniform({256, cs.dr}, rng, -1.0f, 1.0f);
      Tensor tc = cpu().make_rope_table(table), tg = gpu().make_rope_table(table);
      Tensor qn = uniform({cs.q_part}, rng, 0.5f, 1.5f), kn = uniform({cs.kr}, rng, 0.5f, 1.5f);
      Tensor qnc = cpu().make_vector(qn), qng = gpu().make_vector(qn), knc = cpu().make_vector(kn), kng = gpu().make_vector(kn);
      Tensor cache_host = randn({slots, L}, rng);
      Tensor cc = cpu().to_device(cache_host);
      Tensor cg = gpu().alloc(cache_dtype, {slots, L});
      if (cache_dtype == DType::BF16) gpu().copy_into(cg, to_backend(gpu(), cache_host));
      if (cache_dtype == DType::F8_E4M3) cc = cpu().alloc(DType::F8_E4M3, {slots, L});  // both zero
      // qkv_a as the fused projection leaves it: a strided view is fine, here a column slice.
      Tensor wide = randn({T, width + 16}, rng, 2.0f);
      Tensor xc = cpu().to_device(wide).slice(1, 8, 8 + width), xg = to_backend(gpu(), wide).slice(1, 8, 8 + width);
      Activation qc = cpu().mla_prologue(xc, cs.q_part, &qnc, knc, 1e-6f, tc, cc, bc);
      Activation qg = gpu().mla_prologue(xg, cs.q_part, &qng, kng, 1e-6f, tg, cg, bg);
      record("cache" + tag, rel_err(cpu(), cc, gpu(), cg), cache_dtype == DType::BF16 ? 8e-3 : 3e-2);
      record("q_a_rows" + tag, rel_err(cpu(), qc.x, gpu(), qg.x), 8e-3);
      ASSERT_TRUE(qg.q.defined()) << tag;
      EXPECT_EQ(quantization_mismatches(qg), 0) << tag;
      // qkv_a is left as it was.
      record("qkv_a_unchanged" + tag, rel_err(gpu(), xg, cpu(), cpu().contiguous(xc)), 0.0);
      // No q LoRA: only the latents.
      Activation none = gpu().mla_prologue(xg, cs.q_part, nullptr, kng, 1e-6f, tg, cg, bg);
      EXPECT_FALSE(none.x.defined() || none.q.defined()) << tag;
    }
  }
}

TEST_F(MlaFusion, AbsorbedQueryMatchesOracle) {
  for (auto [n, dn, dr, kr] : {std::tuple{128, 128, 64, 512}, std::tuple{4, 64, 32, 128}}) {
    for (int64_t T : {1, 7, 64}) {
      const std::string tag = "_n" + std::to_string(n) + "_T" + std::to_string(T);
      Tensor wuk = randn({n, kr, dn}, rng, 0.1f);
      HeadWeight kc = cpu().make_head_weight(wuk), kg = gpu().make_head_weight(wuk);
      Tensor table = uniform({512, dr}, rng, -1.0f, 1.0f);
      Tensor tc = cpu().make_rope_table(table), tg = gpu().make_rope_table(table);
      std::vector<int32_t> pos(static_cast<size_t>(T));
      for (auto& p : pos) p = int32_t(rng() % 512);
      Tensor q = randn({T, n * (dn + dr)}, rng);
      Tensor qc = cpu().to_device(q).unflatten(1, n, dn + dr), qg = to_backend(gpu(), q).unflatten(1, n, dn + dr);
      Tensor c = cpu().mla_absorb_q(qc, kc, cpu().upload_i32(pos, {T}), tc);
      Tensor g = gpu().mla_absorb_q(qg, kg, gpu().upload_i32(pos, {T}), tg);
      ASSERT_EQ(g.shape(), Shape({T, n, kr + dr})) << tag;
      record("absorbed_q" + tag, rel_err(cpu(), c, gpu(), g), 1e-2);
      // The RoPE'd part alone: one BF16 rounding ([T n, dr] views: contiguous takes rows and columns).
      record("q_pe" + tag, rel_err(cpu(), cpu().contiguous(c.slice(2, kr, kr + dr).merge_leading()), gpu(),
                                   gpu().contiguous(g.slice(2, kr, kr + dr).merge_leading())), 8e-3);
    }
  }
}

TEST_F(MlaFusion, ReplayedFromCudaGraph) {
  const int64_t q_part = 1536, kr = 512, dr = 64, n = 16, dn = 128, T = 4;
  BatchSpec spec = make_batch_spec({{10, 1}, {3, 1}, {50, 1}, {0, 1}}, 16, rng);
  AttentionBatch bg = make_batch(gpu(), spec);
  Tensor tg = gpu().make_rope_table(uniform({256, dr}, rng, -1.0f, 1.0f));
  Tensor qng = gpu().make_vector(uniform({q_part}, rng, 0.5f, 1.5f)), kng = gpu().make_vector(uniform({kr}, rng, 0.5f, 1.5f));
  HeadWeight kg = gpu().make_head_weight(randn({n, kr, dn}, rng, 0.1f));
  Tensor cache = gpu().alloc(DType::BF16, {spec.num_pages * 16, kr + dr});
  Tensor qkv_a = gpu().alloc(DType::BF16, {T, q_part + kr + dr}), q = gpu().alloc(DType::BF16, {T, n * (dn + dr)});
  auto run = [&](Tensor& q_rows, Tensor& q_full) {
    q_rows = Tensor(), q_full = Tensor();
    q_rows = gpu().mla_prologue(qkv_a, q_part, &qng, kng, 1e-6f, tg, cache, bg).x;
    q_full = gpu().mla_absorb_q(gpu().contiguous(q).unflatten(1, n, dn + dr), kg, bg.positions, tg);
  };
  Tensor graph_rows, graph_full;
  auto graph = gpu().capture([&] { run(graph_rows, graph_full); });
  ASSERT_NE(graph, nullptr);
  for (int round = 0; round < 2; ++round) {
    gpu().copy_into(qkv_a, to_backend(gpu(), randn({T, q_part + kr + dr}, rng)));
    gpu().copy_into(q, to_backend(gpu(), randn({T, n * (dn + dr)}, rng)));
    graph->replay();
    gpu().synchronize();
    Tensor gr = gpu().to_host_f32(graph_rows), gf = gpu().to_host_f32(graph_full), gc = gpu().to_host_f32(cache);
    gpu().begin_forward();
    Tensor er, ef;
    run(er, ef);
    EXPECT_EQ(rel_err(gr, gpu().to_host_f32(er)), 0.0) << "q_a rows, round " << round;
    EXPECT_EQ(rel_err(gf, gpu().to_host_f32(ef)), 0.0) << "absorbed query, round " << round;
    EXPECT_EQ(rel_err(gc, gpu().to_host_f32(cache)), 0.0) << "cache, round " << round;
  }
}

}  // namespace
}  // namespace dsserve::test
