// Command-line options shared by the subcommands that load a model (SGLang's flag names), and the
// loading itself: config (with --json-model-override-args), backend, weights, latent cache.
#pragma once
#include <CLI/CLI.hpp>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "parallel/data_parallel_model.h"
#include "parallel/multi_node_model.h"
#include "parallel/replica_runner.h"
#include "runtime/engine.h"
#include "runtime/page_pool.h"
#include "runtime/scheduler.h"

namespace dsserve {

struct ModelOptions {
  std::string model_path;
  std::string device = "auto";
  std::string load_format = "auto";  // auto | safetensors | dummy
  std::string json_model_override_args;
  std::string kv_cache_dtype = "auto";  // auto | bf16 | fp8_e4m3 | fp8_e5m2 (model/kv_cache_dtype.h)
  std::string quantization;  // --quantization (ModelConfig::apply_quantization_flag); empty: config.json's
  int page_size = 0;  // 0: 64 on a GPU (the Hopper attention kernels read whole 64-token pages), 1 on the CPU
  int64_t context_length = 0;    // 0: min(max_position_embeddings, 32768)
  int64_t max_total_tokens = 0;  // 0: from --mem-fraction-static on a GPU; the context length on the CPU
  double mem_fraction_static = 0;  // weights + KV pool as a fraction of GPU memory; 0: 0.88 (SGLang's H200 default)
  bool load_mtp = true;            // load the checkpoint's MTP layer (bench-one-batch does not need it)
  uint64_t random_seed = 0;
  int tp_size = 1;                 // GPUs the model is split over (--tp-size; set by the commands that offer it)
  int ep_size = 1;                 // 1, or tp_size: whole routed experts placed on the ranks (--ep-size)
  // Several nodes (set by serve): tp_size ranks over nnodes nodes, tp_size / nnodes on each.
  int nnodes = 1;
  int node_rank = 0;
  std::string dist_init_addr;
  double dist_timeout_s = 600;
  int dp_size = 1;                 // attention groups over the tp_size GPUs (--enable-dp-attention --dp-size)
  std::string draft_model_path;  // MTP layer from an export-nextn checkpoint (set by the caller)
  // Decode through CUDA graphs (GPU only): the recorded batch sizes are cuda_graph_bs when given,
  // else default_cuda_graph_batch_sizes(cuda_graph_max_bs or 160).
  bool disable_cuda_graph = false;
  // The CUDA backend's sm90 block-FP8 GEMM (Backend::set_sm90_fp8_gemm), opt-in until measured.
  bool sm90_fp8_gemm = false;
  // The CUDA backend runs the Ampere (sm80) kernel set on a Hopper GPU (Backend::force_sm80_kernels):
  // what an A100 runs, measured on an H100 / H200.
  bool force_sm80_kernels = false;
  int cuda_graph_max_bs = 0;
  std::vector<int> cuda_graph_bs;
  int verify_tokens = 0;  // speculative decoding: tokens per sequence of the verify forward (its graphs)

  void add_to(CLI::App& app);
  void add_kv_cache_dtype_flag(CLI::App& app);  // --kv-cache-dtype
  void add_quantization_flag(CLI::App& app);    // --quantization
  void add_cuda_graph_flags(CLI::App& app);  // --cuda-graph-max-bs, --cuda-graph-bs, --disable-cuda-graph
  // --nnodes / --node-rank for commands that run on one node: anything but 1 / 0 is refused saying so.
  void add_single_node_flags(CLI::App& app, const std::string& command);
};

struct LoadedModel {
  std::unique_ptr<ModelRunner> model;       // one device, tensor parallel or several nodes (unset with dp)
  std::unique_ptr<DataParallelModel> dp;    // --dp-size > 1: one runner per attention group
  std::vector<std::unique_ptr<PagePool>> dp_pools;  // one per attention group
  std::unique_ptr<PagePool> pool;
  LatentCache cache;      // the pool's pages plus the trash page (see cache_pages_for)
  LatentCache mtp_cache;  // the MTP layer's cache, when asked for (speculative decoding)
  int64_t weight_bytes = 0;  // device bytes of the prepared weights (0 on the CPU: not counted; rank 0's with TP)
  int32_t trash_slot = 0;    // the cache slot padding rows of recorded forwards write (after the pool's pages)

  // What a scheduler runs forwards through (with dp: attention group 0's).
  ModelRunner& runner() { return dp ? dp->group(0) : *model; }
  // Whether the model runs on one device (no tensor, data or node parallelism).
  bool one_device() const {
    const auto* r = dynamic_cast<const ReplicaRunner*>(model.get());
    return r != nullptr && r->world() == 1;
  }
  Backend& lead_backend() { return runner().backend(); }
};

// config.json with --json-model-override-args and --quantization (which, under --load-format dummy,
// says how the generated weights are stored).
ModelConfig load_model_config(const ModelOptions& o);
// On node 0 of several (o.nnodes > 1) this joins the other nodes first (see multi_node_serving.h).
LoadedModel load_model(const ModelOptions& o, bool with_mtp_cache = false);
// The engine over a loaded model: one scheduler, or with --dp-size > 1 one per attention group
// behind a DataParallelEngine.
std::unique_ptr<Engine> start_engine(LoadedModel& m, const SchedulerOptions& opt);

}  // namespace dsserve
