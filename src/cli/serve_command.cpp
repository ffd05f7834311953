// `dsserve serve`: the HTTP server, with SGLang's launch_server flag names. Loads the model and the
// text layer, starts the engine (scheduler thread) and the Asio HTTP server, and on SIGINT/SIGTERM
// stops accepting, aborts in-flight requests, lets their last bytes go out and exits 0. With
// --nnodes K only node 0 serves HTTP; the other nodes run its commands (multi_node_serving.h). Flags
// that cannot apply yet (speculative decoding over several nodes or with data-parallel attention,
// data-parallel attention over several nodes, plain data parallelism without --enable-dp-attention)
// are refused with a message; flags with nothing to do here are accepted and say so in the log.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>
#include <nlohmann/json.hpp>
#include <thread>

#include "cli/commands.h"
#include "cli/compat_flags.h"
#include "cli/model_options.h"
#include "cli/multi_node_serving.h"
#include "core/error.h"
#include "io/model_config.h"
#include "runtime/scheduler.h"
#include "server/http_server.h"
#include "server/routes.h"
#include "server/server_context.h"
#include "server/watchdog.h"
#include "text/chat_template.h"
#include "text/reasoning_parser.h"
#include "text/tokenizer.h"
#include "text/tool_call_parser.h"

namespace fs = std::filesystem;

