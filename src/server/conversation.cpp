// Chat-template rendering and tokenizing of a conversation (see conversation.h).
#include "server/conversation.h"

#include "server/api_error.h"

namespace dsserve::server {

void require_chat_template(const ServerContext& ctx, const std::string& route) {
  if (!ctx.tokenizer)
    throw ApiError(400, route + " needs the tokenizer: the server runs with --skip-tokenizer-init");
  if (!ctx.chat_template)
    throw ApiError(400, "the model has no chat template: start the server with --chat-template FILE");
}

std::vector<int32_t> tokenize_conversation(const ServerContext& ctx, const nlohmann::ordered_json& messages,
                                           const ConversationOptions& opt, const std::string& param) {
  nlohmann::ordered_json extra = opt.chat_template_kwargs.is_object() ? opt.chat_template_kwargs
                                                                      : nlohmann::ordered_json::object();
  bool add_generation_prompt = true;
  if (opt.continue_final_message) {
    if (messages.empty() || messages.back()["role"] != "assistant")
      bad_request("continue_final_message", "continue_final_message needs the last message to be the assistant's");
    add_generation_prompt = false;
  }
  std::string prompt;
  try {
    prompt = ctx.chat_template->render(messages, add_generation_prompt, opt.tools, extra);
  } catch (const std::exception& e) {
    bad_request(param, "cannot apply the chat template: {}", e.what());
  }
  if (opt.continue_final_message) {
    const std::string eos = ctx.tokenizer->eos_token;
    if (!eos.empty() && prompt.size() >= eos.size() && prompt.compare(prompt.size() - eos.size(), eos.size(), eos) == 0)
      prompt.resize(prompt.size() - eos.size());
  }
  try {
    return ctx.tokenizer->encode(prompt, /*add_special_tokens=*/false);
  } catch (const std::exception& e) {
    bad_request(param, "cannot tokenize the conversation: {}", e.what());
  }
}

}  // namespace dsserve::server
