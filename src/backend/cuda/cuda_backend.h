// The CUDA backend: every op of backend.h on one GPU, Hopper (sm_90a) or Ampere (sm_80), with the
// kernel set of its generation (backend/kernel_set.h). Activations and the latent cache are BF16
// with float32 accumulation; linear layers run on cuBLASLt as BF16 products or, for FP8
// checkpoints, as W8A8 block-scaled FP8 products on Hopper (decode sizes: our own kernels; the fused
// decode path, off by default, adds W8A8 decode kernels fed by norms and SiLU-and-mul that quantize
// their outputs) and as W8A16 on Ampere; AWQ and INT8 checkpoints as W4A16 and W8A8 products of
// our own (quant/quant_gemm.h); the router and the logits are float32.
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
#include "backend/kernel_set.h"
#include "backend/cuda/attention_prefill/mla_expanded.h"
#include "backend/cuda/gemm/cublaslt_gemm.h"
#include "backend/cuda/gemm/fp8_decode_gemm.h"
#include "backend/cuda/gemm/w8a8_decode_gemm.h"
#include "backend/cuda/memory/scratch_pool.h"
#include "backend/cuda/mla_decode/mla_absorbed.h"
#include "backend/cuda/quant/quant_gemm.h"

namespace dsserve::cuda {

// One row block of a prepared linear weight: rows [row0, row0 + rows) of the output.
struct LinearSegment {
  int64_t row0 = 0, rows = 0;
  bool fp8 = false;
  Tensor weight;  // [rows, in]: BF16 (or F32 for the router), or F8_E4M3; quant: see QuantWeights
  Tensor scale;   // fp8: [ceil(rows / 128), fp8_weight_scale_ld(in)] F32; quant: see QuantWeights
  // fp8 at prefill sizes: whether the sm90 kernel (gemm/sm90) takes this segment, else why not
  // (the segment then runs on cuBLASLt).
  bool sm90 = false;
  std::string sm90_refusal;
  // AWQ (W4A16: weight = repacked words, scale = scale-zero words [in / group, rows]) or INT8 (W8A8:
  // weight I8 [rows, in], scale F32 [ceil(rows / 128), ceil(in / 128)] or [rows]): quant/quant_gemm.h.
  bool quant = false;
  QuantKind quant_kind = QuantKind::W4A16;
  int group = 0;
};

struct CudaLinear {
  LinearUse use = LinearUse::Projection;
  std::vector<LinearSegment> segments;
  bool any_fp8() const;
};

// The routed pairs grouped by expert on the device (moe_align's outputs), made by the fused router
// of the decode path and used by the W8A8 grouped experts of the same layer.
struct MoeGrouping {
  int64_t experts = 0, pairs = 0, max_items = 0;
  int rows_per_item = 0;
  Tensor counts, offsets, active, totals, items, sorted_pair, pair_row;  // see MoeAlignParams
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
  bool quant = false;  // AWQ or INT8: gate_up / down and their scales as LinearSegment's, stacked [E, ...]
  QuantKind quant_kind = QuantKind::W4A16;
  int group = 0;
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
  // The sm90 block-FP8 GEMM (gemm/sm90) for dense products, off by default (slower than cuBLASLt on
  // the dense V3 shapes: gemm/sm90/README.md): on, FP8 linears of at least kFp8Sm90MinTokens tokens,
  // the routed experts beyond the decode kernels at every size (MoePath::Auto; without it, up to
  // kMoeSm90AutoMaxPairs) and head weights prepared afterwards (FP8 per-head products) take it.
  void set_sm90_fp8_gemm(bool on) override {
    on = on && hopper_kernels();  // the sm80 kernel set has no sm90 GEMM
    fp8_sm90_min_tokens_ = on ? kFp8Sm90MinTokens : INT64_MAX;
    moe_sm90_ = on;
    head_fp8_ = on;
  }
  bool sm90_fp8_gemm() const { return moe_sm90_; }
  // The kernel set (backend/kernel_set.h), chosen from the device's compute capability when the
  // backend is made; force_sm80_kernels() makes a Hopper GPU run the Ampere set (tests, benchmarks;
  // before the weights are prepared). cuda_kernel_set.cpp is the one place that applies a set;
  // every other choice between the sets asks hopper_kernels().
  KernelSet kernel_set() const { return kernel_set_; }
  void force_sm80_kernels() override;
  bool hopper_kernels() const { return kernel_set_ == KernelSet::Sm90; }
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
  Activation rms_norm_quant(const Tensor& x, const Tensor& w, float eps) override;
  Activation add_rms_norm_quant(Tensor& residual, const Tensor& x, const Tensor& w, float eps) override;
  Tensor linear(const Activation& x, const LinearWeight& w) override;
  Tensor mlp(const Activation& x, const LinearWeight& gate_up, const LinearWeight& down) override;
  Tensor head_linear(const Tensor& x, const HeadWeight& w) override;
  void rope_inplace(Tensor& x, const Tensor& positions, const Tensor& table) override;
  Tensor silu_mul(const Tensor& gate_up) override;
  void add_inplace(Tensor& x, const Tensor& y) override;
  Tensor gather_rows(const Tensor& x, const Tensor& rows) override;
  Tensor concat_cols(const Tensor& a, const Tensor& b) override;
  Tensor contiguous(const Tensor& x) override;