namespace dsserve {

namespace {

struct ServeOptions {
  ModelOptions model;
  CompatFlags compat;
  std::string tokenizer_path, host = "127.0.0.1", served_model_name, chat_template, reasoning_parser,
      tool_call_parser, api_key, log_level = "info",
      dist_init_addr, schedule_policy = "fcfs", speculative_algorithm, speculative_draft_model_path, config;
  int port = 30000, tp_size = 1, dp_size = 1, ep_size = 1, nnodes = 1, node_rank = 0, dist_timeout = 0;
  bool enable_dp_attention = false, disable_radix_cache = false,
       skip_tokenizer_init = false, enable_metrics = false, log_requests = false, allow_auto_truncate = false,
       disable_mla = false;
  double watchdog_timeout = 300, health_generate_timeout = 20;
  int max_running_requests = 0, chunked_prefill_size = 0, max_prefill_tokens = 16384;
  int speculative_num_steps = 0, speculative_eagle_topk = 0, speculative_num_draft_tokens = 0;
  int max_queued_requests = 4096, io_threads = 2, max_connections = 4096, decode_log_interval = 40;
  double timeout_keep_alive = 5, timeout_request_header = 30, timeout_request_body = 60;
  int64_t max_request_body_bytes = 32ll << 20;
  bool disable_web_ui = false;
};

// The default --chunked-prefill-size: SGLang's 8192 on a GPU; on the CPU oracle a chunk that keeps
// one step within seconds (a forward's attention grows with the prefix, so long prompts are cut).
constexpr int kGpuChunkedPrefillSize = 8192, kCpuChunkedPrefillSize = 512;

// The names --log-level takes (as Python's logging, any case): spdlog's level for each.
spdlog::level::level_enum parse_log_level(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  static const std::map<std::string, spdlog::level::level_enum> levels = {
      {"trace", spdlog::level::trace},   {"debug", spdlog::level::debug}, {"info", spdlog::level::info},
      {"warning", spdlog::level::warn},  {"warn", spdlog::level::warn},   {"error", spdlog::level::err},
      {"critical", spdlog::level::critical}, {"off", spdlog::level::off}};
  auto it = levels.find(s);
  DS_CHECK(it != levels.end(), "--log-level {}: expected trace, debug, info, warning, error, critical or off", s);
  return it->second;
}

void add_flags(CLI::App& s, ServeOptions& o) {
  ModelOptions& m = o.model;
  s.add_option("--config", o.config, "SGLang's YAML config file: flag names and values (command-line flags win)");
  s.add_option("--model-path,--model", m.model_path, "Checkpoint directory (config.json + safetensors)")->required();
  s.add_option("--tokenizer-path", o.tokenizer_path, "Tokenizer directory (default: the model directory)");
  s.add_option("--host", o.host, "Address to listen on")->capture_default_str();
  s.add_option("--port", o.port, "Port to listen on")->check(CLI::Range(0, 65535))->capture_default_str();
  s.add_option("--device", m.device, "auto | cpu | cuda")->capture_default_str();
  s.add_option("--load-format", m.load_format, "auto | safetensors | dummy (random weights)")->capture_default_str();
  s.add_option("--json-model-override-args", m.json_model_override_args, "JSON object overriding config.json fields");
  s.add_option("--context-length", m.context_length, "Longest sequence (default: min(max_position_embeddings, 32768))")
      ->check(CLI::Range(int64_t(2), int64_t(1) << 40));
  s.add_option("--page-size", m.page_size, "Tokens per KV-cache page (default: 64 on a GPU, 1 on the CPU)")
      ->check(CLI::Range(1, 1 << 16));
  s.add_option("--max-total-tokens", m.max_total_tokens,
               "KV-cache capacity in tokens (default: from --mem-fraction-static on a GPU, 4 x the context length on the CPU)")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 40));
  s.add_option("--random-seed", m.random_seed, "Seed for dummy weights and unseeded sampling")->capture_default_str();
  s.add_option("--served-model-name", o.served_model_name, "Model name in /v1/models and responses (default: the model path)");
  s.add_option("--chat-template", o.chat_template, "Jinja chat template file (default: the tokenizer's)");
  s.add_flag("--skip-tokenizer-init", o.skip_tokenizer_init, "Serve token ids only (no tokenizer, no chat route)");
  s.add_option("--reasoning-parser", o.reasoning_parser, "deepseek-r1: split reasoning_content from content");
  s.add_option("--tool-call-parser", o.tool_call_parser, "deepseekv3: parse tool calls from the output");
  s.add_option("--api-key", o.api_key, "Require 'Authorization: Bearer KEY' on every route but /health and /metrics");
  s.add_flag("--enable-metrics", o.enable_metrics, "Serve Prometheus metrics on /metrics");
  s.add_flag("--disable-web-ui", o.disable_web_ui, "Do not serve the built-in chat page on /");
  s.add_option("--log-level", o.log_level, "trace | debug | info | warning | error | critical (any case)")->capture_default_str();
  s.add_flag("--log-requests", o.log_requests, "Log every HTTP request (method, path, body size, client)");
  s.add_option("--decode-log-interval", o.decode_log_interval, "Log decode statistics every N decode steps")
      ->check(CLI::Range(1, 1 << 30))->capture_default_str();
  s.add_option("--max-running-requests", o.max_running_requests, "Requests decoded together (default 256)")
      ->check(CLI::Range(1, 1 << 20));
  s.add_option("--chunked-prefill-size", o.chunked_prefill_size,
               "Prefill chunk in tokens (-1: no chunking; default 8192 on a GPU, 512 on the CPU)")
      ->check(CLI::Validator([](std::string& v) {
        return v == "-1" || (!v.empty() && v[0] != '-' && v != "0") ? std::string() : "expected -1 or a positive number";
      }, "-1 or > 0"));
  s.add_option("--max-prefill-tokens", o.max_prefill_tokens, "Prompt tokens per prefill forward")
      ->check(CLI::Range(1, 1 << 30))->capture_default_str();
  s.add_option("--schedule-policy", o.schedule_policy, "fcfs | lpm")->capture_default_str();
  s.add_flag("--disable-radix-cache", o.disable_radix_cache, "No prefix reuse across requests");
  s.add_flag("--disable-mla", o.disable_mla, "Decode with the non-absorbed attention too (up-projected keys and values)");
  s.add_flag("--allow-auto-truncate", o.allow_auto_truncate,
             "Cut prompts (and max_tokens) to the context length instead of answering 400");
  s.add_option("--max-queued-requests", o.max_queued_requests,
               "Waiting requests beyond which new ones get 503 (and the most sequences one request may ask for)")
      ->check(CLI::Range(1, 1 << 24))->capture_default_str();
  s.add_option("--max-request-body-bytes", o.max_request_body_bytes, "Larger request bodies get 413")
      ->check(CLI::Range(int64_t(1024), int64_t(1) << 40))->capture_default_str();
  s.add_option("--max-connections", o.max_connections, "Open connections beyond which new ones get 503")
      ->check(CLI::Range(1, 1 << 24))->capture_default_str();
  s.add_option("--timeout-keep-alive", o.timeout_keep_alive, "Seconds an idle keep-alive connection stays open")
      ->check(CLI::Range(0.001, 1e6))->capture_default_str();
  s.add_option("--timeout-request-header", o.timeout_request_header,
               "Seconds from a request's first byte to the end of its header")
      ->check(CLI::Range(0.001, 1e6))->capture_default_str();
  s.add_option("--timeout-request-body", o.timeout_request_body, "Seconds from the end of a header to the end of the body")
      ->check(CLI::Range(0.001, 1e6))->capture_default_str();
  s.add_option("--io-threads", o.io_threads, "HTTP io threads")->check(CLI::Range(1, 1024))->capture_default_str();
  s.add_option("--health-generate-timeout", o.health_generate_timeout, "Seconds /health_generate waits")
      ->check(CLI::Range(0.001, 1e6))->capture_default_str();
  s.add_option("--watchdog-timeout", o.watchdog_timeout,
               "Seconds a step may go without progress before the server exits (0: no watchdog)")
      ->check(CLI::Range(0.0, 1e9))->capture_default_str();
  // Flags of SGLang that select parallelism, kernels or memory on GPUs.
  s.add_option("--tp-size,--tp,--tensor-parallel-size", o.tp_size, "Tensor-parallel size")
      ->check(CLI::Range(1, 4096))->capture_default_str();
  s.add_option("--dp-size,--dp,--data-parallel-size", o.dp_size, "Data-parallel size")
      ->check(CLI::Range(1, 4096))->capture_default_str();
  s.add_flag("--enable-dp-attention", o.enable_dp_attention, "Data-parallel attention");
  s.add_option("--ep-size,--ep,--expert-parallel-size", o.ep_size, "Expert-parallel size")
      ->check(CLI::Range(1, 4096))->capture_default_str();
  s.add_option("--nnodes", o.nnodes, "Number of nodes (--tp-size counts the GPUs of all of them)")
      ->check(CLI::Range(1, 4096))->capture_default_str();
  s.add_option("--node-rank", o.node_rank, "Rank of this node (0 serves HTTP)")->check(CLI::Range(0, 4095))->capture_default_str();
  s.add_option("--dist-init-addr", o.dist_init_addr, "host:port of node 0 for multi-node bootstrap");
  s.add_option("--dist-timeout", o.dist_timeout, "Seconds for the multi-node rendezvous and each wait on another node (default 600)")
      ->check(CLI::Range(1, 1 << 30));
  m.add_kv_cache_dtype_flag(s);
  m.add_quantization_flag(s);
  s.add_option("--mem-fraction-static", m.mem_fraction_static, "Fraction of GPU memory for weights and KV cache (default 0.88)")
      ->check(CLI::Range(0.01, 1.0));
  m.add_cuda_graph_flags(s);
  add_compat_flags(s, o.compat);
  s.add_option("--speculative-algorithm", o.speculative_algorithm, "EAGLE or NEXTN: draft with the MTP layer");
  s.add_option("--speculative-num-steps", o.speculative_num_steps, "Draft steps per round (default 3)")
      ->check(CLI::Range(1, 64));
  s.add_option("--speculative-eagle-topk", o.speculative_eagle_topk, "Branches per draft step (default 1)")
      ->check(CLI::Range(1, 64));
  s.add_option("--speculative-num-draft-tokens", o.speculative_num_draft_tokens, "Tokens verified per round (default 4)")
      ->check(CLI::Range(1, 1024));
  s.add_option("--speculative-draft-model-path", o.speculative_draft_model_path);
}

