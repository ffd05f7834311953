// Chat template variables and rendering (see chat_template.h).
#include "text/chat_template.h"

#include <fstream>
#include <sstream>

#include "core/error.h"
#include "text/tokenizer.h"

namespace dsserve::text {

ChatTemplate::ChatTemplate(std::string_view source, std::string bos_token, std::string eos_token, const std::string& name)
    : template_(source, name, jinja::LexOptions{.trim_blocks = true, .lstrip_blocks = true}),
      bos_token_(std::move(bos_token)),
      eos_token_(std::move(eos_token)) {}

ChatTemplate ChatTemplate::from_tokenizer(const Tokenizer& tokenizer) {
  if (tokenizer.chat_template.empty())
    fail("tokenizer_config.json has no chat_template; pass --chat-template FILE");
  return ChatTemplate(tokenizer.chat_template, tokenizer.bos_token, tokenizer.eos_token, "chat_template");
}

ChatTemplate ChatTemplate::from_file(const std::string& path, const Tokenizer& tokenizer) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail("{}: cannot open chat template file", path);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ChatTemplate(ss.str(), tokenizer.bos_token, tokenizer.eos_token, path);
}

std::string ChatTemplate::render(const nlohmann::ordered_json& messages, bool add_generation_prompt,
                                 const nlohmann::ordered_json& tools, const nlohmann::ordered_json& extra) const {
  if (!messages.is_array()) fail("chat template: messages must be a JSON array, found {}", messages.type_name());
  if (!tools.is_null() && !tools.is_array()) fail("chat template: tools must be a JSON array, found {}", tools.type_name());
  std::vector<std::pair<std::string, jinja::Value>> vars;
  vars.emplace_back("messages", jinja::Value::from_json(messages));
  vars.emplace_back("add_generation_prompt", jinja::Value(add_generation_prompt));
  vars.emplace_back("bos_token", jinja::Value(bos_token_));
  vars.emplace_back("eos_token", jinja::Value(eos_token_));
  vars.emplace_back("tools", jinja::Value::from_json(tools));
  if (extra.is_object())
    for (auto it = extra.begin(); it != extra.end(); ++it) vars.emplace_back(it.key(), jinja::Value::from_json(it.value()));
  else if (!extra.is_null())
    fail("chat template: extra variables must be a JSON object, found {}", extra.type_name());
  return template_.render(vars);
}

}  // namespace dsserve::text
