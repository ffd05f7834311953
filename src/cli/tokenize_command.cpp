// `dsserve tokenize --tokenizer-path DIR [--chat]`: JSON lines in, token ids (or rendered chat
// templates) out, for scripts and checks against other implementations.
#include <iostream>

#include "cli/commands.h"
#include "text/tokenize_command.h"

namespace dsserve {

void add_tokenize_command(CLI::App& app) {
  struct Options {
    std::string tokenizer_path;
    bool chat = false;
  };
  auto opt = std::make_shared<Options>();
  CLI::App* sub = app.add_subcommand("tokenize", "Tokenize JSON-lines strings from stdin (or render chats with --chat)");
  sub->add_option("--tokenizer-path", opt->tokenizer_path, "Directory with tokenizer.json and tokenizer_config.json")
      ->required();
  sub->add_flag("--chat", opt->chat, "Each line is {\"messages\": [...], \"add_generation_prompt\": bool}");
  sub->callback([opt] {
    int rc = text::run_tokenize_command(opt->tokenizer_path, opt->chat, std::cin, std::cout);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace dsserve