// Several nodes: the same command on every node, only --node-rank differs (see multi_node_serving.h).
void check_multi_node_flags(const ServeOptions& o) {
  DS_CHECK(o.nnodes >= 1, "--nnodes must be at least 1, found {}", o.nnodes);
  DS_CHECK(o.node_rank >= 0 && o.node_rank < o.nnodes, "--node-rank {} is outside [0, --nnodes {})", o.node_rank,
           o.nnodes);
  DS_CHECK(o.dist_timeout >= 0, "--dist-timeout must be positive, found {}", o.dist_timeout);
  if (o.nnodes == 1) return;
  DS_CHECK(!o.enable_dp_attention, "--enable-dp-attention with --nnodes {}: data-parallel attention runs on one node "
           "for now", o.nnodes);
  DS_CHECK(o.tp_size >= o.nnodes && o.tp_size % o.nnodes == 0,
           "--tp-size {} with --nnodes {}: --tp-size counts the ranks of all nodes and every node runs the same number, "
           "so it must be a multiple of --nnodes", o.tp_size, o.nnodes);
  DS_CHECK(!o.dist_init_addr.empty(), "--nnodes {} needs --dist-init-addr HOST:PORT (node 0's address, the same on "
           "every node)", o.nnodes);
  DS_CHECK(o.speculative_algorithm.empty(), "--speculative-algorithm with --nnodes {}: speculative decoding runs on one "
           "node for now (use --nnodes 1)", o.nnodes);
}

