// Shared model-loading options (see model_options.h).
#include "cli/model_options.h"

#include <spdlog/spdlog.h>

#include <fmt/ranges.h>

#include <chrono>

#include "cli/multi_node_serving.h"
#include "core/error.h"
#include "model/decode_graphs.h"
#include "model/kv_cache_dtype.h"
#include "model/tensor_specs.h"
#include "model/weight_source.h"
#include "runtime/data_parallel_engine.h"
#include "runtime/kv_capacity.h"
#include "runtime/scheduler.h"

namespace dsserve {

void ModelOptions::add_to(CLI::App& app) {
  app.add_option("--model-path", model_path, "Checkpoint directory (config.json + safetensors)")->required();
  app.add_option("--device", device, "auto | cpu | cuda")->capture_default_str();
  app.add_option("--load-format", load_format, "auto | safetensors | dummy (random weights)")->capture_default_str();
  app.add_option("--json-model-override-args", json_model_override_args,
                 "JSON object overriding config.json fields, e.g. '{\"num_hidden_layers\": 4}'");
  app.add_option("--page-size", page_size, "Tokens per KV-cache page (default: 64 on a GPU, 1 on the CPU)")
      ->check(CLI::Range(1, 1 << 16));
  app.add_option("--context-length", context_length, "Longest sequence (default: min(max_position_embeddings, 32768))")
      ->check(CLI::Range(int64_t(2), int64_t(1) << 40));
  app.add_option("--max-total-tokens", max_total_tokens,
                 "KV-cache capacity in tokens (default: from --mem-fraction-static on a GPU, the context length on the CPU)")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 40));
  app.add_option("--mem-fraction-static", mem_fraction_static,
                 "Fraction of GPU memory for weights and KV cache (default 0.88)")
      ->check(CLI::Range(0.01, 1.0));
  app.add_option("--random-seed", random_seed, "Seed for dummy weights and sampling")->capture_default_str();
  add_kv_cache_dtype_flag(app);
  add_quantization_flag(app);
  add_cuda_graph_flags(app);
}

void ModelOptions::add_quantization_flag(CLI::App& app) {
  app.add_option("--quantization", quantization,
                 "How the checkpoint's weights are stored: fp8, blockwise_int8, w8a8_int8, awq (awq_marlin, moe_wna16 "
                 "alike); default: config.json's quantization_config (w8a8_int8 checkpoints have none: pass it)");
}

void ModelOptions::add_kv_cache_dtype_flag(CLI::App& app) {
  app.add_option("--kv-cache-dtype", kv_cache_dtype,
                 "auto | bf16 | fp8_e4m3 | fp8_e5m2 (the latent cache in FP8, scale 1.0: half the bytes per token)")
      ->capture_default_str();
}

void ModelOptions::add_cuda_graph_flags(CLI::App& app) {
  app.add_option("--cuda-graph-max-bs", cuda_graph_max_bs, "Largest decode batch recorded as a CUDA graph (default 160)")
      ->check(CLI::Range(1, 1 << 16));
  app.add_option("--cuda-graph-bs", cuda_graph_bs, "Decode batch sizes recorded as CUDA graphs (default: 1 2 4 8 12 16 "
                 "24 ... up to --cuda-graph-max-bs)")
      ->check(CLI::Range(1, 1 << 16));
  app.add_flag("--disable-cuda-graph", disable_cuda_graph, "Run decode without CUDA graphs");
}

void ModelOptions::add_single_node_flags(CLI::App& app, const std::string& command) {
  const std::string why = command + " runs on one node; serve a model over several nodes with `dsserve serve --nnodes K "
                          "--node-rank R --dist-init-addr HOST:PORT`";
  app.add_option("--nnodes", nnodes, "Number of nodes (1: " + command + " runs on one node)")
      ->check(CLI::Validator([why](std::string& v) { return v == "1" ? std::string() : "--nnodes " + v + ": " + why; },
                             "1", "one node"));
  app.add_option("--node-rank", node_rank, "Rank of this node (0)")
      ->check(CLI::Validator([why](std::string& v) { return v == "0" ? std::string() : "--node-rank " + v + ": " + why; },
                             "0", "node 0"));
}

