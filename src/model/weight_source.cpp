// Checkpoint and dummy weight sources (see weight_source.h).
#include "model/weight_source.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <set>

#include "core/error.h"

namespace dsserve {

namespace {
bool is_float(DType t) {  // fp8 included
  return t == DType::F32 || t == DType::BF16 || t == DType::F16 || t == DType::F8_E4M3 || t == DType::F8_E5M2;
}

constexpr float kFp8Spread = 64.0f;   // fp8 values ~ N(0, 64^2); the scale brings them to N(0, 1/in)
constexpr float kInt8Spread = 32.0f;  // int8 values ~ N(0, 32^2), likewise
constexpr float kAwqSpread = 6.5f;    // q - z of two uniform 4-bit values: standard deviation sqrt(42.5)

uint64_t name_hash(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}
}  // namespace

CheckpointWeights::CheckpointWeights(const std::string& model_dir, const ModelConfig& cfg)
    : ckpt_(Checkpoint::open(model_dir)), cfg_(cfg) {}

namespace {

bool is_fp8(DType t) { return t == DType::F8_E4M3 || t == DType::F8_E5M2; }

// What config.json (or --quantization) would have to say for a projection stored in `t`.
std::string quantization_hint(DType t) {
  if (is_fp8(t)) return "config.json has no quantization_config";
  return "config.json has no quantization_config (a channel-INT8 checkpoint needs --quantization w8a8_int8)";
}

}  // namespace

std::vector<std::string> CheckpointWeights::check(const std::vector<TensorSpec>& specs) {
  std::vector<std::string> problems;
  std::set<std::string> known;
  const std::optional<Quantization>& quant = cfg_.quantization;
  // AWQ projections stored as a plain weight instead of qweight / qzeros / scales (prefixes).
  std::set<std::string> awq_as_float;
  auto shape_and_dtype = [&](const TensorSpec& s, const TensorInfo& info, bool dtype_ok, const std::string& want) {
    if (!(info.shape == s.shape))
      problems.push_back(fmt::format("tensor {} in {}: expected shape {}, found {}", s.name, info.file, s.shape.str(),
                                     info.shape.str()));
    if (!dtype_ok)
      problems.push_back(fmt::format("tensor {} in {}: expected dtype {}, found {}", s.name, info.file, want,
                                     dtype_name(info.dtype)));
  };
  for (const TensorSpec& s : specs) {
    known.insert(s.name);
    const std::string prefix = linear_prefix(s.name.substr(0, s.name.rfind('.') + 1) + "weight");
    if (s.role == TensorRole::Scale || s.role == TensorRole::ChannelScale) {
      // Required exactly when its weight is stored quantized (some projections may stay BF16).
      const std::string w = prefix + "weight";
      if (!ckpt_.has(w) || (is_float(ckpt_.info(w).dtype) && !is_fp8(ckpt_.info(w).dtype))) continue;
    }
    if (s.role == TensorRole::AwqWeight && !ckpt_.has(s.name) && ckpt_.has(prefix + "weight")) {
      // Left unquantized by the quantizer: a plain [out, in] weight of a floating type.
      awq_as_float.insert(prefix);
      known.insert(prefix + "weight");
      const TensorInfo& info = ckpt_.info(prefix + "weight");
      const int64_t in = s.shape[0];
      if (!(info.shape.ndim == 2 && info.shape[1] == in) || !is_float(info.dtype) || is_fp8(info.dtype))
        problems.push_back(fmt::format("tensor {}weight in {}: a projection of an AWQ checkpoint stored unquantized "
                                       "must be a BF16 [out, {}] weight, found {} {}", prefix, info.file, in,
                                       dtype_name(info.dtype), info.shape.str()));
      continue;
    }
    if ((s.role == TensorRole::AwqZeros || s.role == TensorRole::AwqScales) && awq_as_float.count(prefix)) continue;
    if (!ckpt_.has(s.name)) {
      if (s.shared) continue;
      if (s.role == TensorRole::AwqWeight)
        problems.push_back(fmt::format("missing tensor {} (expected I32 {}; or a BF16 {}weight)", s.name,
                                       s.shape.str(), prefix));
      else
        problems.push_back(fmt::format("missing tensor {} (expected shape {})", s.name, s.shape.str()));
      continue;
    }
    const TensorInfo& info = ckpt_.info(s.name);
    const DType want = spec_storage_dtype(cfg_, s);
    switch (s.role) {
      case TensorRole::Linear: {
        // A projection may always be stored in a floating type; quantized only as the config says.
        const bool ok = (is_float(info.dtype) && !is_fp8(info.dtype)) || info.dtype == want;
        if (!ok && !quant && (is_fp8(info.dtype) || info.dtype == DType::I8)) {
          problems.push_back(fmt::format("tensor {} in {} is {} but {}", s.name, info.file, dtype_name(info.dtype),
                                         quantization_hint(info.dtype)));
          break;
        }
        shape_and_dtype(s, info, ok, quant ? fmt::format("{} (quantization {}) or BF16", dtype_name(want),
                                                         quant_method_name(quant->method))
                                           : std::string("BF16"));
        break;
      }
      case TensorRole::AwqWeight:
      case TensorRole::AwqZeros:
      case TensorRole::AwqScales:
      case TensorRole::Scale:
      case TensorRole::ChannelScale:
        shape_and_dtype(s, info, info.dtype == want, std::string(dtype_name(want)));
        break;
      default: {
        const bool ok = is_float(info.dtype) && !is_fp8(info.dtype);
        if (!ok && is_fp8(info.dtype) && !quant) {
          problems.push_back(fmt::format("tensor {} in {} is {} but {}", s.name, info.file, dtype_name(info.dtype),
                                         quantization_hint(info.dtype)));
          break;
        }
        shape_and_dtype(s, info, ok, std::string(dtype_name(want)));
      }
    }
    if (s.role == TensorRole::AwqWeight) {  // sizes the rounded-up spec shapes cannot express
      const int64_t g = quant->group_size, in = s.shape[0];
      if (in % g != 0)
        problems.push_back(fmt::format("tensor {} in {}: quantization_config.group_size {} does not divide the input "
                                       "width {}", s.name, info.file, g, in));
    }
    if (s.role == TensorRole::AwqScales && s.shape[1] % 8 != 0)
      problems.push_back(fmt::format("tensor {} in {}: {} output columns are not a multiple of 8, as AWQ's packing "
                                     "needs", s.name, info.file, s.shape[1]));
  }
  if (!problems.empty()) {
    std::string msg = fmt::format("checkpoint {} does not match config.json ({} problems):", ckpt_.path(),
                                  problems.size());
    for (size_t i = 0; i < problems.size() && i < 20; ++i) msg += "\n  " + problems[i];
    if (problems.size() > 20) msg += fmt::format("\n  ... and {} more", problems.size() - 20);
    throw Error(msg);
  }
  std::vector<std::string> unexpected;
  for (const std::string& n : ckpt_.names())
    if (!known.count(n)) unexpected.push_back(n);
  return unexpected;
}

Tensor CheckpointWeights::get(const TensorSpec& spec) { return ckpt_.view(spec.name); }

std::string RenamedWeights::rename(const std::string& name) const {
  return name.starts_with(prefix_) ? inner_prefix_ + name.substr(prefix_.size()) : name;
}

std::vector<std::string> RenamedWeights::check(const std::vector<TensorSpec>& specs) {
  std::vector<TensorSpec> renamed = specs;
  for (auto& s : renamed) s.name = rename(s.name);
  return inner_.check(renamed);
}

Tensor RenamedWeights::get(const TensorSpec& spec) {
  TensorSpec s = spec;
  s.name = rename(spec.name);
  return inner_.get(s);
}

std::optional<RandomFill> RenamedWeights::random_fill(const TensorSpec& spec) const {
  TensorSpec s = spec;
  s.name = rename(spec.name);
  return inner_.random_fill(s);
}

std::optional<RandomFill> DummyWeights::random_fill(const TensorSpec& spec) const {
  RandomFill f;
  f.seed = seed_ ^ name_hash(spec.name);
  const double fan_in = spec.fan_in > 0 ? double(spec.fan_in) : spec.shape.ndim == 2 ? double(spec.shape[1]) : 1.0;
  // Quantized values of a spread s times a scale of about 1 / (s sqrt(in)): weights ~ N(0, 1/in).
  auto scale_of_spread = [&](float spread) {
    f.normal = false;
    f.offset = float(0.9 / (spread * std::sqrt(fan_in)));
    f.scale = float(0.2 / (spread * std::sqrt(fan_in)));
  };
  const DType dt = spec_storage_dtype(cfg_, spec);
  switch (spec.role) {
    case TensorRole::Linear:
      f.scale = dt == DType::F8_E4M3 ? kFp8Spread : dt == DType::I8 ? kInt8Spread : float(1.0 / std::sqrt(fan_in));
      break;
    case TensorRole::Dense: f.scale = float(1.0 / std::sqrt(fan_in)); break;
    case TensorRole::Embedding: break;
    case TensorRole::Norm: f.offset = 1.0f, f.scale = 0.1f; break;
    case TensorRole::Bias: f.normal = false, f.scale = 0.05f; break;
    case TensorRole::Scale:
    case TensorRole::ChannelScale:
      scale_of_spread(cfg_.quantized_as(QuantMethod::Fp8) ? kFp8Spread : kInt8Spread);
      break;
    case TensorRole::AwqWeight:
    case TensorRole::AwqZeros: break;  // I32: random bits, eight uniform 4-bit values each
    case TensorRole::AwqScales: scale_of_spread(kAwqSpread); break;
  }
  return f;
}

Tensor DummyWeights::get(const TensorSpec& spec) {
  std::mt19937_64 rng(seed_ ^ name_hash(spec.name));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
  const DType dt = spec_storage_dtype(cfg_, spec);
  Tensor t = Tensor::zeros_host(dt, spec.shape);
  const int64_t n = spec.shape.numel();
  if (dt == DType::I32) {  // AWQ qweight / qzeros: random nibbles
    for (int64_t i = 0; i < n; ++i) t.ptr<uint32_t>()[i] = uint32_t(rng());
    return t;
  }
  const RandomFill f = *random_fill(spec);  // the same distribution, drawn on the host
  std::vector<float> v(size_t(std::min<int64_t>(n, 1 << 20)));
  for (int64_t done = 0; done < n; done += int64_t(v.size())) {
    int64_t m = std::min<int64_t>(int64_t(v.size()), n - done);
    for (int64_t i = 0; i < m; ++i) v[i] = f.offset + f.scale * (f.normal ? normal(rng) : uniform(rng));
    if (dt == DType::I8) {
      int8_t* q = t.ptr<int8_t>() + done;
      for (int64_t i = 0; i < m; ++i) q[i] = int8_t(std::clamp(std::nearbyint(v[i]), -127.0f, 127.0f));
      continue;
    }
    convert_from_f32(dt, v.data(), static_cast<char*>(t.data()) + done * int64_t(dtype_size(dt)), size_t(m));
  }
  return t;
}

}  // namespace dsserve
