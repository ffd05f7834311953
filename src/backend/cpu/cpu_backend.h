// The CPU backend: the numerical oracle. float32 activations, weights dequantized to float32 at
// load, OpenBLAS for matrix products, plain loops elsewhere: simple and obviously correct.
#pragma once
#include <atomic>

#include "backend/backend.h"

namespace dsserve {

class CpuBackend : public Backend {
 public:
  std::string name() const override { return "cpu"; }
  Device device() const override { return Device::CPU; }
  DType activation_dtype() const override { return DType::F32; }

  Tensor alloc(DType dtype, Shape shape) override { return Tensor::zeros_host(dtype, shape); }
  Tensor to_device(const Tensor& host) override;
  Tensor to_host_f32(const Tensor& t) override;
  void begin_forward() override {}

  LinearWeight make_linear(std::span<const WeightPart> row_parts, LinearUse use) override;
  HeadWeight make_head_weight(const Tensor& host_f32, bool from_fp8_blocks = false) override;
  ExpertWeights make_experts(std::span<const ExpertParts> experts) override;
  Tensor make_vector(const Tensor& host) override;
  Tensor make_embedding(const Tensor& host) override;
  Tensor make_rope_table(const Tensor& host_cos_sin) override;

  Tensor embedding(const Tensor& table, const Tensor& ids) override;
  Tensor rms_norm(const Tensor& x, const Tensor& w, float eps) override;
  Tensor add_rms_norm(Tensor& residual, const Tensor& x, const Tensor& w, float eps) override;
  using Backend::linear;  // the Activation form: linear on its rows
  Tensor linear(const Tensor& x, const LinearWeight& w) override;
  Tensor head_linear(const Tensor& x, const HeadWeight& w) override;
  void rope_inplace(Tensor& x, const Tensor& positions, const Tensor& table) override;
  Tensor silu_mul(const Tensor& gate_up) override;
  void add_inplace(Tensor& x, const Tensor& y) override;
  Tensor gather_rows(const Tensor& x, const Tensor& rows) override;
  Tensor concat_cols(const Tensor& a, const Tensor& b) override;
  Tensor contiguous(const Tensor& x) override;

  void store_latent(Tensor& layer_cache, const Tensor& c_kv, const Tensor& k_pe,
                    const AttentionBatch& batch) override;
  Tensor gather_latent(const Tensor& layer_cache, const AttentionBatch& batch) override;
  Tensor mla_attention_expanded(const Tensor& q, const Tensor& kv, const Tensor& k_pe, const AttentionBatch& batch,
                                float scale) override;
  Tensor mla_attention_absorbed(const Tensor& q, const Tensor& layer_cache, const AttentionBatch& batch,
                                int64_t kv_lora_rank, float scale) override;
  void move_cache_slots(Tensor& cache, const Tensor& src, const Tensor& dst) override;

  RouterOutput moe_route(const Tensor& x, const LinearWeight& gate, const Tensor& bias,
                         const RouterParams& p) override;
  Tensor moe_experts(const Tensor& x, const ExpertWeights& w, const RouterOutput& route) override;

  Tensor upload_i32(const std::vector<int32_t>& v, Shape shape) override;
  void write_i32(Tensor& dst, const int32_t* src, int64_t rows, int64_t cols, int64_t src_ld) override;
  void copy_into(Tensor& dst, const Tensor& src) override;

  std::vector<SampledToken> sample(const Tensor& logits, std::span<const SamplingRow> rows) override;  // cpu_sampling.cpp

  int64_t progress() const override { return progress_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> progress_{0};  // attention query rows done (see Backend::progress)
};

// Backend-private weight layouts, shared by the CPU op files.
const Tensor& cpu_linear_weight(const LinearWeight& w);     // [out, in] F32
const Tensor& cpu_head_weight(const HeadWeight& w);         // [heads, out, in] F32
const Tensor& cpu_experts_gate_up(const ExpertWeights& w);  // [E, 2I, H] F32 (gate rows, then up rows)
const Tensor& cpu_experts_down(const ExpertWeights& w);     // [E, H, I] F32

// The CPU backends of one tensor-parallel group (cpu_group.cpp) and of data-parallel attention
// (cpu_dp_group.cpp); create_backends (backend.h) chooses between them and the CUDA ones.
std::vector<std::unique_ptr<Backend>> create_cpu_group_backends(int world);
std::vector<std::unique_ptr<Backend>> create_cpu_data_parallel_backends(int world, int groups);

// y[r, :] = x[r, :] W^T for F32 row-major x (rows may be strided) and W [out, in] contiguous.
void cpu_matmul_nt(const Tensor& x, const float* w, int64_t out_features, float* y);

}  // namespace dsserve