ModelConfig load_model_config(const ModelOptions& o) {
  const bool generated = o.load_format == "dummy";
  ModelConfig cfg = ModelConfig::load(o.model_path, o.json_model_override_args, generated ? "" : o.quantization);
  if (generated) cfg.apply_quantization_flag(o.quantization, o.model_path + "/config.json", /*generated=*/true);
  return cfg;
}

namespace {

// Where the model runs, for the loading log line.
std::string placement(const ModelOptions& o, const Backend& lead, const NodeGroup* nodes) {
  const std::string ep = o.ep_size > 1 ? ", routed experts whole per rank" : "";
  if (nodes)
    return fmt::format("{} x{} on each of {} nodes (tensor parallel over {} ranks{})", lead.name(),
                       nodes->ranks_per_node, o.nnodes, o.tp_size, ep);
  if (o.dp_size > 1)
    return fmt::format("{} x{} (data-parallel attention: {} groups of {}{})", lead.name(), o.tp_size, o.dp_size,
                       o.tp_size / o.dp_size, ep);
  return o.tp_size > 1 ? fmt::format("{} x{} (tensor parallel{})", lead.name(), o.tp_size, ep) : lead.name();
}

// The checkpoint (or dummy weights) and, with --speculative-draft-model-path, the MTP layer of an
// export-nextn checkpoint renamed to the target's layer index.
struct WeightSources {
  std::unique_ptr<WeightSource> target;
  std::unique_ptr<CheckpointWeights> draft;
  std::unique_ptr<RenamedWeights> draft_renamed;
};

WeightSources open_weights(const ModelOptions& o, const ModelConfig& cfg) {
  WeightSources w;
  if (o.load_format == "dummy")
    w.target = std::make_unique<DummyWeights>(cfg, o.random_seed);
  else
    w.target = std::make_unique<CheckpointWeights>(o.model_path, cfg);
  if (!o.draft_model_path.empty()) {
    ModelConfig dcfg = ModelConfig::load(o.draft_model_path);
    DS_CHECK(dcfg.hidden_size == cfg.hidden_size && dcfg.vocab_size == cfg.vocab_size,
             "--speculative-draft-model-path {}: hidden_size {} / vocab_size {} differ from the target's {} / {}",
             o.draft_model_path, dcfg.hidden_size, dcfg.vocab_size, cfg.hidden_size, cfg.vocab_size);
    w.draft = std::make_unique<CheckpointWeights>(o.draft_model_path, cfg);
    w.draft_renamed = std::make_unique<RenamedWeights>(*w.draft, layer_prefix(cfg.num_hidden_layers), layer_prefix(0));
  }
  return w;
}

// The KV pool's size in tokens: --max-total-tokens, else from --mem-fraction-static on a GPU, else
// the context length; `sized_by` says which.
int64_t kv_tokens(const ModelOptions& o, const DeviceMemory& mem, int64_t ctx, int64_t bytes_per_token, int page_size,
                  int64_t weight_bytes, std::string& sized_by) {
  if (o.max_total_tokens > 0) {
    sized_by = "--max-total-tokens";
    return o.max_total_tokens;
  }
  sized_by = "the context length";
  if (mem.total_bytes <= 0) return ctx;
  KvCapacityInput in;
  in.free_bytes = mem.free_bytes;
  in.total_bytes = mem.total_bytes;
  in.mem_fraction_static = o.mem_fraction_static > 0 ? o.mem_fraction_static : kDefaultMemFractionStatic;
  in.bytes_per_token = bytes_per_token;
  in.page_size = page_size;
  KvCapacity kv = kv_capacity_from_fraction(in);
  DS_CHECK(kv.tokens > 0, "--mem-fraction-static {}: {:.2f} GiB of the {:.2f} GiB budget ({:.1f} GiB GPU) is already "
           "in use after loading the weights ({:.2f} GiB); no room for the KV cache: raise --mem-fraction-static or "
           "pass --max-total-tokens", in.mem_fraction_static, double(mem.total_bytes - mem.free_bytes) / (1 << 30),
           in.mem_fraction_static * double(mem.total_bytes) / (1 << 30), double(mem.total_bytes) / (1 << 30),
           double(weight_bytes) / (1 << 30));
  sized_by = fmt::format("--mem-fraction-static {} of {:.1f} GiB", in.mem_fraction_static,
                         double(mem.total_bytes) / (1 << 30));
  return kv.tokens;
}

// Records the CUDA graphs of every kind the runner will replay (decode; with speculative decoding
// the verify forward and the MTP draft step) at the sizes whose MoE calls stay on the device.
// Returns what the log says of them.
std::string record_graphs(LoadedModel& m, const ModelOptions& o, const ModelConfig& cfg, Backend& lead) {
  if (!lead.can_capture()) return fmt::format("none (the {} backend runs decode eagerly)", lead.name());
  if (o.disable_cuda_graph) return "off (--disable-cuda-graph)";
  std::vector<int> sizes = o.cuda_graph_bs;
  if (sizes.empty()) sizes = default_cuda_graph_batch_sizes(o.cuda_graph_max_bs > 0 ? o.cuda_graph_max_bs : 160);
  for (int b : sizes) DS_CHECK(b >= 1, "--cuda-graph-bs: batch sizes must be at least 1, found {}", b);
  // A recorded forward must not synchronise: keep the sizes whose MoE calls stay on the device.
  auto recordable = [&](std::vector<int> s, int tokens_per_seq) {
    const int64_t max_pairs = lead.max_recorded_moe_pairs();
    if (max_pairs <= 0 || cfg.n_routed_experts == 0) return s;
    std::vector<int> kept;
    for (int b : s)
      if (int64_t(b) * tokens_per_seq * cfg.num_experts_per_tok <= max_pairs) kept.push_back(b);
      else spdlog::info("CUDA graphs: batch size {} not recorded ({} tokens through each MoE: {} expert pairs "
                        "exceed the {} that run without the host)", b, int64_t(b) * tokens_per_seq,
                        int64_t(b) * tokens_per_seq * cfg.num_experts_per_tok, max_pairs);
    return kept;
  };
  try {
    if (m.dp) {  // every group's batch padded to the size: the MoE runs over dp_size times as many tokens
      m.dp->capture_decode_graphs(m.trash_slot, recordable(sizes, o.dp_size));
    } else {
      GraphPlan plan;
      plan.trash_slot = m.trash_slot;
      plan.decode_sizes = recordable(sizes, 1);
      if (o.verify_tokens > 1) {
        plan.verify_tokens = o.verify_tokens;
        plan.verify_sizes = recordable(sizes, o.verify_tokens);
      }
      if (m.mtp_cache.data.defined()) plan.mtp_sizes = recordable(sizes, 1);
      m.model->capture_graphs(plan, m.cache, m.mtp_cache);
    }
  } catch (const std::exception& e) {
    fail("recording the decode forward as CUDA graphs failed: {} (run with --disable-cuda-graph to decode eagerly)",
         e.what());
  }
  const RecordedGraphs got = m.runner().recorded_graphs();
  std::string said = fmt::format("batch sizes {} recorded in {:.2f} s", fmt::join(got.decode, " "), got.capture_s);
  if (!got.verify.empty())
    said += fmt::format("; verify ({} tokens per sequence): batch sizes {}", o.verify_tokens, fmt::join(got.verify, " "));
  if (!got.mtp.empty()) said += fmt::format("; MTP draft step: batch sizes {}", fmt::join(got.mtp, " "));
  return said;
}

}  // namespace

