// The op interface every backend implements (cpu: the float32 reference; cuda: the fast path).
// The model is written only against this interface: it prepares weights once through the make_*
// calls and runs a forward as a sequence of ops. Ops allocate their outputs from the backend's
// scratch memory, returned when the last tensor using it dies; a backend that can capture a
// forward (CUDA graphs) replays it later at the same addresses. The scheduler chooses tokens
// through `sample`, where the logits are, by rules both backends share (sampling_math.h).
#pragma once
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace dsserve {

// How a linear weight is stored (backend/weight_dequant.h says what each format's values are).
enum class WeightFormat : uint8_t {
  Float,        // weight [out, in] BF16 / F16 / F32 (an F8_E4M3 weight with a scale reads as BlockFp8)
  BlockFp8,     // weight [out, in] F8_E4M3, scale [ceil(out/128), ceil(in/128)] F32 (weight_scale_inv)
  BlockInt8,    // weight [out, in] I8, scale [ceil(out/128), ceil(in/128)] F32 (weight_scale_inv, a multiplier)
  ChannelInt8,  // weight [out, in] I8, scale [out, 1] F32 (weight_scale)
  Awq,          // weight = qweight I32 [in, out/8], zeros = qzeros I32 [in/G, out/8], scale = scales F16 [in/G, out]
};
const char* weight_format_name(WeightFormat f);  // "bf16", "fp8", "int8 block", "int8 channel", "awq"

// One row block of a (possibly fused) linear weight as stored in the checkpoint (host memory, or
// the backend's own memory when it came from Backend::random_weight).
struct WeightPart {
  Tensor weight = {};
  Tensor scale = {};  // undefined for Float
  Tensor zeros = {};  // Awq only
  WeightFormat format = WeightFormat::Float;
  int64_t group_size = 0;  // Awq: input channels per scale and zero
  std::string name = {};   // the checkpoint tensor it came from, for errors (may be empty)

  WeightFormat stored_format() const {  // format, with an F8 weight under Float read as BlockFp8
    return format == WeightFormat::Float && (weight.dtype() == DType::F8_E4M3 || weight.dtype() == DType::F8_E5M2)
               ? WeightFormat::BlockFp8
               : format;
  }
  int64_t out_features() const { return format == WeightFormat::Awq ? scale.size(1) : weight.size(0); }
  int64_t in_features() const { return format == WeightFormat::Awq ? weight.size(0) : weight.size(1); }
};

enum class LinearUse { Projection, Router, LmHead };

// A linear layer y = x W^T prepared by a backend: its layout is the backend's business.
struct LinearWeight {
  int64_t out_features = 0, in_features = 0;
  std::shared_ptr<void> impl;
};

// Per-head matrices for absorbed MLA: y[t, h, :] = W[h] x[t, h, :], W[h] of shape [out, in].
struct HeadWeight {
  int64_t heads = 0, out_features = 0, in_features = 0;
  std::shared_ptr<void> impl;
};

// The routed experts of one MoE layer, each a SiLU-gated MLP (gate, up: [inter, hidden]; down:
// [hidden, inter]). Under expert parallelism a rank holds experts [first_expert, first_expert +
// num_experts) of the layer: moe_experts then skips the (token, expert) pairs routed elsewhere,
// whose contribution the rank holding that expert adds (the all-reduce after the MoE sums them).
struct ExpertWeights {
  int64_t num_experts = 0, hidden = 0, intermediate = 0;
  std::shared_ptr<void> impl;
  int64_t first_expert = 0;
  int64_t total_experts = 0;  // the layer's routed experts over all ranks (0: num_experts)
  int64_t layer_experts() const { return total_experts > 0 ? total_experts : num_experts; }
};

struct ExpertParts {
  WeightPart gate, up, down;
};

// noaux_tc grouped top-k routing (DeepSeek-V3) or softmax greedy top-k (V2-style).
struct RouterParams {
  int num_experts = 0, top_k = 0, n_group = 1, topk_group = 1;
  bool sigmoid = true;          // scoring_func
  bool norm_topk_prob = true;
  float routed_scaling_factor = 1.0f;
};

struct RouterOutput {
  Tensor topk_ids;      // [T, top_k] I32
  Tensor topk_weights;  // [T, top_k] F32, already normalised and scaled
  // Backend-private, optional: the pairs already grouped by expert by the router's own kernel, for
  // the experts of the same layer (the CUDA decode path).
  std::shared_ptr<void> grouping = nullptr;
};

// Rows that feed linear layers, with (on a backend that runs W8A8 products) their e4m3 quantization
// made by the op that produced them, so that the linears reading them do not quantize them again:
// one float32 scale per token per 128 channels, as the FP8 products read it. A plain tensor converts
// to an Activation without quantized rows; backends quantize in the linear then.
struct Activation {
  Tensor x;        // [T, C] in the backend's activation dtype (undefined when only q is needed)
  Tensor q;        // [Tp >= T, C] F8_E4M3, rows past T zero; or undefined
  Tensor q_scale;  // [C / 128, Tp] F32, token index contiguous (rows past T: 1); or undefined
  int64_t q_tokens = 0;  // T where x is undefined (q's rows are padded past it)
  Activation() = default;
  Activation(Tensor rows) : x(std::move(rows)) {}  // NOLINT: plain rows are an activation
  int64_t tokens() const { return x.defined() ? x.size(0) : q_tokens; }
};

// The device side of a ForwardBatch: what attention and cache writes need. Host copies of the
// extents are kept because the CPU backend (and launch configuration) needs them.
struct AttentionBatch {
  int num_seqs = 0, num_tokens = 0;
  int page_size = 0, max_pages = 0;
  Tensor positions;     // [T] I32
  Tensor out_slots;     // [T] I32: cache slot of each new token (page * page_size + offset)
  Tensor query_start;   // [B + 1] I32
  Tensor seq_lens;      // [B] I32: keys per sequence after this forward (cached prefix + new)
  Tensor page_table;    // [B, max_pages] I32
  Tensor key_start;     // [B + 1] I32: offsets of each sequence in gather_latent's output
  std::vector<int32_t> h_query_start, h_seq_lens, h_key_start;
  // An upper bound on seq_lens for sizing launches (0: the largest of h_seq_lens). A captured
  // decode forward sets the context length, so its launches fit every batch replayed through it.
  int max_seq_len = 0;
  // Key j of a sequence lives at logical position j + key_shift of its page table (1 for the MTP
  // cache, whose entry for position t is stored at the slot of token t + 1).
  int key_shift = 0;
  // Speculative trees: when defined, the last mask_cols_s keys of sequence s are seen by its query i
  // only where tree_mask[mask_start[s] + i * mask_cols_s + (j - (seq_len_s - mask_cols_s))] != 0;
  // the keys before them are all seen. Without it, attention is causal.
  Tensor tree_mask;     // [sum_s qlen_s * mask_cols_s] I32 (0 or 1)
  Tensor mask_start;    // [B + 1] I32
  Tensor mask_cols;     // [B] I32
  std::vector<int32_t> h_mask_start, h_mask_cols;
  std::vector<uint8_t> h_tree_mask;
};

// Latent cache of the layers of one model: [layers, slots, kv_lora_rank + qk_rope_head_dim], of the
// backend's activation type (BF16 on a GPU, F32 on the CPU) or, with --kv-cache-dtype fp8_e4m3 /
// fp8_e5m2, F8_E4M3 / F8_E5M2 with scale 1.0: store_latent rounds each value to the FP8 type
// (saturating at +-448 / +-57344), and every read (gather, absorbed attention) converts it back.
struct LatentCache {
  Tensor data;
  int page_size = 0;
  int64_t num_pages = 0;
  Tensor layer(int i) const { return data.select(i); }  // [slots, latent]
};

// Random weight values generated where the weight lives (--load-format dummy on a device): element
// i is offset + scale * N(0, 1) (normal) or offset + scale * U[0, 1) (uniform), drawn from a
// counter-based generator keyed by (seed, i), rounded to the tensor's dtype (F32, BF16, F8_E4M3; I8:
// the nearest integer, saturating at +-127); I32 tensors get 32 random bits per element instead.
struct RandomFill {
  uint64_t seed = 0;
  bool normal = true;
  float scale = 1.0f, offset = 0.0f;
};

// How Backend::sample chooses the token of one row of logits (the rules in detail, shared by both
// backends: backend/sampling_math.h). The lists are views the caller keeps alive during the call;
// token ids must lie in the vocabulary.
struct SamplingRow {
  float temperature = 1.0f;        // 0: greedy
  int top_k = -1;                  // <= 0 or >= vocab: no cut
  float top_p = 1.0f;              // (0, 1]
  float min_p = 0.0f;              // [0, 1]
  float frequency_penalty = 0.0f;  // over output_counts
  float presence_penalty = 0.0f;   // over output_counts
  float repetition_penalty = 1.0f; // over seen
  std::span<const std::pair<int32_t, float>> logit_bias;       // distinct tokens
  std::span<const std::pair<int32_t, int32_t>> output_counts;  // (token, times generated), distinct tokens
  std::span<const int32_t> seen;        // distinct tokens of the prompt and the output
  std::span<const int32_t> suppressed;  // tokens that cannot be chosen (stop tokens before min_new_tokens)
  // Constrained decoding: the tokens that may be chosen, a bitmask (bit t % 32 of word t / 32,
  // ceil(vocab / 32) words, at least one bit set); empty: every token. Others count as -inf.
  std::span<const uint32_t> allowed;
  uint64_t seed = 0;
  uint64_t step = 0;                // index of the token being chosen in its request's output
  int top_logprobs = 0;             // (logprob, id) pairs to return, 0 to sampling::kMaxTopLogprobs
  bool want_logprob = false;        // the chosen token's logprob
};

// The choice for one row. Log-probabilities are log_softmax of the raw logits (before penalties,
// bias and temperature).
struct SampledToken {
  int32_t token = 0;
  float logprob = 0.0f;  // of `token`, when want_logprob or top_logprobs > 0
  std::vector<std::pair<float, int32_t>> top_logprobs;  // (logprob, id), best first, ties lower id first
};

// Throws naming the row and the field when a row is out of range (temperature < 0 or not finite,
// top_p outside (0, 1], min_p outside [0, 1], repetition_penalty <= 0, top_logprobs outside
// [0, kMaxTopLogprobs], a listed token outside [0, vocab), an allowed mask of the wrong size or
// allowing nothing). Both backends call it.
void check_sampling_rows(std::span<const SamplingRow> rows, int64_t vocab);

// Device memory as the driver reports it (total 0: the backend has no memory of its own).
struct DeviceMemory {
  int64_t free_bytes = 0, total_bytes = 0;
};

// The machine's measured ceilings (0: not measured): device-to-device copy bandwidth counting the
// bytes read plus the bytes written, and the dense matrix-product rates.
struct DeviceCeilings {
  double copy_gbs = 0, bf16_tflops = 0, fp8_tflops = 0;  // fp8_tflops 0: no FP8 products (Ampere kernel set)
};

// A forward recorded once and replayed (a CUDA graph): it reads its inputs from, and writes its
// outputs to, the device tensors it was recorded with.
class CapturedForward {
 public:
  virtual ~CapturedForward() = default;
  virtual void replay() = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  virtual Device device() const = 0;
  virtual DType activation_dtype() const = 0;

  // Memory.
  virtual Tensor alloc(DType dtype, Shape shape) = 0;     // persistent, zero-filled
  virtual Tensor to_device(const Tensor& host) = 0;       // persistent copy, same dtype
  virtual Tensor to_host_f32(const Tensor& t) = 0;        // host float32 copy (floats) or host copy (ints)
  virtual void begin_forward() = 0;                       // marks the start of a forward
  virtual void synchronize() {}
  // Free and total memory of the device (CPU: {0, 0}), and the bytes of persistent allocations
  // (alloc, to_device, prepared weights, caches) still alive (CPU: 0, not counted).
  virtual DeviceMemory memory() const { return {}; }
  virtual int64_t persistent_bytes() const { return 0; }
  // Measures copy bandwidth and matrix rates (a few seconds; CPU: not measured, all 0).
  virtual DeviceCeilings measure_ceilings() { return {}; }
  // The CUDA backend's sm90 block-FP8 GEMM for prefill-size FP8 linears and routed experts and the
  // FP8 per-head products (gemm/sm90), not yet measured on a GPU: off by default; head weights
  // prepared afterwards take the FP8 form. Other backends ignore it.
  virtual void set_sm90_fp8_gemm(bool on) { (void)on; }
  // The CUDA backend on a Hopper GPU runs the Ampere (sm80) kernel set instead of its own, as an
  // A100 would (backend/kernel_set.h): for tests and benchmarks; before the weights are prepared.
  // Other backends ignore it.
  virtual void force_sm80_kernels() {}
  // Distinct routed experts run by moe_experts, summed over its calls since construction (-1: not
  // counted). Benchmarks read it around a forward to count the expert weights it read.
  virtual int64_t experts_run() const { return -1; }

  // Weights (host checkpoint tensors in, backend layout out). A backend whose random_weight
  // returns a defined tensor also accepts such device tensors as WeightPart weights.
  // random_weight: a persistent tensor filled in place; undefined when the backend has no device
  // generator (the CPU backend: callers then generate on the host).
  virtual Tensor random_weight(DType dtype, Shape shape, const RandomFill& fill) {
    (void)dtype, (void)shape, (void)fill;
    return {};
  }
  virtual LinearWeight make_linear(std::span<const WeightPart> row_parts, LinearUse use) = 0;
  // [heads, out, in] F32. from_fp8_blocks: the values are a block-FP8 checkpoint's (e4m3 times one
  // scale per 128x128 block, dequantized), so a backend may keep them as e4m3 with block scales.
  virtual HeadWeight make_head_weight(const Tensor& host_f32, bool from_fp8_blocks = false) = 0;
  virtual ExpertWeights make_experts(std::span<const ExpertParts> experts) = 0;
  virtual Tensor make_vector(const Tensor& host) = 0;     // norm weights, biases: F32 on device
  virtual Tensor make_embedding(const Tensor& host) = 0;  // [vocab, hidden]
  virtual Tensor make_rope_table(const Tensor& host_cos_sin) = 0;  // [positions, rope_dim] F32

  // Ops. Shapes: T tokens, H hidden, n heads.
  virtual Tensor embedding(const Tensor& table, const Tensor& ids) = 0;  // ids [T] -> [T, H]
  virtual Tensor rms_norm(const Tensor& x, const Tensor& w, float eps) = 0;  // rows may be strided
  // residual += x; returns rms_norm(residual).
  virtual Tensor add_rms_norm(Tensor& residual, const Tensor& x, const Tensor& w, float eps) = 0;
  virtual Tensor linear(const Tensor& x, const LinearWeight& w) = 0;  // [T, in] -> [T, out]
  // Fused producers of linear inputs: rms_norm / add_rms_norm whose result also carries its e4m3
  // quantization where the backend runs W8A8 products (CPU: the plain ops, nothing quantized), and
  // linear over such an input (CPU: linear on x).
  virtual Activation rms_norm_quant(const Tensor& x, const Tensor& w, float eps) { return rms_norm(x, w, eps); }
  virtual Activation add_rms_norm_quant(Tensor& residual, const Tensor& x, const Tensor& w, float eps) {
    return add_rms_norm(residual, x, w, eps);
  }
  virtual Tensor linear(const Activation& x, const LinearWeight& w) { return linear(x.x, w); }
  // The SiLU-gated MLP: down(silu(gate) * up) with gate_up [2I, in] (gate rows, then up rows) and
  // down [out, I]. A backend may fuse SiLU-and-mul (and the down projection's input quantization)
  // into the gate_up product.
  virtual Tensor mlp(const Activation& x, const LinearWeight& gate_up, const LinearWeight& down) {
    return linear(silu_mul(linear(x, gate_up)), down);
  }
  virtual Tensor head_linear(const Tensor& x, const HeadWeight& w) = 0;  // [T, n, in] -> [T, n, out]
  // Interleaved rotary embedding in place on x [T, n, rope_dim] (may be a strided view),
  // with table [positions, rope_dim] holding (cos, sin) pairs per frequency.
  virtual void rope_inplace(Tensor& x, const Tensor& positions, const Tensor& table) = 0;
  virtual Tensor silu_mul(const Tensor& gate_up) = 0;  // [T, 2I] -> [T, I]
  virtual void add_inplace(Tensor& x, const Tensor& y) = 0;
  virtual Tensor gather_rows(const Tensor& x, const Tensor& rows) = 0;  // rows [R] I32
  virtual Tensor concat_cols(const Tensor& a, const Tensor& b) = 0;     // [T, A] ++ [T, B]
  virtual Tensor contiguous(const Tensor& x) = 0;                        // [T, C] with strided rows -> packed

  // Latent KV cache and MLA attention.
  virtual void store_latent(Tensor& layer_cache, const Tensor& c_kv, const Tensor& k_pe,
                            const AttentionBatch& batch) = 0;
  // All keys of every sequence, in order: [key_start[B], latent].
  virtual Tensor gather_latent(const Tensor& layer_cache, const AttentionBatch& batch) = 0;
  // Non-absorbed: q [T, n, dn + dr]; kv [K, n, dn + dv] (up-projected keys/values); k_pe [K, dr]
  // (a strided view is fine). Causal within each sequence. Returns [T, n, dv].
  virtual Tensor mla_attention_expanded(const Tensor& q, const Tensor& kv, const Tensor& k_pe,
                                        const AttentionBatch& batch, float scale) = 0;
  // Absorbed: q [T, n, kv_lora_rank + dr] against the paged latent cache (one shared KV head;
  // values are the first kv_lora_rank columns). Causal within each sequence. Returns [T, n, kv_lora_rank].
  virtual Tensor mla_attention_absorbed(const Tensor& q, const Tensor& layer_cache, const AttentionBatch& batch,
                                        int64_t kv_lora_rank, float scale) = 0;
  // MLA's steps around the projections, fused where a backend can (the defaults in backend.cpp
  // compose the ops above and are the reference). mla_prologue, after the fused q_a + kv_a
  // projection qkv_a [T, q_part + kv_lora_rank + rope_dim]: stores the new tokens' latents (RMSNorm
  // of c_kv with kv_a_norm, RoPE on k_pe at batch.positions) in layer_cache and returns the RMSNorm
  // of the first q_part columns with *q_a_norm (carrying its FP8 quantization where the backend
  // quantizes), or nothing when q_a_norm is null (no q LoRA). qkv_a is left as it was.
  virtual Activation mla_prologue(const Tensor& qkv_a, int64_t q_part, const Tensor* q_a_norm, const Tensor& kv_a_norm,
                                  float eps, const Tensor& rope_table, Tensor& layer_cache, const AttentionBatch& batch);
  // The absorbed query: q_heads [T, n, dn + dr] -> [T, n, kv_lora_rank + dr] = (W_UK^T q_nope of
  // each head, RoPE'd q_pe at `positions`). q_heads' q_pe may be rotated in place.
  virtual Tensor mla_absorb_q(const Tensor& q_heads, const HeadWeight& w_uk_t, const Tensor& positions,
                              const Tensor& rope_table);
  // Copies cache entries of every layer from slot src[i] to slot dst[i], in order (cache: the
  // whole [layers, slots, latent] tensor). Accepted speculative tree nodes move to their positions.
  virtual void move_cache_slots(Tensor& cache, const Tensor& src, const Tensor& dst);

  // MoE.
  virtual RouterOutput moe_route(const Tensor& x, const LinearWeight& gate, const Tensor& bias,
                                 const RouterParams& p) = 0;
  virtual Tensor moe_experts(const Tensor& x, const ExpertWeights& w, const RouterOutput& route) = 0;
  // The MoE feed-forward after routing: the routed experts' weighted sum plus, when shared_gate_up
  // is given, the shared expert (a SiLU-gated MLP every token runs, added with weight 1). A backend
  // may run the shared expert inside the routed experts' grouped products.
  virtual Tensor moe_feed_forward(const Activation& x, const ExpertWeights& w, const RouterOutput& route,
                                  const LinearWeight* shared_gate_up, const LinearWeight* shared_down) {
    Tensor y = moe_experts(x.x, w, route);
    if (shared_gate_up) add_inplace(y, mlp(x, *shared_gate_up, *shared_down));
    return y;
  }

  // Upload the host description of a batch.
  virtual Tensor upload_i32(const std::vector<int32_t>& v, Shape shape) = 0;
  // Writes a [rows, cols] block of host values (row-major, src_ld values apart) into the top-left
  // corner of dst (a persistent I32 tensor of rank 1 or 2), ordered with the ops around it.
  virtual void write_i32(Tensor& dst, const int32_t* src, int64_t rows, int64_t cols, int64_t src_ld) = 0;
  // Copies src (host or this backend's, contiguous) into dst (this backend's, contiguous): the same
  // dtype and element count; ordered with the ops around it (fills the fixed inputs of recorded forwards).
  virtual void copy_into(Tensor& dst, const Tensor& src) = 0;

  // Captured forwards. can_capture: whether capture() records anything. capture() runs `body`
  // once as usual and then records a second run of it: that run must not touch host memory or
  // synchronise, and every tensor it creates comes from memory kept for captured forwards (shared
  // by all of them: read a replay's outputs before replaying another). The tensors the body keeps
  // (its outputs) should be released at its start so that both runs allocate alike.
  virtual bool can_capture() const { return false; }
  // The most (token, routed expert) pairs one MoE call may have inside a recorded forward (larger
  // calls synchronise with the host); 0: no limit known.
  virtual int64_t max_recorded_moe_pairs() const { return 0; }
  virtual std::unique_ptr<CapturedForward> capture(const std::function<void()>& body) {
    (void)body;
    return nullptr;
  }

  // A backend's fused decode kernels (CUDA: the fused decode path of cuda_backend.h, on by default).
  // Off only for benchmarks that print the unfused baseline from the same run (bench-one-batch
  // --decode-baseline) and for tests of the unfused kernels.
  virtual void set_fused_decode(bool on) { (void)on; }
  virtual bool fused_decode() const { return false; }

  // Per-layer profile of forwards (bench-one-batch --profile-layers). While enabled, the model marks
  // the start of each decoder layer and the end of the last (layer_mark(i), i = 0 .. layers); a
  // backend that times its device records the marks also inside forwards captured meanwhile.
  // layer_profile() synchronises and gives, for the last forward run, the seconds between
  // consecutive marks and, when that forward was a replay of one captured with marks, the kernels
  // launched between them. Empty where not supported (the CPU).
  struct LayerProfile {
    std::vector<double> seconds;  // [marks - 1]
    std::vector<int> kernels;     // [marks - 1], or empty
  };
  virtual void set_layer_profiling(bool on) { (void)on; }
  virtual void layer_mark(int index) { (void)index; }
  virtual LayerProfile layer_profile() { return {}; }

  // Token choice: logits [R, V] (F32 or the activation dtype; rows may be strided, columns
  // contiguous), rows[i] for row i. Returns the choice of every row; only these come back to the
  // host. Same inputs, same tokens on every backend. The logits are not modified.
  virtual std::vector<SampledToken> sample(const Tensor& logits, std::span<const SamplingRow> rows) = 0;

  // Tensor parallelism. all_reduce_sum: x (contiguous, activation dtype) becomes the sum of x over
  // the ranks of this backend's group, the same values on every rank; every rank must call it, in
  // the same order. A backend outside any group (world size 1) leaves x as it is.
  virtual void all_reduce_sum(Tensor& x) { (void)x; }
  // x [R, C] (contiguous) on every rank -> [R, world * C] with rank r's columns at [r * C, (r + 1) * C)
  // (the vocabulary-split lm_head's logits). Outside any group: x itself.
  virtual Tensor all_gather_cols(const Tensor& x) { return x; }
  // Data-parallel attention (parallel/data_parallel_model.h): the ranks form `groups` attention
  // groups; all_reduce_sum and all_gather_cols above stay within this backend's attention group,
  // these two span the groups. all_reduce_sum_world: x summed over every rank of every group.
  // all_gather_rows_groups: x is this group's rows [rows_per_group[g], C] (the same on every rank
  // of the group; 0 rows allowed, with no memory) -> every group's rows in group order
  // [sum of rows_per_group, C], on every rank. Outside data-parallel attention: as one group.
  virtual void all_reduce_sum_world(Tensor& x) { all_reduce_sum(x); }
  virtual Tensor all_gather_rows_groups(const Tensor& x, std::span<const int32_t> rows_per_group) {
    (void)rows_per_group;
    return x;
  }
  // Makes the calling thread able to run this backend's ops (CUDA: selects its device). A group's
  // ranks each run on their own thread.
  virtual void bind_thread() {}
  // Non-empty when the device can run nothing more (a CUDA kernel fault leaves its context
  // unusable): the reason. Empty while healthy (always, on the CPU).
  virtual std::string fatal_error() { return {}; }
  // Work done so far, counted where a long op can report it (the CPU backend: attention query
  // rows), readable from any thread: a sign of life inside one long op for watchdogs. 0 when the
  // backend does not count.
  virtual int64_t progress() const { return 0; }
};

enum class DeviceKind { Auto, Cpu, Cuda };
DeviceKind parse_device_kind(const std::string& s);  // "auto" | "cpu" | "cuda"
int cuda_device_count();                              // 0 when built without CUDA or no GPU
// AWQ and INT8 weights on CUDA backends created from now on: true (the default) runs them on the
// W4A16 / W8A8 kernels of backend/cuda/quant; false (tests of the fallback) runs BF16 products on
// the weights dequantized as the CPU oracle dequantizes them.
void set_cuda_quantized_kernels(bool on);
// --device auto resolved, the one rule: cuda when this build has the CUDA backend and a GPU is
// visible, else cpu. Cpu and Cuda stay as they are.
DeviceKind resolve_device(DeviceKind kind);

// How the backends of a process are laid out: `world` ranks, rank r on device r, in
// `attention_groups` groups of world / attention_groups consecutive ranks (data-parallel attention;
// 1: one tensor-parallel group over all ranks; a world of 1 is a single device).
struct BackendLayout {
  int world = 1;
  int attention_groups = 1;
};

// Every backend of a process for `layout` (backend_factory.cpp). Tensor parallel (one group):
// all_reduce_sum and all_gather_cols join all ranks (CUDA: one NCCL communicator; CPU: threads
// summing through host memory). Data-parallel attention: those run within a group, and
// all_reduce_sum_world and all_gather_rows_groups over all ranks (CUDA: communicators split from one
// over all devices). Forwards of several ranks run concurrently, one thread per rank.
std::vector<std::unique_ptr<Backend>> create_backends(DeviceKind kind, BackendLayout layout = {});
// One backend on one device (create_backends' group of one).
std::unique_ptr<Backend> create_backend(DeviceKind kind, int device_index = 0);

}  // namespace dsserve