  void store_latent(Tensor& layer_cache, const Tensor& c_kv, const Tensor& k_pe,
                    const AttentionBatch& batch) override;
  Activation mla_prologue(const Tensor& qkv_a, int64_t q_part, const Tensor* q_a_norm, const Tensor& kv_a_norm, float eps,
                          const Tensor& rope_table, Tensor& layer_cache, const AttentionBatch& batch) override;
  Tensor mla_absorb_q(const Tensor& q_heads, const HeadWeight& w_uk_t, const Tensor& positions,
                      const Tensor& rope_table) override;
  Tensor gather_latent(const Tensor& layer_cache, const AttentionBatch& batch) override;
  Tensor mla_attention_expanded(const Tensor& q, const Tensor& kv, const Tensor& k_pe, const AttentionBatch& batch,
                                float scale) override;
  Tensor mla_attention_absorbed(const Tensor& q, const Tensor& layer_cache, const AttentionBatch& batch,
                                int64_t kv_lora_rank, float scale) override;
  void move_cache_slots(Tensor& cache, const Tensor& src, const Tensor& dst) override;

  RouterOutput moe_route(const Tensor& x, const LinearWeight& gate, const Tensor& bias,
                         const RouterParams& p) override;
  Tensor moe_experts(const Tensor& x, const ExpertWeights& w, const RouterOutput& route) override;
  Tensor moe_feed_forward(const Activation& x, const ExpertWeights& w, const RouterOutput& route,
                          const LinearWeight* shared_gate_up, const LinearWeight* shared_down) override;

