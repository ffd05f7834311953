// `dsserve quantize` (see checkpoint_quantizer.h).
#include "model/checkpoint_quantizer.h"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "backend/weight_dequant.h"
#include "core/error.h"
#include "io/safetensors.h"
#include "model/tensor_specs.h"

namespace fs = std::filesystem;

namespace dsserve {

namespace {

float round_even(float v) { return std::nearbyint(v); }  // the default rounding mode: to nearest, ties to even

}  // namespace

WeightPart quantize_awq(const Tensor& w, int64_t group, const std::string& name) {
  DS_CHECK(w.dtype() == DType::F32 && w.ndim() == 2 && w.is_contiguous(), "quantize {}: expected a host F32 [out, in]",
           name);
  const int64_t out = w.size(0), in = w.size(1);
  DS_CHECK(group > 0 && in % group == 0, "quantize {}: --group-size {} does not divide the input width {}", name, group,
           in);
  DS_CHECK(out % 8 == 0, "quantize {}: {} output rows are not a multiple of 8, as AWQ's packing needs", name, out);
  const int64_t groups = in / group;
  WeightPart p;
  p.format = WeightFormat::Awq;
  p.group_size = group;
  p.name = name;
  p.weight = Tensor::zeros_host(DType::I32, {in, out / 8});
  p.zeros = Tensor::zeros_host(DType::I32, {groups, out / 8});
  p.scale = Tensor::zeros_host(DType::F16, {groups, out});
  const float* src = w.ptr<float>();
  uint32_t* qw = p.weight.ptr<uint32_t>();
  uint32_t* qz = p.zeros.ptr<uint32_t>();
  std::vector<float> scale(static_cast<size_t>(out)), zero(static_cast<size_t>(out));
  for (int64_t gi = 0; gi < groups; ++gi) {
    for (int64_t j = 0; j < out; ++j) {
      const float* row = src + j * in + gi * group;
      float mx = row[0], mn = row[0];
      for (int64_t k = 1; k < group; ++k) mx = std::max(mx, row[k]), mn = std::min(mn, row[k]);
      const uint16_t s16 = f32_to_f16(std::max(mx - mn, 1e-5f) / 15.0f);
      const float s = f16_to_f32(s16);
      DS_CHECK(std::isfinite(s) && s > 0, "quantize {}: group {} of column {} has no finite F16 scale (range {})", name,
               gi, j, mx - mn);
      scale[j] = s;
      zero[j] = std::clamp(round_even(-mn / s), 0.0f, 15.0f);
      p.scale.ptr<uint16_t>()[gi * out + j] = s16;
      qz[gi * (out / 8) + j / 8] |= uint32_t(zero[j]) << (4 * kAwqNibble[j % 8]);
    }
    for (int64_t k = gi * group; k < (gi + 1) * group; ++k)
      for (int64_t j = 0; j < out; ++j) {
        const float q = std::clamp(round_even(src[j * in + k] / scale[j]) + zero[j], 0.0f, 15.0f);
        qw[k * (out / 8) + j / 8] |= uint32_t(q) << (4 * kAwqNibble[j % 8]);
      }
  }
  return p;
}

WeightPart quantize_int8(const Tensor& w, bool channel, const std::string& name) {
  DS_CHECK(w.dtype() == DType::F32 && w.ndim() == 2 && w.is_contiguous(), "quantize {}: expected a host F32 [out, in]",
           name);
  const int64_t out = w.size(0), in = w.size(1);
  WeightPart p;
  p.format = channel ? WeightFormat::ChannelInt8 : WeightFormat::BlockInt8;
  p.name = name;
  p.weight = Tensor::zeros_host(DType::I8, {out, in});
  const int64_t br = (out + 127) / 128, bc = (in + 127) / 128;
  p.scale = Tensor::zeros_host(DType::F32, channel ? Shape{out, 1} : Shape{br, bc});
  const float* src = w.ptr<float>();
  float* sc = p.scale.ptr<float>();
  auto scale_of = [](float amax) { return std::max(amax / 127.0f, 1e-12f); };
  if (channel) {
    for (int64_t r = 0; r < out; ++r) {
      float amax = 0;
      for (int64_t c = 0; c < in; ++c) amax = std::max(amax, std::fabs(src[r * in + c]));
      sc[r] = scale_of(amax);
    }
  } else {
    for (int64_t r = 0; r < out; ++r)
      for (int64_t c = 0; c < in; ++c) {
        float& s = sc[(r / 128) * bc + c / 128];
        s = std::max(s, std::fabs(src[r * in + c]));
      }
    for (int64_t i = 0; i < br * bc; ++i) sc[i] = scale_of(sc[i]);
  }
  int8_t* q = p.weight.ptr<int8_t>();
  for (int64_t r = 0; r < out; ++r)
    for (int64_t c = 0; c < in; ++c) {
      const float s = channel ? sc[r] : sc[(r / 128) * bc + c / 128];
      q[r * in + c] = int8_t(std::clamp(round_even(src[r * in + c] / s), -127.0f, 127.0f));
    }
  return p;
}

void quantize_checkpoint(const QuantizeOptions& o) {
  DS_CHECK(o.method != QuantMethod::Fp8, "quantize: --method must be awq, w8a8_int8 or blockwise_int8");
  DS_CHECK(fs::absolute(o.input_dir) != fs::absolute(o.output_dir), "quantize: --output-dir must differ from --input-dir");
  const std::string config_path = (fs::path(o.input_dir) / "config.json").string();
  ModelConfig cfg = ModelConfig::load(o.input_dir);
  DS_CHECK(!cfg.quantization || cfg.quantization->method == QuantMethod::Fp8,
           "quantize: {} is already quantized ({}); the input must be a BF16 or block-FP8 checkpoint", config_path,
           quant_method_name(cfg.quantization->method));
  if (o.method == QuantMethod::Awq)
    DS_CHECK(o.group_size == 64 || o.group_size == 128, "quantize: --group-size must be 64 or 128, found {}",
             o.group_size);
  Checkpoint ckpt = Checkpoint::open(o.input_dir);

  // The projections to quantize (by weight name) and the FP8 scales they drop.
  ModelConfig plain = cfg;
  plain.quantization.reset();
  std::set<std::string> targets, to_bf16;  // to_bf16: FP8 projections left unquantized (AWQ's MTP layer)
  for (const TensorSpec& s : model_tensor_specs(plain, true)) {
    if (s.role != TensorRole::Linear || !ckpt.has(s.name)) continue;
    if (o.method == QuantMethod::Awq && s.mtp) {  // AutoAWQ leaves the MTP layer alone
      const DType dt = ckpt.info(s.name).dtype;
      if (dt == DType::F8_E4M3 || dt == DType::F8_E5M2) to_bf16.insert(s.name);
      continue;
    }
    targets.insert(s.name);
  }
  DS_CHECK(!targets.empty(), "quantize: {} holds none of the model's projections", o.input_dir);
  auto input_part = [&](const std::string& name) {
    WeightPart p;
    p.name = name;
    p.weight = ckpt.view(name);
    const std::string scale = linear_prefix(name) + "weight_scale_inv";
    if ((p.weight.dtype() == DType::F8_E4M3 || p.weight.dtype() == DType::F8_E5M2)) {
      DS_CHECK(ckpt.has(scale), "quantize: {} is {} but {} is missing", name, dtype_name(p.weight.dtype()), scale);
      p.format = WeightFormat::BlockFp8;
      p.scale = ckpt.view(scale);
    }
    return p;
  };

  // Output tensors go to the shard file of their input tensor; shards are written one at a time.
  std::map<std::string, std::vector<std::string>> by_file;  // input file name -> its tensor names
  for (const std::string& n : ckpt.names()) by_file[fs::path(ckpt.info(n).file).filename().string()].push_back(n);
  fs::create_directories(o.output_dir);
  nlohmann::ordered_json weight_map = nlohmann::ordered_json::object();
  size_t total_bytes = 0;
  int quantized = 0;
  for (const auto& [file, names] : by_file) {
    std::vector<std::pair<std::string, Tensor>> out;
    for (const std::string& n : names) {
      const std::string scaled = n.ends_with("weight_scale_inv") ? n.substr(0, n.size() - 10) : "";
      if (!scaled.empty() && (targets.count(scaled) || to_bf16.count(scaled))) continue;  // replaced
      if (to_bf16.count(n)) {  // dequantized and rounded to BF16, as the published conversion does
        const Tensor w = dequantize_to_f32(input_part(n));
        Tensor b = Tensor::zeros_host(DType::BF16, w.shape());
        convert_from_f32(DType::BF16, w.ptr<float>(), b.data(), size_t(w.numel()));
        out.push_back({n, b});
        continue;
      }
      if (!targets.count(n)) {
        out.push_back({n, ckpt.view(n)});
        continue;
      }
      const Tensor w = dequantize_to_f32(input_part(n));
      const std::string prefix = linear_prefix(n);
      if (o.method == QuantMethod::Awq) {
        WeightPart q = quantize_awq(w, o.group_size, n);
        out.push_back({prefix + "qweight", q.weight});
        out.push_back({prefix + "qzeros", q.zeros});
        out.push_back({prefix + "scales", q.scale});
      } else {
        const bool channel = o.method == QuantMethod::ChannelInt8;
        WeightPart q = quantize_int8(w, channel, n);
        out.push_back({n, q.weight});
        out.push_back({prefix + (channel ? "weight_scale" : "weight_scale_inv"), q.scale});
      }
      ++quantized;
    }
    for (const auto& [n, t] : out) {
      weight_map[n] = file;
      total_bytes += t.nbytes();
    }
    write_safetensors((fs::path(o.output_dir) / file).string(), out, {{"format", "pt"}});
    spdlog::info("quantize: wrote {} ({} tensors)", file, out.size());
  }
  const bool indexed = fs::exists(fs::path(o.input_dir) / "model.safetensors.index.json");
  if (indexed) {
    nlohmann::ordered_json index = {{"metadata", {{"total_size", total_bytes}}}, {"weight_map", weight_map}};
    std::ofstream(fs::path(o.output_dir) / "model.safetensors.index.json") << index.dump(2) << "\n";
  }
  for (const auto& entry : fs::directory_iterator(o.input_dir)) {
    const std::string n = entry.path().filename().string();
    if (!entry.is_regular_file() || n.ends_with(".safetensors") || n == "model.safetensors.index.json" ||
        n == "config.json")
      continue;
    fs::copy_file(entry.path(), fs::path(o.output_dir) / n, fs::copy_options::overwrite_existing);
  }
  nlohmann::ordered_json config;
  {
    std::ifstream f(config_path);
    config = nlohmann::ordered_json::parse(f);
  }
  switch (o.method) {
    case QuantMethod::Awq:
      config["quantization_config"] = {{"quant_method", "awq"}, {"bits", 4},       {"group_size", o.group_size},
                                       {"zero_point", true},    {"version", "gemm"}, {"modules_to_not_convert", nullptr}};
      break;
    case QuantMethod::BlockInt8:
      config["quantization_config"] = {{"activation_scheme", "dynamic"},
                                       {"quant_method", "blockwise_int8"},
                                       {"weight_block_size", {128, 128}}};
      break;
    default:  // the published channel-INT8 checkpoints state nothing; saying it spares --quantization w8a8_int8
      config["quantization_config"] = {{"quant_method", "w8a8_int8"}};
  }
  std::ofstream(fs::path(o.output_dir) / "config.json") << config.dump(2) << "\n";
  spdlog::info("quantize: {} projections of {} as {} -> {}", quantized, o.input_dir, quant_method_name(o.method),
               o.output_dir);
}

}  // namespace dsserve
