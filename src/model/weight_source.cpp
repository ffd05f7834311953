// Checkpoint and dummy weight sources (see weight_source.h).
#include "model/weight_source.h"

#include <cmath>
#include <random>
#include <set>

#include "core/error.h"

namespace dsserve {

namespace {
bool is_float(DType t) {
  return t == DType::F32 || t == DType::BF16 || t == DType::F16 || t == DType::F8_E4M3 || t == DType::F8_E5M2;
}

constexpr float kFp8Spread = 64.0f;  // fp8 values ~ N(0, 64^2); the scale brings them to N(0, 1/in)

uint64_t name_hash(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}
}  // namespace

CheckpointWeights::CheckpointWeights(const std::string& model_dir, const ModelConfig& cfg)
    : ckpt_(Checkpoint::open(model_dir)), cfg_(cfg) {}

std::vector<std::string> CheckpointWeights::check(const std::vector<TensorSpec>& specs) {
  std::vector<std::string> problems;
  std::set<std::string> known;
  auto is_fp8 = [](DType t) { return t == DType::F8_E4M3 || t == DType::F8_E5M2; };
  for (const TensorSpec& s : specs) {
    known.insert(s.name);
    if (s.role == TensorRole::Scale) {
      // Required exactly when its weight is stored in fp8 (some projections may stay BF16).
      std::string w = s.name.substr(0, s.name.size() - std::string("_scale_inv").size());
      if (!ckpt_.has(w) || !is_fp8(ckpt_.info(w).dtype)) continue;
    }
    if (!ckpt_.has(s.name)) {
      if (!s.shared) problems.push_back(fmt::format("missing tensor {} (expected shape {})", s.name, s.shape.str()));
      continue;
    }
    const TensorInfo& info = ckpt_.info(s.name);
    if (!(info.shape == s.shape))
      problems.push_back(fmt::format("tensor {} in {}: expected shape {}, found {}", s.name, info.file, s.shape.str(),
                                     info.shape.str()));
    DType want = spec_storage_dtype(cfg_, s);
    bool ok;
    switch (s.role) {
      case TensorRole::Linear: ok = is_float(info.dtype) && (cfg_.quantization || !is_fp8(info.dtype)); break;
      case TensorRole::Scale: ok = info.dtype == DType::F32; break;
      default: ok = is_float(info.dtype) && !is_fp8(info.dtype);
    }
    if (!ok && is_fp8(info.dtype) && !cfg_.quantization)
      problems.push_back(fmt::format("tensor {} in {} is {} but config.json has no quantization_config", s.name,
                                     info.file, dtype_name(info.dtype)));
    else if (!ok)
      problems.push_back(fmt::format("tensor {} in {}: expected dtype {}, found {}", s.name, info.file,
                                     dtype_name(want), dtype_name(info.dtype)));
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
  const double fan_in = spec.shape.ndim == 2 ? double(spec.shape[1]) : 1.0;
  switch (spec.role) {
    case TensorRole::Linear:
      f.scale = spec_storage_dtype(cfg_, spec) == DType::F8_E4M3 ? kFp8Spread : float(1.0 / std::sqrt(fan_in));
      break;
    case TensorRole::Dense: f.scale = float(1.0 / std::sqrt(fan_in)); break;
    case TensorRole::Embedding: break;
    case TensorRole::Norm: f.offset = 1.0f, f.scale = 0.1f; break;
    case TensorRole::Bias: f.normal = false, f.scale = 0.05f; break;
    case TensorRole::Scale: {
      const double in = double(spec.shape[1]) * 128.0;
      f.normal = false;
      f.offset = float(0.9 / (kFp8Spread * std::sqrt(in)));
      f.scale = float(0.2 / (kFp8Spread * std::sqrt(in)));
      break;
    }
  }
  return f;
}

Tensor DummyWeights::get(const TensorSpec& spec) {
  std::mt19937_64 rng(seed_ ^ name_hash(spec.name));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
  DType dt = spec_storage_dtype(cfg_, spec);
  Tensor t = Tensor::zeros_host(dt, spec.shape);
  int64_t n = spec.shape.numel();
  const double fan_in = spec.shape.ndim == 2 ? double(spec.shape[1]) : 1.0;
  std::vector<float> v(size_t(std::min<int64_t>(n, 1 << 20)));
  for (int64_t done = 0; done < n; done += int64_t(v.size())) {
    int64_t m = std::min<int64_t>(int64_t(v.size()), n - done);
    for (int64_t i = 0; i < m; ++i) {
      switch (spec.role) {
        case TensorRole::Linear:
          v[i] = dt == DType::F8_E4M3 ? normal(rng) * kFp8Spread : float(normal(rng) / std::sqrt(fan_in));
          break;
        case TensorRole::Dense: v[i] = float(normal(rng) / std::sqrt(fan_in)); break;
        case TensorRole::Embedding: v[i] = normal(rng); break;
        case TensorRole::Norm: v[i] = 1.0f + 0.1f * normal(rng); break;
        case TensorRole::Bias: v[i] = 0.05f * uniform(rng); break;
        case TensorRole::Scale: {
          // The scale's input width is in the weight's shape: blocks of 128 columns.
          double in = double(spec.shape[1]) * 128.0;
          v[i] = float((0.9 + 0.2 * uniform(rng)) / (kFp8Spread * std::sqrt(in)));
          break;
        }
      }
    }
    convert_from_f32(dt, v.data(), static_cast<char*>(t.data()) + done * int64_t(dtype_size(dt)), size_t(m));
  }
  return t;
}

}  // namespace dsserve
