// JSON-lines tokenize / chat-render loop (see tokenize_command.h).
#include "text/tokenize_command.h"

#include <nlohmann/json.hpp>

#include <iostream>
#include <optional>

#include "core/error.h"
#include "text/chat_template.h"
#include "text/tokenizer.h"

namespace dsserve::text {

int run_tokenize_command(const std::string& tokenizer_dir, bool chat, std::istream& in, std::ostream& out) {
  std::optional<Tokenizer> tokenizer;
  std::optional<ChatTemplate> chat_template;
  try {
    tokenizer.emplace(Tokenizer::load(tokenizer_dir));
    if (chat) chat_template.emplace(ChatTemplate::from_tokenizer(*tokenizer));
  } catch (const Error& e) {
    std::cerr << "dsserve tokenize: " << e.what() << "\n";
    return 1;
  }
  int status = 0;
  std::string line;
  for (int line_no = 1; std::getline(in, line); ++line_no) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    try {
      nlohmann::ordered_json input;
      try {
        input = nlohmann::ordered_json::parse(line);
      } catch (const nlohmann::json::parse_error& e) {
        fail("not valid JSON: {}", e.what());
      }
      if (!chat) {
        if (!input.is_string()) fail("expected a JSON string, found {}", input.type_name());
        out << nlohmann::json(tokenizer->encode(input.get<std::string>())).dump() << "\n";
        continue;
      }
      if (!input.is_object() || !input.contains("messages"))
        fail("expected {{\"messages\": [...], \"add_generation_prompt\": bool}}, found {}", input.type_name());
      const auto& agp = input.value("add_generation_prompt", nlohmann::ordered_json(false));
      if (!agp.is_boolean()) fail("add_generation_prompt: expected a boolean, found {}", agp.type_name());
      const auto tools = input.value("tools", nlohmann::ordered_json());
      out << nlohmann::json(chat_template->render(input["messages"], agp.get<bool>(), tools)).dump() << "\n";
    } catch (const Error& e) {
      out << nlohmann::json({{"error", "line " + std::to_string(line_no) + ": " + e.what()}}).dump() << "\n";
      status = 1;
    }
  }
  out.flush();
  return status;
}

}  // namespace dsserve::text