// Refuses what cannot apply and logs what is accepted without effect.
void check_flags(const ServeOptions& o, bool on_cpu) {
  auto refuse = [](bool cond, const std::string& msg) {
    if (cond) fail("{}", msg);
  };
  refuse(o.dp_size < 1, fmt::format("--dp-size must be at least 1, found {}", o.dp_size));
  refuse(o.dp_size != 1 && !o.enable_dp_attention,
         fmt::format("--dp-size {}: data parallelism runs as data-parallel attention here: add --enable-dp-attention "
                     "(--dp-size attention groups over the --tp-size GPUs)", o.dp_size));
  refuse(o.enable_dp_attention && o.tp_size >= 1 && o.dp_size >= 1 && o.tp_size % o.dp_size != 0,
         fmt::format("--enable-dp-attention: --dp-size {} must divide --tp-size {} (each attention group gets "
                     "--tp-size / --dp-size GPUs)", o.dp_size, o.tp_size));
  refuse(o.enable_dp_attention && o.dp_size > 1 && !o.speculative_algorithm.empty(),
         fmt::format("--enable-dp-attention --dp-size {}: speculative decoding is not available with data-parallel "
                     "attention (drop --speculative-algorithm, or use --dp-size 1)", o.dp_size));
  refuse(o.ep_size != 1 && o.ep_size != o.tp_size,
         fmt::format("--ep-size {}: expert parallelism runs over the tensor-parallel ranks (use 1 or --tp-size {})",
                     o.ep_size, o.tp_size));
  check_multi_node_flags(o);
  refuse(o.tp_size < 1, fmt::format("--tp-size must be at least 1, found {}", o.tp_size));
  refuse(o.port < 0 || o.port > 65535, "--port must be in 0..65535");
  refuse(o.speculative_algorithm.empty() && (o.speculative_num_steps || o.speculative_eagle_topk ||
                                              o.speculative_num_draft_tokens || !o.speculative_draft_model_path.empty()),
         "--speculative-num-steps/-eagle-topk/-num-draft-tokens/-draft-model-path need --speculative-algorithm EAGLE");
  {
    static const std::set<std::string> cache_dtypes = {"auto", "bf16", "bfloat16", "fp8_e4m3", "fp8_e5m2"};
    refuse(!cache_dtypes.count(o.model.kv_cache_dtype),
           fmt::format("--kv-cache-dtype {}: expected auto, bf16, fp8_e4m3 or fp8_e5m2", o.model.kv_cache_dtype));
  }
  refuse(!o.reasoning_parser.empty() && !text::reasoning_parser_known(o.reasoning_parser),
         fmt::format("--reasoning-parser {}: expected deepseek-r1 or deepseek-v3", o.reasoning_parser));
  refuse(!o.tool_call_parser.empty() && !text::tool_call_parser_known(o.tool_call_parser),
         fmt::format("--tool-call-parser {}: expected deepseekv3 or deepseekv31", o.tool_call_parser));
  refuse(o.disable_mla && !o.speculative_algorithm.empty(),
         "--disable-mla with --speculative-algorithm: verifying a draft tree needs the absorbed attention's tree "
         "masks (drop one of the two)");
  refuse(o.schedule_policy != "fcfs" && o.schedule_policy != "lpm",
         fmt::format("--schedule-policy {}: expected fcfs or lpm", o.schedule_policy));
  check_compat_flags(o.compat, on_cpu);
  if (o.enable_dp_attention && o.dp_size == 1)
    spdlog::info("--enable-dp-attention with --dp-size 1: one attention group, as plain tensor parallelism");
  if (o.nnodes == 1 && (!o.dist_init_addr.empty() || o.dist_timeout))
    spdlog::info("--dist-init-addr/--dist-timeout: no effect with --nnodes 1");
  if (on_cpu && o.model.mem_fraction_static > 0) spdlog::info("--mem-fraction-static: accepted; on the cpu device the KV cache is sized by --max-total-tokens");
  if (on_cpu && (o.model.cuda_graph_max_bs || o.model.disable_cuda_graph || !o.model.cuda_graph_bs.empty()))
    spdlog::info("--cuda-graph-max-bs/--cuda-graph-bs/--disable-cuda-graph: no CUDA graphs on the cpu device");
}

