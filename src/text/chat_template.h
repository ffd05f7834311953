// Chat template rendering: the checkpoint's chat_template (or one from --chat-template FILE)
// rendered with messages, add_generation_prompt, bos_token, eos_token and tools, the way Hugging
// Face transformers' apply_chat_template does (trim_blocks and lstrip_blocks on, tools = none when
// absent). The template is parsed once; render is thread-safe.
#pragma once
#include <nlohmann/json.hpp>

#include <string>

#include "text/jinja/template.h"

namespace dsserve::text {

class Tokenizer;

class ChatTemplate {
 public:
  ChatTemplate(std::string_view source, std::string bos_token, std::string eos_token,
               const std::string& name = "chat_template");
  // The tokenizer's own chat_template (dsserve::Error if it has none).
  static ChatTemplate from_tokenizer(const Tokenizer& tokenizer);
  // A template file (the --chat-template flag), with the tokenizer's bos/eos tokens.
  static ChatTemplate from_file(const std::string& path, const Tokenizer& tokenizer);

  // messages: JSON array of {role, content, ...}; tools: JSON array or null; extra: further
  // template variables (e.g. {"thinking": true}), a JSON object or null.
  std::string render(const nlohmann::ordered_json& messages, bool add_generation_prompt,
                     const nlohmann::ordered_json& tools = nullptr,
                     const nlohmann::ordered_json& extra = nullptr) const;
  // The bounds of a render (jinja::RenderLimits' defaults unless set).
  void set_render_limits(jinja::RenderLimits limits) { template_.set_limits(limits); }

 private:
  jinja::Template template_;
  std::string bos_token_, eos_token_;
};

}  // namespace dsserve::text
