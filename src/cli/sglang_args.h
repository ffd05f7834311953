// SGLang's ways with the command line, applied to a subcommand's arguments before CLI11 reads
// them: `--config FILE` (a YAML mapping of flag names to values, SGLang's form: `tp-size: 2`,
// `enable-metrics: true`, lists for multi-value flags; a flag also given on the command line keeps
// the command line's value), and argparse's unique-prefix abbreviations (`--speculative-algo` for
// `--speculative-algorithm`; a prefix of several flags is an error naming them).
#pragma once
#include <CLI/CLI.hpp>
#include <string>
#include <vector>

namespace dsserve {

// args: what follows the subcommand's name. Throws Error naming the file, key or flag at fault.
std::vector<std::string> expand_sglang_args(const CLI::App& sub, const std::vector<std::string>& args);

}  // namespace dsserve