// OpenAI's system_fingerprint: this build and the settings that shape outputs.
std::string system_fingerprint(const ServeOptions& o) {
  const std::string what = fmt::format("dsserve-0.1|{}|{}|{}|{}|{}|{}|{}", o.model.model_path, o.model.kv_cache_dtype,
                                       o.tp_size, o.dp_size, o.ep_size, o.disable_mla, o.speculative_algorithm);
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (unsigned char c : what) h = (h ^ c) * 1099511628211ull;
  return fmt::format("fp_{:010x}", h & 0xffffffffffull);
}

nlohmann::json server_args_json(const ServeOptions& o) {
  const ModelOptions& m = o.model;
  return {{"model_path", m.model_path}, {"tokenizer_path", o.tokenizer_path}, {"host", o.host}, {"port", o.port},
          {"device", m.device}, {"load_format", m.load_format}, {"json_model_override_args", m.json_model_override_args},
          {"context_length", m.context_length}, {"page_size", m.page_size}, {"max_total_tokens", m.max_total_tokens},
          {"random_seed", m.random_seed}, {"served_model_name", o.served_model_name}, {"chat_template", o.chat_template},
          {"skip_tokenizer_init", o.skip_tokenizer_init}, {"reasoning_parser", o.reasoning_parser.empty() ? nlohmann::json(nullptr) : nlohmann::json(o.reasoning_parser)},
          {"tool_call_parser", o.tool_call_parser.empty() ? nlohmann::json(nullptr) : nlohmann::json(o.tool_call_parser)},
          {"api_key", o.api_key.empty() ? nlohmann::json(nullptr) : nlohmann::json("<set>")},
          {"enable_metrics", o.enable_metrics}, {"log_level", o.log_level},
          {"max_running_requests", o.max_running_requests}, {"chunked_prefill_size", o.chunked_prefill_size},
          {"max_prefill_tokens", o.max_prefill_tokens}, {"schedule_policy", o.schedule_policy},
          {"disable_radix_cache", o.disable_radix_cache}, {"max_queued_requests", o.max_queued_requests},
          {"tp_size", o.tp_size}, {"dp_size", o.dp_size}, {"ep_size", o.ep_size}, {"nnodes", o.nnodes},
          {"node_rank", o.node_rank},
          {"dist_init_addr", o.dist_init_addr.empty() ? nlohmann::json(nullptr) : nlohmann::json(o.dist_init_addr)},
          {"dist_timeout", o.model.dist_timeout_s}, {"enable_dp_attention", o.enable_dp_attention}, {"kv_cache_dtype", m.kv_cache_dtype},
          {"quantization", m.quantization.empty() ? nlohmann::json(nullptr) : nlohmann::json(m.quantization)},
          {"mem_fraction_static", m.mem_fraction_static}, {"disable_cuda_graph", m.disable_cuda_graph},
          {"cuda_graph_max_bs", m.cuda_graph_max_bs}, {"cuda_graph_bs", m.cuda_graph_bs}, {"watchdog_timeout", o.watchdog_timeout},
          {"max_request_body_bytes", o.max_request_body_bytes}, {"io_threads", o.io_threads},
          {"max_connections", o.max_connections}, {"timeout_keep_alive", o.timeout_keep_alive},
          {"timeout_request_header", o.timeout_request_header}, {"timeout_request_body", o.timeout_request_body},
          {"disable_mla", o.disable_mla}, {"allow_auto_truncate", o.allow_auto_truncate},
          {"log_requests", o.log_requests}, {"decode_log_interval", o.decode_log_interval},
          {"health_generate_timeout", o.health_generate_timeout},
          {"speculative_algorithm", o.speculative_algorithm.empty() ? nlohmann::json(nullptr) : nlohmann::json(o.speculative_algorithm)},
          {"speculative_num_steps", o.speculative_num_steps}, {"speculative_eagle_topk", o.speculative_eagle_topk},
          {"speculative_num_draft_tokens", o.speculative_num_draft_tokens},
          {"speculative_draft_model_path", o.speculative_draft_model_path}};
}

