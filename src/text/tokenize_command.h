// The `dsserve tokenize` subcommand's logic: JSON lines in, JSON lines out. Each input line is a
// JSON string, answered by the list of its token ids (no special tokens added; special-token text
// recognised). With chat, each line is {"messages": [...], "add_generation_prompt": bool,
// optional "tools": [...]} answered by the rendered chat template as a JSON string.
#pragma once
#include <iosfwd>
#include <string>

namespace dsserve::text {

// Returns 0 on success; 1 if the tokenizer cannot be loaded or any line was bad (a bad line is
// answered by {"error": "line N: ..."} and processing continues).
int run_tokenize_command(const std::string& tokenizer_dir, bool chat, std::istream& in, std::ostream& out);

}  // namespace dsserve::text
