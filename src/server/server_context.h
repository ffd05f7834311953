// What every route shares: the engine, the text layer (absent with --skip-tokenizer-init), the
// settings that shape answers, the server arguments as /get_server_info reports them, and metrics.
#pragma once
#include <nlohmann/json.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "runtime/engine.h"
#include "server/metrics.h"
#include "text/chat_template.h"
#include "text/tokenizer.h"

namespace dsserve::grammar {
class GrammarCache;
}

namespace dsserve::server {

struct ServerSettings {
  std::string served_model_name = "default";
  std::string model_path, tokenizer_path;
  std::string reasoning_parser;   // "" or "deepseek-r1"
  std::string tool_call_parser;   // "" or "deepseekv3"
  bool enable_metrics = false;
  double health_generate_timeout_s = 20.0;
  int retry_after_s = 1;          // Retry-After of 503 when the queue is full
  int default_max_new_tokens = 128;  // /generate without max_new_tokens (SGLang's default)
  std::string system_fingerprint = "fp_dsserve";
  bool allow_auto_truncate = false;  // --allow-auto-truncate: see fit_context  // OpenAI's system_fingerprint: this build and configuration
};

struct ServerContext {
  ServerContext(Engine& e, const text::Tokenizer* tok, const text::ChatTemplate* tmpl, ServerSettings s)
      : engine(e), tokenizer(tok), chat_template(tmpl), settings(std::move(s)) {}

  Engine& engine;
  const text::Tokenizer* tokenizer;        // null: token ids only
  const text::ChatTemplate* chat_template; // null: no chat route
  ServerSettings settings;
  nlohmann::json server_args = nlohmann::json::object();
  Metrics metrics;
  std::atomic<uint64_t> next_id{1};
  std::atomic<bool> shutting_down{false};
  // Compiled grammars of structured output over the tokenizer's vocabulary (made on first use:
  // server/structured_output.h).
  std::shared_ptr<grammar::GrammarCache> grammar_cache;

  // A fresh request id such as "chatcmpl-<hex>".
  std::string new_id(const std::string& prefix);
};

}  // namespace dsserve::server