  Tensor upload_i32(const std::vector<int32_t>& v, Shape shape) override;
  void write_i32(Tensor& dst, const int32_t* src, int64_t rows, int64_t cols, int64_t src_ld) override;
  void copy_into(Tensor& dst, const Tensor& src) override;
  bool can_capture() const override { return true; }
  int64_t max_recorded_moe_pairs() const override { return kMoeGroupedMaxPairs; }
  std::unique_ptr<CapturedForward> capture(const std::function<void()>& body) override;  // cuda_graph.cpp
  void set_layer_profiling(bool on) override { layer_profiling_ = on; }  // cuda_graph.cpp: the marks
  void layer_mark(int index) override;
  LayerProfile layer_profile() override;

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
  // Attention kernels: the Hopper (wgmma) kernels where the kernel set, device and shapes allow
  // (default), then the mma.sync ones, then the scalar references (tests check each against the CPU
  // backend). set_tensor_core_attention sets both families (the tensor-core kernels, or the scalar
  // ones); set_mla_decode_kernel and set_mla_prefill_kernel pick where to start (a kernel that
  // cannot take a call's shapes hands it to the next one; the sm80 set starts at the mma.sync ones).
  void set_tensor_core_attention(bool on) {
    mla_prefill_kernel_ = on ? MlaPrefillKernel::Sm90 : MlaPrefillKernel::Scalar;
    mla_decode_kernel_ = on ? MlaDecodeKernel::Sm90 : MlaDecodeKernel::Scalar;
  }
  void set_mla_decode_kernel(MlaDecodeKernel k) { mla_decode_kernel_ = k; }
  // Split count of absorbed decode calls (benchmarks sweep it; 0: the kernel's own choice).
  void set_mla_decode_splits(int splits) { mla_decode_splits_ = splits; }
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
  // device-side grouped products (no host synchronisation: capturable): the mma.sync kernel of
  // moe/moe_grouped_gemm.h (Grouped: BF16 experts, FP8 ones as W8A16), or with the fused decode
  // path FP8 experts on the W8A8 kernels (GroupedW8A8: moe/moe_w8a8_grouped.h, the shared expert
  // inside them); larger batches on cuBLASLt (one product per active expert, after reading the
  // counts back). Tests and benchmarks force one. Larger batches of FP8 experts on sm_90 run as
  // expert-grouped FP8 GEMMs (gemm/sm90, grouping on the device: no synchronisation) with
  // set_sm90_fp8_gemm; BF16 experts, or devices without sm_90, on cuBLASLt.
  enum class MoePath { Auto, GroupedW8A8, Grouped, Cublaslt, Sm90 };
  static constexpr int64_t kMoeGroupedMaxPairs = 2048;
  // Beyond the decode kernels, MoePath::Auto takes the sm90 grouped FP8 launch up to this many
  // (token, expert) pairs (4,096 tokens x top-8) and cuBLASLt per expert beyond (moe/README.md).
  static constexpr int64_t kMoeSm90AutoMaxPairs = 32768;
  void set_moe_path(MoePath path) { moe_path_ = path; }
  // The path of the last moe_experts call beyond the decode kernel's range (tests, benchmarks).
  MoePath last_moe_path() const { return last_moe_path_; }
  // The fused decode path (Backend::set_fused_decode; on by default, the measured-faster path: see
  // docs/cuda-backend.md): the W8A8 decode linear (gemm/w8a8_decode_gemm.h) for FP8 calls of up to
  // kFusedDecodeMaxTokens tokens (cuBLASLt above), norms / SiLU-and-mul / the latent prologue
  // writing their e4m3 quantization, the fused MLP, the W8A8 grouped MoE with the shared expert
  // inside and the fused router up to kFusedDecodeMaxTokens tokens (the W8A16 grouped kernel above),
  // the absorbed query written in place, the multi-block greedy sampler, programmatic dependent
  // launch. Off (the baseline that bench-one-batch --decode-baseline prints, and tests of those
  // kernels): cuBLASLt W8A8 linears quantizing their own inputs, the W8A16 kernel on q_a + kv_a up
  // to 16 tokens, separate norm / RoPE / store / SiLU-and-mul kernels, the W8A16 grouped experts
  // with the shared expert apart, the four-kernel router.
  // Turning it on queries the W8A8 kernels' capacity on this backend's device (so that no query runs
  // while a graph is recorded).
  void set_fused_decode(bool on) override;
  bool fused_decode() const override { return fused_decode_; }
  // Which kernel runs the FP8 segments of a linear of T tokens (rows: the linear's output rows).
  // None: the fused decode path's choice when it is on, else the measured rule. Tests and benchmarks
  // force a path with set_fp8_linear_path (calls past a decode kernel's token limit still go to
  // cuBLASLt, or the sm90 GEMM below). Sm90 is only reported: the path of a call whose segments ran
  // on the sm90 kernel.
  // Widened is only reported too: the sm80 kernel set's prefill sizes (weights widened to BF16 chunk
  // by chunk, then cuBLASLt BF16 products; gemm/fp8_widen.h).
  enum class Fp8LinearPath { None, W8A8Decode, W8A16Decode, Cublaslt, Sm90, Widened };
  // Token counts up to which the fused decode path runs its W8A8 linears and W8A8 grouped experts.
  static constexpr int64_t kFusedDecodeMaxTokens = 16;
  void set_fp8_linear_path(Fp8LinearPath forced) { fp8_forced_ = forced; }
  Fp8LinearPath fp8_linear_path(int64_t tokens, int64_t rows = 0) const {
    switch (fp8_forced_) {
      case Fp8LinearPath::Cublaslt:
        return Fp8LinearPath::Cublaslt;
      case Fp8LinearPath::W8A16Decode:
        return tokens <= kFp8DecodeMaxTokens ? Fp8LinearPath::W8A16Decode : Fp8LinearPath::Cublaslt;
      case Fp8LinearPath::W8A8Decode:
        return tokens <= kW8A8DecodeMaxTokens ? Fp8LinearPath::W8A8Decode : Fp8LinearPath::Cublaslt;
      default:
        break;
    }
    // The fused decode path: the W8A8 kernel up to kFusedDecodeMaxTokens (measured on an H100: 1.02-1.35x
    // the best baseline on q_a + kv_a, q_b, o_proj and down up to 16 tokens, 0.44-0.70x at 32-64:
    // gemm/README.md), cuBLASLt above.
    if (fused_decode_) return tokens <= kFusedDecodeMaxTokens ? Fp8LinearPath::W8A8Decode : Fp8LinearPath::Cublaslt;
    // The measured rule (gemm/README.md): the W8A16 kernel on linears of at most 2,560 rows (the fused
    // q_a + kv_a) up to 16 tokens, cuBLASLt otherwise.
    return tokens <= 16 && rows <= 2560 ? Fp8LinearPath::W8A16Decode : Fp8LinearPath::Cublaslt;
  }
  // Within the fused decode path: programmatic dependent launch of its kernels (on), and the MLP's
  // SiLU-and-mul fused into its gate_up product (on): switches for tests and benchmarks.
  void set_pdl(bool on) { pdl_ = on; }
  bool pdl() const { return pdl_; }
  void set_fused_mlp(bool on) { fused_mlp_ = on; }
  // With set_sm90_fp8_gemm(true), FP8 linears of at least fp8_sm90_min_tokens() tokens (prefill
  // sizes) run on the sm90 block-FP8 GEMM (gemm/sm90) on sm_90 devices, segment by segment where
  // it takes the segment (fp8_paths says which); smaller calls (outside the decode kernels' range)
  // and refused segments run on cuBLASLt. set_fp8_sm90_min_tokens(INT64_MAX) sends every call to
  // cuBLASLt (the baseline in tests and benchmarks).
  static constexpr int64_t kFp8Sm90MinTokens = 128;
  void set_fp8_sm90_min_tokens(int64_t t) { fp8_sm90_min_tokens_ = t; }
  int64_t fp8_sm90_min_tokens() const { return fp8_sm90_min_tokens_; }
  // "sm90 [2112]" or "cublaslt [576] (sm90: reason)" per FP8 segment of a prepared linear.
  static std::string fp8_paths(const LinearWeight& w);
  // The path of the last linear call that had FP8 segments (for tests and benchmarks); Sm90 when
  // at least one segment ran on the sm90 kernel.
  // The sm80 kernel set's FP8 linears (W8A16, cuda_ops_w8a16.cpp): calls of at most this many tokens
  // on the decode kernel (reported as W8A16Decode), larger ones widened chunk by chunk into BF16
  // products (Widened) (tests and benchmarks set it: 0 widens every call; clamped to
  // [0, kFp8DecodeMaxTokens]).
  void set_w8a16_decode_max_tokens(int64_t t) { w8a16_decode_max_tokens_ = std::clamp<int64_t>(t, 0, kFp8DecodeMaxTokens); }
  int64_t w8a16_decode_max_tokens() const { return w8a16_decode_max_tokens_; }
  Fp8LinearPath last_fp8_linear() const { return last_fp8_linear_; }
  // Whether the last mlp call ran gate_up with SiLU-and-mul and quantization fused.
  bool last_mlp_fused() const { return last_mlp_fused_; }
  // head_linear runs FP8 heads (CudaHeadWeight::fp8) on the sm90 GEMM as a strided batch, or, off,
  // their BF16 copy on cuBLASLt (the baseline in tests and benchmarks).
  void set_head_fp8(bool on) { head_fp8_ = on; }
  // Whether the last head_linear call ran in FP8 (tests, benchmarks).
  bool last_head_fp8() const { return last_head_fp8_; }
  cudaStream_t stream() const { return stream_; }
  int multiprocessors();  // of this device (common/device_props.h; the quantized products' split-K plans)
  // AWQ / INT8 weights prepared from now on: on the W4A16 / W8A8 kernels (quant/quant_gemm.h; the
  // default: the checkpoint's bytes stay on the GPU), or (false: tests of the fallback) as BF16
  // products on the weights dequantized exactly as the CPU oracle dequantizes them. A new backend
  // starts with the default.
  void set_quantized_kernels(bool on) { quant_kernels_ = on; }
  bool quantized_kernels() const { return quant_kernels_; }
  static void set_default_quantized_kernels(bool on) { default_quant_kernels_ = on; }
  // Products of quantized weights of at least quant_expand_min_tokens() tokens (routed experts: rows)
  // run as the weights expanded to BF16 in scratch memory and multiplied by cuBLASLt
  // (quant/quant_dequant.h); smaller ones on the streaming kernel (up to kQuantSkinnyMaxTokens) or
  // the mma.sync tiled kernel (quant_tiled.cu). INT64_MAX: never expanded (tests, benchmarks).
  static constexpr int64_t kQuantExpandDefaultTokens = kQuantSkinnyMaxTokens + 1;
  void set_quant_expand_min_tokens(int64_t t) { quant_expand_min_tokens_ = std::max<int64_t>(t, 1); }
  int64_t quant_expand_min_tokens() const { return quant_expand_min_tokens_; }
  // The quantized segments of w expanded to BF16 as those products expand them: BF16 bits [rows, in]
  // per segment, in row order (tests).
  std::vector<std::vector<uint16_t>> expanded_segments(const LinearWeight& w);
  size_t scratch_bytes() const { return scratch_.capacity_bytes(); }
  size_t graph_pool_bytes() const { return graph_pool_.capacity_bytes(); }