void serve(ServeOptions& o) {
  spdlog::set_level(parse_log_level(o.log_level));
  const DeviceKind kind = parse_device_kind(o.model.device);
  const bool on_cpu = kind == DeviceKind::Cpu || (kind == DeviceKind::Auto && cuda_device_count() == 0);
  check_flags(o, on_cpu);
  if (o.chunked_prefill_size == 0) o.chunked_prefill_size = on_cpu ? kCpuChunkedPrefillSize : kGpuChunkedPrefillSize;
  if (o.disable_mla && !o.model.disable_cuda_graph) {
    spdlog::info("--disable-mla: decode runs the non-absorbed attention, eagerly (no CUDA graphs)");
    o.model.disable_cuda_graph = true;
  }
  o.model.tp_size = o.tp_size;
  o.model.ep_size = o.ep_size;
  o.model.dp_size = o.enable_dp_attention ? o.dp_size : 1;
  o.model.nnodes = o.nnodes;
  o.model.node_rank = o.node_rank;
  o.model.dist_init_addr = o.dist_init_addr;
  if (o.dist_timeout > 0) o.model.dist_timeout_s = o.dist_timeout;
  if (o.node_rank > 0) {  // no HTTP, no text layer: this node's ranks run node 0's commands
    serve_other_node(o.model);
    return;
  }

  // Text layer first: a bad tokenizer path fails before the (slow) weight load.
  std::unique_ptr<text::Tokenizer> tokenizer;
  std::unique_ptr<text::ChatTemplate> chat_template;
  std::string tok_dir = o.tokenizer_path.empty() ? o.model.model_path : o.tokenizer_path;
  if (!o.skip_tokenizer_init) {
    DS_CHECK(fs::exists(fs::path(tok_dir) / "tokenizer.json"),
             "no tokenizer.json in {}: pass --tokenizer-path DIR, or --skip-tokenizer-init to serve token ids only", tok_dir);
    tokenizer = std::make_unique<text::Tokenizer>(text::Tokenizer::load(tok_dir));
    if (!o.chat_template.empty())
      chat_template = std::make_unique<text::ChatTemplate>(text::ChatTemplate::from_file(o.chat_template, *tokenizer));
    else if (!tokenizer->chat_template.empty())
      chat_template = std::make_unique<text::ChatTemplate>(text::ChatTemplate::from_tokenizer(*tokenizer));
    else
      spdlog::warn("the tokenizer has no chat_template: /v1/chat/completions answers 400 (use --chat-template FILE)");
  } else if (!o.reasoning_parser.empty() || !o.tool_call_parser.empty() || !o.chat_template.empty()) {
    fail("--skip-tokenizer-init serves token ids only: drop --reasoning-parser, --tool-call-parser and --chat-template");
  }

  if (o.model.max_total_tokens == 0 && on_cpu) {  // room for several full-context sequences, not one
    ModelConfig cfg = load_model_config(o.model);
    int64_t ctx = o.model.context_length > 0 ? o.model.context_length
                                             : std::min<int64_t>(cfg.max_position_embeddings, 32768);
    o.model.max_total_tokens = 4 * ctx;
  }
  SpeculativeOptions spec;
  spec.algorithm = o.speculative_algorithm;
  spec.num_steps = o.speculative_num_steps;
  spec.eagle_topk = o.speculative_eagle_topk;
  spec.num_draft_tokens = o.speculative_num_draft_tokens;
  spec.validate_and_default();
  if (spec.enabled()) {
    // server info reports the values in use, defaults included
    o.speculative_num_steps = spec.num_steps;
    o.speculative_eagle_topk = spec.eagle_topk;
    o.speculative_num_draft_tokens = spec.num_draft_tokens;
    spdlog::info("speculative decoding: {} with {} steps, topk {}, {} draft tokens, drafting with {}", spec.algorithm,
                 spec.num_steps, spec.eagle_topk, spec.num_draft_tokens,
                 o.speculative_draft_model_path.empty() ? "the checkpoint's MTP layer" : o.speculative_draft_model_path);
  }
  o.model.draft_model_path = o.speculative_draft_model_path;
  o.model.load_mtp = spec.enabled();
  o.model.verify_tokens = spec.enabled() ? spec.num_draft_tokens : 0;  // as SGLang: the MTP layer is the draft model, loaded only to draft
  LoadedModel m = load_model(o.model, spec.enabled());
  SchedulerOptions so;
  so.speculative = spec;
  so.mtp_cache = spec.enabled() ? &m.mtp_cache : nullptr;
  if (o.max_running_requests > 0) so.max_running_requests = o.max_running_requests;
  so.chunked_prefill_size = o.chunked_prefill_size;
  so.max_prefill_tokens = o.max_prefill_tokens;
  so.schedule_policy = o.schedule_policy;
  so.disable_radix_cache = o.disable_radix_cache;
  so.max_queued_requests = o.max_queued_requests;
  so.random_seed = o.model.random_seed;
  so.decode_attention = o.disable_mla ? AttentionMode::Expanded : AttentionMode::Absorbed;
  so.decode_log_interval = o.decode_log_interval;
  std::unique_ptr<Engine> engine = start_engine(m, so);
  // A step that outlasts --watchdog-timeout (a hung kernel) ends the server with the reason.
  server::Watchdog watchdog(*engine, o.watchdog_timeout, [](const std::string& reason) {
    spdlog::critical("{}; exiting", reason);
    std::fflush(nullptr);
    std::_Exit(3);
  });

  server::ServerSettings settings;
  settings.served_model_name = o.served_model_name.empty() ? o.model.model_path : o.served_model_name;
  settings.model_path = o.model.model_path;
  settings.tokenizer_path = tok_dir;
  settings.reasoning_parser = o.reasoning_parser;
  settings.tool_call_parser = o.tool_call_parser;
  settings.enable_metrics = o.enable_metrics;
  settings.health_generate_timeout_s = o.health_generate_timeout;
  settings.allow_auto_truncate = o.allow_auto_truncate;
  settings.system_fingerprint = system_fingerprint(o);
  server::ServerContext ctx(*engine, tokenizer.get(), chat_template.get(), settings);
  ctx.server_args = server_args_json(o);

  server::Router router(o.api_key);
  router.set_log_requests(o.log_requests);
  server::add_all_routes(router, ctx);
  if (!o.disable_web_ui) server::add_web_ui_routes(router);
  server::HttpServerOptions ho;
  ho.host = o.host;
  ho.port = o.port;
  ho.io_threads = o.io_threads;
  ho.max_body_bytes = size_t(o.max_request_body_bytes);
  ho.max_connections = o.max_connections;
  ho.keep_alive_timeout_s = o.timeout_keep_alive;
  ho.header_timeout_s = o.timeout_request_header;
  ho.body_timeout_s = o.timeout_request_body;
  server::HttpServer http(ho, router);
  spdlog::info("serving {} on http://{}:{} ({} io threads)", settings.served_model_name, o.host, http.bound_port(),
               o.io_threads);
  // Machine-readable line for scripts that start the server on port 0.
  fmt::print(stderr, "dsserve: listening on {}:{}\n", o.host, http.bound_port());

  std::thread stopper;
  http.run([&] {
    ctx.shutting_down = true;
    http.stop_accepting();
    // Off the io threads: shutdown() joins the scheduler, whose final events the io threads deliver.
    stopper = std::thread([&] {
      engine->shutdown();
      std::this_thread::sleep_for(std::chrono::milliseconds(300));  // let the last chunks go out
      http.stop();
    });
  });
  if (stopper.joinable()) stopper.join();
  spdlog::info("server stopped");
}

}  // namespace

void add_serve_command(CLI::App& app) {
  auto opt = std::make_shared<ServeOptions>();
  CLI::App* sub = app.add_subcommand("serve", "Serve the model over HTTP (SGLang launch_server flags and API)");
  add_flags(*sub, *opt);
  sub->callback([opt] { serve(*opt); });
}

}  // namespace dsserve
