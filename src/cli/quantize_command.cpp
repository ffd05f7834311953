// `dsserve quantize --input-dir DIR --output-dir OUT --method awq|w8a8_int8|blockwise_int8`: a BF16 or
// FP8 checkpoint rewritten as an AWQ or INT8 one (model/checkpoint_quantizer.h).
#include "cli/commands.h"
#include "core/error.h"
#include "model/checkpoint_quantizer.h"

namespace dsserve {

void add_quantize_command(CLI::App& app) {
  struct Options {
    std::string input_dir, output_dir, method;
    int group_size = 128;
  };
  auto opt = std::make_shared<Options>();
  CLI::App* sub = app.add_subcommand("quantize", "Write an AWQ or INT8 copy of a BF16 or FP8 checkpoint");
  sub->add_option("--input-dir", opt->input_dir, "BF16 or block-FP8 DeepSeek-V3 checkpoint")->required();
  sub->add_option("--output-dir", opt->output_dir, "Where to write the quantized checkpoint")->required();
  sub->add_option("--method", opt->method,
                  "awq (4-bit, round-to-nearest with zero points), w8a8_int8 (channel INT8) or blockwise_int8 "
                  "(128 x 128 block INT8)")
      ->required();
  sub->add_option("--group-size", opt->group_size, "AWQ: input channels per scale and zero (64 or 128)")
      ->capture_default_str();
  sub->callback([opt] {
    QuantizeOptions o;
    o.input_dir = opt->input_dir;
    o.output_dir = opt->output_dir;
    o.group_size = opt->group_size;
    if (opt->method == "awq")
      o.method = QuantMethod::Awq;
    else if (opt->method == "w8a8_int8")
      o.method = QuantMethod::ChannelInt8;
    else if (opt->method == "blockwise_int8")
      o.method = QuantMethod::BlockInt8;
    else
      fail("quantize: --method {}: expected awq, w8a8_int8 or blockwise_int8", opt->method);
    quantize_checkpoint(o);
  });
}

}  // namespace dsserve
