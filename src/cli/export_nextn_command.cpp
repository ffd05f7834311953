// `dsserve export-nextn --input-dir DIR --output-dir OUT`: the checkpoint's MTP layer as a draft
// model for --speculative-draft-model-path.
#include "cli/commands.h"
#include "model/nextn_export.h"

namespace dsserve {

void add_export_nextn_command(CLI::App& app) {
  struct Options {
    std::string input_dir, output_dir;
  };
  auto opt = std::make_shared<Options>();
  CLI::App* sub = app.add_subcommand("export-nextn", "Export the MTP (NextN) layer as a draft-model checkpoint");
  sub->add_option("--input-dir", opt->input_dir, "DeepSeek-V3 checkpoint")->required();
  sub->add_option("--output-dir", opt->output_dir, "Where to write the NextN checkpoint")->required();
  sub->callback([opt] { export_nextn(opt->input_dir, opt->output_dir); });
}

}  // namespace dsserve
