// The subcommands of the dsserve binary, each registered on the CLI11 app by its own file.
#pragma once
#include <CLI/CLI.hpp>

namespace dsserve {

void add_generate_command(CLI::App& app);
void add_init_tiny_model_command(CLI::App& app);
void add_serve_command(CLI::App& app);
void add_bench_serving_command(CLI::App& app);
void add_tokenize_command(CLI::App& app);
void add_export_nextn_command(CLI::App& app);
void add_bench_speculative_command(CLI::App& app);
void add_plan_memory_command(CLI::App& app);
void add_bench_speculative_cost_command(CLI::App& app);
void add_bench_one_batch_command(CLI::App& app);
void add_bench_grammar_command(CLI::App& app);
void add_quantize_command(CLI::App& app);

}  // namespace dsserve
