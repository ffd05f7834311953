// The CUDA backend: every op of backend.h on one GPU (sm_90a). Activations and the latent cache
// are BF16 with float32 accumulation; linear layers run on cuBLASLt as BF16 products or, for FP8
// checkpoints, as W8A8 block-scaled FP8 products (decode sizes: our own W8A16 kernel); the router
// and the logits are float32.
// Ops allocate their outputs from a caching pool (see memory/scratch_pool.h) and run on one
// stream; decode forwards can be captured as CUDA graphs; host copies (to_host_f32) and token
// choice (sample) synchronise the stream. Kernels live in one folder per family beside their
// launchers; this class only checks shapes, picks kernels and sizes scratch.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/attention_prefill/mla_expanded.h"
#include "backend/cuda/gemm/cublaslt_gemm.h"
#include "backend/cuda/gemm/fp8_decode_gemm.h"
#include "backend/cuda/memory/scratch_pool.h"
#include "backend/cuda/mla_decode/mla_absorbed.h"

namespace dsserve::cuda {

// One row block of a prepared linear weight: rows [row0, row0 + rows) of the output.
struct LinearSegment {
  int64_t row0 = 0, rows = 0;
  bool fp8 = false;
  Tensor weight;  // [rows, in]: BF16 (or F32 for the router), or F8_E4M3
  Tensor scale;   // fp8: [ceil(rows / 128), fp8_weight_scale_ld(in)] F32
  // fp8 at prefill sizes: whether the sm90 kernel (gemm/sm90) takes this segment, else why not
  // (the segment then runs on cuBLASLt).
  bool sm90 = false;
  std::string sm90_refusal;
};

struct CudaLinear {
  LinearUse use = LinearUse::Projection;
  std::vector<LinearSegment> segments;
  bool any_fp8() const;
};

struct CudaHeadWeight {
  Tensor weight;  // [heads, out, in] BF16
  // From a block-FP8 checkpoint with out and in multiples of 128: the same values as e4m3 with one
  // float32 scale per 128x128 block of each head (the per-head products then run in FP8 on sm_90).
  bool fp8 = false;
  Tensor weight_fp8;  // [heads, out, in] F8_E4M3
  Tensor scale;       // [heads, out / 128, fp8_weight_scale_ld(in)] F32
};

struct CudaExperts {
  bool fp8 = false;
  Tensor gate_up;        // [E, 2I, H] BF16 or F8_E4M3 (gate rows, then up rows)
  Tensor down;           // [E, H, I]
  Tensor gate_up_scale;  // fp8: [E, 2I / 128, fp8_weight_scale_ld(H)] F32
  Tensor down_scale;     // fp8: [E, ceil(H / 128), fp8_weight_scale_ld(I)] F32
};

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int device_index);
  ~CudaBackend() override;

  std::string name() const override { return "cuda"; }
  Device device() const override { return Device::CUDA; }
  DType activation_dtype() const override { return DType::BF16; }

  Tensor alloc(DType dtype, Shape shape) override;
  Tensor to_device(const Tensor& host) override;
  Tensor to_host_f32(const Tensor& t) override;
  void begin_forward() override;
  void synchronize() override;
  DeviceMemory memory() const override;
  int64_t persistent_bytes() const override { return *live_bytes_; }
  DeviceCeilings measure_ceilings() override;  // cuda_ceilings.cpp
  // The sm90 block-FP8 GEMM (gemm/sm90), written and compiled but not yet run on a GPU, so off by
  // default: on, FP8 linears of at least kFp8Sm90MinTokens tokens, the routed experts beyond the
  // decode kernel's range (MoePath::Auto) and head weights prepared afterwards (FP8 per-head
  // products) take it.
  void set_sm90_fp8_gemm(bool on) override {
    fp8_sm90_min_tokens_ = on ? kFp8Sm90MinTokens : INT64_MAX;
    moe_sm90_ = on;
    head_fp8_ = on;
  }
  bool sm90_fp8_gemm() const { return moe_sm90_; }
  // Synchronises the stream (the decode path counts on the device): not inside a captured forward.
  int64_t experts_run() const override;

  Tensor random_weight(DType dtype, Shape shape, const RandomFill& fill) override;

  LinearWeight make_linear(std::span<const WeightPart> row_parts, LinearUse use) override;
  HeadWeight make_head_weight(const Tensor& host_f32, bool from_fp8_blocks = false) override;
  ExpertWeights make_experts(std::span<const ExpertParts> experts) override;
  Tensor make_vector(const Tensor& host) override;
  Tensor make_embedding(const Tensor& host) override;
  Tensor make_rope_table(const Tensor& host_cos_sin) override;

  Tensor embedding(const Tensor& table, const Tensor& ids) override;
  Tensor rms_norm(const Tensor& x, const Tensor& w, float eps) override;
  Tensor add_rms_norm(Tensor& residual, const Tensor& x, const Tensor& w, float eps) override;
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
  bool can_capture() const override { return true; }
  int64_t max_recorded_moe_pairs() const override { return kMoeGroupedMaxPairs; }
  std::unique_ptr<CapturedForward> capture(const std::function<void()>& body) override;  // cuda_graph.cpp

  std::vector<SampledToken> sample(const Tensor& logits, std::span<const SamplingRow> rows) override;  // cuda_ops_sampling.cpp

  void all_reduce_sum(Tensor& x) override;  // cuda_collective.cpp
  Tensor all_gather_cols(const Tensor& x) override;
  void bind_thread() override;
  std::string fatal_error() override;  // cuda_backend.cpp: a sticky error of the context
  // Joins a tensor-parallel group: comm is an ncclComm_t of this device, owned by the pointer.
  void set_communicator(std::shared_ptr<void> comm) { comm_ = std::move(comm); }
  // Data-parallel attention (cuda_data_parallel.cpp): comm_ is then the attention group's; world
  // spans every rank, across the ranks at this rank's position in every group (ncclComm_t each).
  void all_reduce_sum_world(Tensor& x) override;
  Tensor all_gather_rows_groups(const Tensor& x, std::span<const int32_t> rows_per_group) override;
  void set_data_parallel_communicators(std::shared_ptr<void> world, std::shared_ptr<void> across) {
    world_comm_ = std::move(world);
    across_comm_ = std::move(across);
  }

  // Not in the interface: what a prepared linear runs as ("fp8 [1536] + bf16 [576]"), for logs and tests.
  static std::string describe(const LinearWeight& w);
  static std::string describe(const ExpertWeights& w);
  int device_index() const { return device_; }
  // Attention kernels: the Hopper (wgmma) kernels where the device and shapes allow (default), then
  // the mma.sync ones, then the scalar references (tests check each against the CPU backend).
  // set_tensor_core_attention sets both families (the tensor-core kernels, or the scalar ones);
  // set_mla_decode_kernel and set_mla_prefill_kernel pick where to start (a kernel that cannot take
  // a call's shapes hands it to the next one).
  void set_tensor_core_attention(bool on) {
    mla_prefill_kernel_ = on ? MlaPrefillKernel::Sm90 : MlaPrefillKernel::Scalar;
    mla_decode_kernel_ = on ? MlaDecodeKernel::Sm90 : MlaDecodeKernel::Scalar;
  }
  void set_mla_decode_kernel(MlaDecodeKernel k) { mla_decode_kernel_ = k; }
  void set_mla_prefill_kernel(MlaPrefillKernel k) { mla_prefill_kernel_ = k; }
  // The kernel that ran the last mla_attention_expanded call (for tests and benchmarks).
  MlaPrefillKernel last_mla_prefill() const { return last_mla_prefill_; }
  // The kernel and split count of the last mla_attention_absorbed call (for tests and benchmarks).
  struct MlaDecodeLaunch {
    MlaDecodeKernel kernel = MlaDecodeKernel::Sm90;
    int num_splits = 0;
  };
  MlaDecodeLaunch last_mla_decode() const { return last_mla_decode_; }
  // Routed experts: Auto runs batches of at most kMoeGroupedMaxPairs (token, expert) pairs on the
  // device-side grouped products (no host synchronisation: capturable) and larger ones on cuBLASLt
  // (one product per active expert, after reading the counts back); tests and benchmarks force one.
  // Larger batches of FP8 experts on sm_90 run as expert-grouped FP8 GEMMs (gemm/sm90, grouping
  // on the device: no synchronisation); BF16 experts, or devices without sm_90, on cuBLASLt.
  enum class MoePath { Auto, Grouped, Cublaslt, Sm90 };
  static constexpr int64_t kMoeGroupedMaxPairs = 2048;
  void set_moe_path(MoePath path) { moe_path_ = path; }
  // The path of the last moe_experts call beyond the decode kernel's range (tests, benchmarks).
  MoePath last_moe_path() const { return last_moe_path_; }
  // FP8 linears run on the decode kernel (gemm/fp8_decode_gemm.h) where it was measured faster than
  // cuBLASLt on the H200 (gemm/README.md): calls of at most kFp8DecodeDefaultTokens tokens on
  // linears of at most kFp8DecodeDefaultRows output rows (the fused q_a + kv_a); everything else on
  // cuBLASLt. set_fp8_decode_max_tokens(t) overrides that for tests and benchmarks: every FP8 linear
  // of at most t tokens (clamped to [0, kFp8DecodeMaxTokens]) on the kernel, whatever its rows; 0
  // sends every call to cuBLASLt. reset_fp8_decode_policy() restores the measured rule.
  static constexpr int64_t kFp8DecodeDefaultTokens = 16, kFp8DecodeDefaultRows = 2560;
  void set_fp8_decode_max_tokens(int64_t t) {
    fp8_decode_max_tokens_ = std::clamp<int64_t>(t, 0, kFp8DecodeMaxTokens);
    fp8_decode_max_rows_ = INT64_MAX;
  }
  void reset_fp8_decode_policy() {
    fp8_decode_max_tokens_ = kFp8DecodeDefaultTokens;
    fp8_decode_max_rows_ = kFp8DecodeDefaultRows;
  }
  bool fp8_decode_applies(int64_t tokens, int64_t rows) const {
    return tokens <= fp8_decode_max_tokens_ && rows <= fp8_decode_max_rows_;
  }
  // With set_sm90_fp8_gemm(true), FP8 linears of at least fp8_sm90_min_tokens() tokens (prefill
  // sizes) run on the sm90 block-FP8 GEMM (gemm/sm90) on sm_90 devices, segment by segment where
  // it takes the segment (fp8_paths says which); smaller calls (outside the decode kernel's range)
  // and refused segments run on cuBLASLt. set_fp8_sm90_min_tokens(INT64_MAX) sends every call to
  // cuBLASLt (the baseline in tests and benchmarks).
  static constexpr int64_t kFp8Sm90MinTokens = 128;
  void set_fp8_sm90_min_tokens(int64_t t) { fp8_sm90_min_tokens_ = t; }
  int64_t fp8_sm90_min_tokens() const { return fp8_sm90_min_tokens_; }
  // "sm90 [2112]" or "cublaslt [576] (sm90: reason)" per FP8 segment of a prepared linear.
  static std::string fp8_paths(const LinearWeight& w);
  // The path of the last linear call that had FP8 segments (for tests and benchmarks); Sm90 when
  // at least one segment ran on the sm90 kernel.
  enum class Fp8LinearPath { None, Decode, Cublaslt, Sm90 };
  Fp8LinearPath last_fp8_linear() const { return last_fp8_linear_; }
  // head_linear runs FP8 heads (CudaHeadWeight::fp8) on the sm90 GEMM as a strided batch, or, off,
  // their BF16 copy on cuBLASLt (the baseline in tests and benchmarks).
  void set_head_fp8(bool on) { head_fp8_ = on; }
  // Whether the last head_linear call ran in FP8 (tests, benchmarks).
  bool last_head_fp8() const { return last_head_fp8_; }
  cudaStream_t stream() const { return stream_; }
  size_t scratch_bytes() const { return scratch_.capacity_bytes(); }
  size_t graph_pool_bytes() const { return graph_pool_.capacity_bytes(); }

  // Helpers shared by the op files (public so the op files' free functions can use them).
  Tensor scratch(DType dtype, Shape shape);                      // per-forward, uninitialised
  Tensor as_dtype(const Tensor& x, DType dtype, bool need_packed_rows);  // converts / packs when needed
  void check(cudaError_t e, const char* what);
  LtGemm& gemm() { return *gemm_; }

 private:
  Tensor upload_bytes(const void* host, DType dtype, Shape shape);  // persistent copy of contiguous bytes
  Tensor host_copy(const Tensor& t);  // a host tensor with t's bytes (any dtype; t packed first if strided)
  WeightPart on_host(const WeightPart& p);  // p itself when its weight is in host memory
  LinearSegment make_segment(std::span<const WeightPart> parts, int64_t row0, bool fp8, LinearUse use, int64_t in,
                             int64_t out_features);
  bool moe_grouped_supported(const ExpertWeights& w, int64_t pairs) const;
  Tensor moe_experts_grouped(const Tensor& x, const ExpertWeights& w, const RouterOutput& route);
  Tensor moe_experts_cublaslt(const Tensor& x, const ExpertWeights& w, const RouterOutput& route);
  bool moe_sm90_supported(const ExpertWeights& w) const;
  Tensor moe_experts_sm90(const Tensor& x, const ExpertWeights& w, const RouterOutput& route);

  int device_ = 0;
  MlaPrefillKernel mla_prefill_kernel_ = MlaPrefillKernel::Sm90;
  MlaPrefillKernel last_mla_prefill_ = MlaPrefillKernel::Sm90;
  MlaDecodeKernel mla_decode_kernel_ = MlaDecodeKernel::Sm90;
  MlaDecodeLaunch last_mla_decode_;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<LtGemm> gemm_;
  ScratchPool scratch_{"scratch memory of the ops"};
  ScratchPool graph_pool_{"memory of captured CUDA graphs"};
  ScratchPool* active_pool_ = &scratch_;  // graph_pool_ while capture() runs its body
  std::shared_ptr<std::atomic<int64_t>> live_bytes_ = std::make_shared<std::atomic<int64_t>>(0);
  MoePath moe_path_ = MoePath::Auto;
  MoePath last_moe_path_ = MoePath::Auto;
  bool head_fp8_ = false, last_head_fp8_ = false;  // set_sm90_fp8_gemm
  bool moe_sm90_ = false;  // MoePath::Auto may take the sm90 grouped path (set_sm90_fp8_gemm)
  int64_t fp8_decode_max_tokens_ = kFp8DecodeDefaultTokens, fp8_decode_max_rows_ = kFp8DecodeDefaultRows;
  Fp8LinearPath last_fp8_linear_ = Fp8LinearPath::None;
  int64_t fp8_sm90_min_tokens_ = INT64_MAX;  // set_sm90_fp8_gemm
  int64_t experts_run_ = 0;     // counted on the host by the cuBLASLt path
  Tensor experts_run_device_;   // [1] I64: counted on the device by the grouped path
  std::shared_ptr<void> comm_;  // ncclComm_t, when in a tensor-parallel group
  std::shared_ptr<void> world_comm_, across_comm_;  // ncclComm_t each, with data-parallel attention
};

}  // namespace dsserve::cuda
