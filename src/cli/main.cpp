// dsserve: one binary, one subcommand per job. Logs go to stderr; results to stdout. The
// subcommand's arguments go through SGLang's --config and abbreviation handling first
// (cli/sglang_args.h).
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <iostream>

#include "cli/commands.h"
#include "cli/sglang_args.h"
#include "core/error.h"

int main(int argc, char** argv) {
  spdlog::set_default_logger(spdlog::stderr_color_mt("dsserve"));
  spdlog::set_pattern("[%H:%M:%S.%e] %^%l%$ %v");
  CLI::App app{"dsserve: inference server for DeepSeek-V3/R1-architecture models"};
  app.require_subcommand(1);
  dsserve::add_generate_command(app);
  dsserve::add_init_tiny_model_command(app);
  dsserve::add_serve_command(app);
  dsserve::add_bench_serving_command(app);
  dsserve::add_tokenize_command(app);
  dsserve::add_export_nextn_command(app);
  dsserve::add_bench_speculative_command(app);
  dsserve::add_plan_memory_command(app);
  dsserve::add_bench_speculative_cost_command(app);
  dsserve::add_bench_one_batch_command(app);
  dsserve::add_bench_grammar_command(app);
  dsserve::add_quantize_command(app);
  try {
    std::vector<std::string> args(argv, argv + argc);
    if (argc > 1) {
      for (CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; }))
        if (sub->check_name(args[1])) {
          std::vector<std::string> rest(args.begin() + 2, args.end());
          rest = dsserve::expand_sglang_args(*sub, rest);
          args.resize(2);
          args.insert(args.end(), rest.begin(), rest.end());
          break;
        }
    }
    std::vector<char*> cargs;
    for (std::string& a : args) cargs.push_back(a.data());
    app.parse(int(cargs.size()), cargs.data());
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << std::endl;
    return 1;
  }
  return 0;
}