  // Helpers shared by the op files (public so the op files' free functions can use them).
  Tensor scratch(DType dtype, Shape shape);                      // per-forward, uninitialised
  Tensor as_dtype(const Tensor& x, DType dtype, bool need_packed_rows);  // converts / packs when needed
  void check(cudaError_t e, const char* what);
  LtGemm& gemm() { return *gemm_; }

 private:
  // Applies set s (cuda_kernel_set.cpp): the attention kernels' starting points, the sm90 GEMM's
  // switch; logs the choice (forced: why).
  void apply_kernel_set(KernelSet s, const std::string& device_name, bool forced);
  Tensor upload_bytes(const void* host, DType dtype, Shape shape);  // persistent copy of contiguous bytes
  Tensor host_copy(const Tensor& t);  // a host tensor with t's bytes (any dtype; t packed first if strided)
  WeightPart on_host(const WeightPart& p);  // p itself when its weight is in host memory
  // The e4m3 rows of x for an FP8 product of tp token rows (tp >= T, rows past T zero): the
  // producer's quantization when it has exactly those rows, else quantized here.
  void fp8_operand(const Activation& x, int64_t K, int64_t tp, Tensor& q, Tensor& q_scale);
  // The per-head product into out [T, heads, >= out_features] (rows and heads strided as out's views).
  void head_linear_into(const Tensor& x, const HeadWeight& w, Tensor& out);
  // RMSNorm of x (after residual += x when residual is given), with its e4m3 quantization when asked.
  Activation norm(const Tensor& x, Tensor* residual, const Tensor& w, float eps, bool quantize);
  LinearSegment make_segment(std::span<const WeightPart> parts, int64_t row0, bool fp8, LinearUse use, int64_t in,
                             int64_t out_features);
  bool moe_grouped_supported(const ExpertWeights& w, int64_t pairs) const;
  // Quantized weights (cuda_quant_weights.cpp) and their products (cuda_ops_quant.cpp).
  LinearSegment make_quant_segment(std::span<const WeightPart> parts, int64_t row0, int64_t in);
  ExpertWeights make_quant_experts(std::span<const ExpertParts> experts);  // impl null when not quantized
  // Rows [seg.row0, seg.row0 + seg.rows) of out [T, ldo] (BF16 or F32) from x [T, in] (BF16 for
  // W4A16; for INT8 xq / xs already quantized as the segment's kind wants).
  void quant_linear_segment(const LinearSegment& seg, const Tensor& xb, const Tensor& xq, const Tensor& xs,
                            Tensor& out);
  // The same rows as the BF16 product of the segment's weights expanded into scratch memory (xb BF16).
  void quant_linear_dequantized(const LinearSegment& seg, const Tensor& xb, Tensor& out);
  // Channel INT8 at prefill sizes: cuBLASLt's int8 product, then the token and row scales.
  void quant_linear_int8_lt(const LinearSegment& seg, const Tensor& xq, const Tensor& xs, Tensor& out);
  bool int8_lt_supported(const void* w, int64_t N, int64_t K, int64_t T);  // cuBLASLt has an int8 algorithm
  void int8_channel_product(const QuantWeights& wq, const int8_t* xq, int64_t ldx, const float* xs, int64_t T,
                            void* y, DType y_dtype, int64_t ldy);
  // x [T, K] -> int8 [T, K] and scales ([T] or [T, ceil(K / 128)]); rows gathered through row_index when given.
  void quantize_int8(const Tensor& x, QuantKind kind, int64_t rows, const int32_t* row_index, Tensor& q, Tensor& s);
  Tensor moe_experts_quant(const Tensor& x, const ExpertWeights& w, const RouterOutput& route, bool grouped);
  Tensor quant_counters();  // the split-K counters of quant_gemm.h, allocated on first use
  Tensor moe_experts_grouped(const Tensor& x, const ExpertWeights& w, const RouterOutput& route);
  // The W8A8 grouped path, with the shared expert's products in the same launches when given;
  // undefined when the shapes do not allow it.
  Tensor moe_experts_w8a8(const Activation& x, const ExpertWeights& w, const RouterOutput& route,
                          const LinearWeight* shared_gate_up, const LinearWeight* shared_down);
  RouterOutput local_route(const ExpertWeights& w, const RouterOutput& route);  // expert parallelism: ids shifted
  // Scratch for moe_align's outputs of `pairs` pairs over `experts` experts.
  std::shared_ptr<MoeGrouping> new_grouping(int64_t pairs, int64_t experts, int rows_per_item);
  Tensor moe_experts_cublaslt(const Tensor& x, const ExpertWeights& w, const RouterOutput& route);
  // The prefill paths' grouping: the (token, k) pairs counted per expert (the counts read back on
  // the host) and scattered into per-expert row segments padded to multiples of 8 rows.
  struct MoeSegments {
    std::vector<int32_t> counts, offset, rows;  // per expert: pairs, first row, padded rows
    int64_t total_rows = 0;
    Tensor row_token;      // [total_rows] I32: the token of each row (-1: padding)
    Tensor pair_row;       // [pairs] I32: the row of each pair
    Tensor row_seg_start;  // [total_rows] I32: the first row of the row's segment
    Tensor row_seg_rows;   // [total_rows] I32: the rows of the row's segment
  };
  MoeSegments moe_segments(const RouterOutput& route, int64_t experts);
  bool moe_sm90_supported(const ExpertWeights& w) const;
  // The sm80 kernel set's FP8 linears (cuda_ops_w8a16.cpp): W8A16, the decode kernel up to
  // kFp8DecodeMaxTokens tokens, else BF16 products on weights widened chunk by chunk of rows.
  Tensor linear_w8a16(const Tensor& x, const CudaLinear& lin, int64_t out_features, DType out_dtype);
  // Rows [row0, row0 + rows) of an FP8 weight widened to BF16 into dst ([>= rows, K] scratch).
  void widen_fp8(const void* w, const float* w_scale, int64_t scale_ld, int64_t row0, int64_t rows, int64_t K,
                 Tensor& dst);
  Tensor moe_experts_sm90(const Tensor& x, const ExpertWeights& w, const RouterOutput& route);