LoadedModel load_model(const ModelOptions& o, bool with_mtp_cache) {
  DS_CHECK(o.load_format == "auto" || o.load_format == "safetensors" || o.load_format == "dummy",
           "--load-format: expected auto, safetensors or dummy, found '{}'", o.load_format);
  DS_CHECK(o.page_size >= 0, "--page-size must be at least 1 (or 0: 64 on a GPU, 1 on the CPU), found {}", o.page_size);
  const std::optional<DType> cache_dtype = parse_kv_cache_dtype(o.kv_cache_dtype);
  auto t0 = std::chrono::steady_clock::now();
  ModelConfig cfg = load_model_config(o);
  LoadedModel m;
  DS_CHECK(o.tp_size >= 1, "--tp-size must be at least 1, found {}", o.tp_size);
  DS_CHECK(o.ep_size == 1 || o.ep_size == o.tp_size,
           "--ep-size {}: expert parallelism runs over the tensor-parallel ranks: use --ep-size 1 or --ep-size {} "
           "(= --tp-size)", o.ep_size, o.tp_size);
  DS_CHECK(o.dp_size >= 1 && o.tp_size % o.dp_size == 0,
           "--dp-size {} must divide --tp-size {} with --enable-dp-attention", o.dp_size, o.tp_size);
  const bool data_parallel = o.dp_size > 1;
  DS_CHECK(!(data_parallel && o.nnodes > 1), "--enable-dp-attention over --nnodes {}: data-parallel attention runs "
           "on one node for now", o.nnodes);
  const bool speculative = with_mtp_cache || !o.draft_model_path.empty();
  DS_CHECK(!(o.nnodes > 1 && speculative), "--nnodes {}: speculative decoding runs on one node for now (use --nnodes 1)",
           o.nnodes);
  DS_CHECK(!(data_parallel && speculative),
           "--dp-size {}: speculative decoding is not available with data-parallel attention", o.dp_size);
  int64_t ctx = o.context_length > 0 ? o.context_length : std::min<int64_t>(cfg.max_position_embeddings, 32768);

  // The layout's backends (several nodes: joined before any device is touched), then its runner.
  std::unique_ptr<NodeGroup> nodes;
  std::vector<std::unique_ptr<Backend>> ranks;
  if (o.nnodes > 1)
    nodes = std::make_unique<NodeGroup>(join_node_group(node_group_options(o, cfg, ctx)));
  else
    ranks = create_backends(resolve_device(parse_device_kind(o.device)), {o.tp_size, o.dp_size});
  std::vector<std::unique_ptr<Backend>>& backends = nodes ? nodes->backends : ranks;
  Backend& lead = *backends[0];
  // Before the weights: the kernel sets prepare FP8 weights differently, and head weights take their
  // FP8 form at preparation.
  for (auto& b : backends) {
    if (o.force_sm80_kernels) b->force_sm80_kernels();
    b->set_sm90_fp8_gemm(o.sm90_fp8_gemm);
  }
  const int page_size = o.page_size > 0 ? o.page_size : lead.device() == Device::CUDA ? 64 : 1;
  WeightSources w = open_weights(o, cfg);
  spdlog::info("loading {} ({} layers, hidden {}, {} experts) from {} on {}", cfg.architecture, cfg.num_hidden_layers,
               cfg.hidden_size, cfg.n_routed_experts, w.target->describe(), placement(o, lead, nodes.get()));
  LoadOptions lo;
  lo.mtp_weights = w.draft_renamed.get();
  lo.load_mtp = (o.load_mtp || with_mtp_cache) && o.nnodes == 1 && o.dp_size == 1;
  lo.shard.expert_parallel = o.ep_size > 1;
  if (nodes) {
    m.model = std::make_unique<MultiNodeModel>(std::move(*nodes), cfg, *w.target, ctx, lo);
  } else if (data_parallel) {
    m.dp = std::make_unique<DataParallelModel>(cfg, std::move(ranks), o.dp_size, *w.target, ctx, lo);
  } else {  // one device or tensor parallel; speculative decoding included (every rank its shard of the MTP layer)
    m.model = std::make_unique<ReplicaRunner>(cfg, std::move(ranks), *w.target, ctx, lo);
  }
  m.runner().synchronize();
  m.weight_bytes = lead.persistent_bytes();
  if (with_mtp_cache)
    DS_CHECK(m.runner().has_mtp(), "speculative decoding needs the MTP layer, but {} has none (num_nextn_predict_layers "
             "is {})", o.model_path, cfg.num_nextn_predict_layers);

  // The KV pool and the runner's caches (the MTP layer's of the target's element type).
  const int64_t cached_layers = cfg.num_hidden_layers + (with_mtp_cache ? std::max(1, cfg.num_nextn_predict_layers) : 0);
  const DType cache_type = cache_dtype.value_or(lead.activation_dtype());
  const int64_t bytes_per_token =
      latent_bytes_per_token(cached_layers, cfg.latent_dim(), int64_t(dtype_size(cache_type)));
  const DeviceMemory mem = lead.memory();  // rank 0's GPU (every rank holds the same latent cache)
  std::string sized_by;
  const int64_t tokens = kv_tokens(o, mem, ctx, bytes_per_token, page_size, m.weight_bytes, sized_by);
  const int64_t pages = (tokens + page_size - 1) / page_size;
  m.pool = std::make_unique<PagePool>(pages, page_size);
  m.trash_slot = int32_t(pages * page_size);  // the first slot after the pool's pages
  if (m.dp) {  // each attention group its own pool and cache of this size (each GPU is in one group)
    m.dp->allocate_caches(cache_pages_for(*m.pool), page_size, cache_type);
    for (int g = 0; g < o.dp_size; ++g) m.dp_pools.push_back(std::make_unique<PagePool>(pages, page_size));
    m.pool.reset();
  } else {
    m.cache = m.model->make_cache(cache_pages_for(*m.pool), page_size, false, cache_type);
    if (with_mtp_cache) m.mtp_cache = m.model->make_cache(cache_pages_for(*m.pool), page_size, true, cache_type);
  }
  const std::string graphs = record_graphs(m, o, cfg, lead);

  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  spdlog::info("model ready in {:.2f} s: context {} tokens, KV cache {} pages x {} tokens of {} (--kv-cache-dtype {}){}",
               s, ctx, pages, page_size, kv_cache_dtype_name(cache_type), o.kv_cache_dtype,
               m.dp ? fmt::format(" in each of {} attention groups", o.dp_size) : "");
  if (mem.total_bytes > 0) {
    const DeviceMemory after = lead.memory();
    spdlog::info("memory: weights {:.2f} GiB ({} bytes); KV cache {} tokens ({:.2f} GiB, {} bytes per token, sized by "
                 "{}); {:.1f} of {:.1f} GiB free; CUDA graphs: {}",
                 double(m.weight_bytes) / (1 << 30), m.weight_bytes, pages * page_size,
                 double(pages * page_size * bytes_per_token) / (1 << 30), bytes_per_token, sized_by,
                 double(after.free_bytes) / (1 << 30), double(after.total_bytes) / (1 << 30), graphs);
  }
  return m;
}

std::unique_ptr<Engine> start_engine(LoadedModel& m, const SchedulerOptions& opt) {
  if (!m.dp) return create_engine(m.runner(), m.cache, *m.pool, opt);
  std::vector<std::unique_ptr<Engine>> groups;
  for (int g = 0; g < m.dp->groups(); ++g)
    groups.push_back(create_engine(m.dp->group(g), m.dp->cache(g), *m.dp_pools[size_t(g)], opt));
  return std::make_unique<DataParallelEngine>(std::move(groups));
}

}  // namespace dsserve
