// A conversation as the model reads it: messages (OpenAI's form, content flattened to strings)
// rendered with the checkpoint's chat template and tokenized. Shared by the routes that take
// messages (/v1/chat/completions, /v1/responses); errors are 400s naming `param`.
#pragma once
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "server/server_context.h"

namespace dsserve::server {

struct ConversationOptions {
  nlohmann::ordered_json tools;                  // null or the offered tools
  nlohmann::ordered_json chat_template_kwargs;   // object or null
  bool continue_final_message = false;           // no generation prompt: extend the last assistant message
};

// 400 when the server has no tokenizer or no chat template.
void require_chat_template(const ServerContext& ctx, const std::string& route);
std::vector<int32_t> tokenize_conversation(const ServerContext& ctx, const nlohmann::ordered_json& messages,
                                           const ConversationOptions& opt, const std::string& param = "messages");

}  // namespace dsserve::server