  int device_ = 0;
  int compute_capability_ = 0;
  KernelSet kernel_set_ = KernelSet::Sm90;
  MlaPrefillKernel mla_prefill_kernel_ = MlaPrefillKernel::Sm90;
  MlaPrefillKernel last_mla_prefill_ = MlaPrefillKernel::Sm90;
  MlaDecodeKernel mla_decode_kernel_ = MlaDecodeKernel::Sm90;
  int mla_decode_splits_ = 0;
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
  bool moe_sm90_ = false;  // MoePath::Auto takes the sm90 grouped path at every size (set_sm90_fp8_gemm)
  Fp8LinearPath fp8_forced_ = Fp8LinearPath::None;
  bool pdl_ = true, fused_mlp_ = true, fused_decode_ = true;
  bool last_mlp_fused_ = false;
  Fp8LinearPath last_fp8_linear_ = Fp8LinearPath::None;
  int64_t fp8_sm90_min_tokens_ = INT64_MAX;  // set_sm90_fp8_gemm
  int64_t w8a16_decode_max_tokens_ = kFp8DecodeMaxTokens;
  int64_t experts_run_ = 0;     // counted on the host by the cuBLASLt path
  Tensor experts_run_device_;   // [1] I64: counted on the device by the grouped path
  Tensor router_ticket_;        // [1] U32 (zero): the fused router's last-block ticket
  bool layer_profiling_ = false;
  std::vector<cudaEvent_t> layer_events_;  // mark i records layer_events_[i]
  int marks_ = 0;                          // marks of the last forward (the highest index + 1)
  // Kernels between consecutive marks of the graph replayed last (shared with the graphs).
  std::shared_ptr<std::vector<int>> replayed_kernels_ = std::make_shared<std::vector<int>>();
  std::shared_ptr<void> comm_;  // ncclComm_t, when in a tensor-parallel group
  std::shared_ptr<void> world_comm_, across_comm_;  // ncclComm_t each, with data-parallel attention
  Tensor quant_counters_;  // [kQuantGemmMaxCounters] I32, zero between calls
  std::vector<int32_t> sample_ints_;  // sample(): the rows' lists, reused from call to call
  std::vector<char> sample_packed_;   // sample(): row settings and lists as uploaded, reused
  static inline std::atomic<bool> default_quant_kernels_{true};
  bool quant_kernels_ = default_quant_kernels_;
  int64_t quant_expand_min_tokens_ = kQuantExpandDefaultTokens;
};

// Quantized weight parts the quant/ kernels take (cuda_quant_weights.cpp); others become BF16.
bool quant_part_supported(const WeightPart& p);
// Whether part `next` joins the quantized segment that starts with `first` and has `rows` rows.
bool quant_parts_fuse(const WeightPart& first, const WeightPart& next, int64_t rows);
const char* quant_kind_name(QuantKind k);  // "awq", "int8 block", "int8 channel"

}  // namespace dsserve::cuda
