// Where model weights come from: a safetensors checkpoint (checked against the tensor specs:
// missing tensors and wrong shapes or dtypes are fatal and listed together, unexpected ones are
// listed as a warning) or --load-format dummy (seeded random values of the right shape and dtype).
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "io/safetensors.h"
#include "model/tensor_specs.h"

namespace dsserve {

class WeightSource {
 public:
  virtual ~WeightSource() = default;
  // Throws naming every missing or mismatched tensor. Returns the names the model does not use.
  virtual std::vector<std::string> check(const std::vector<TensorSpec>& specs) = 0;
  virtual bool has(const std::string& name) const = 0;
  virtual Tensor get(const TensorSpec& spec) = 0;  // a host tensor of the spec's shape
  virtual std::string describe() const = 0;
  // Generated weights: how the tensor's values are drawn, so that a device can generate them in
  // place (Backend::random_weight) instead of uploading get()'s; nullopt for stored weights.
  virtual std::optional<RandomFill> random_fill(const TensorSpec&) const { return std::nullopt; }
};

class CheckpointWeights final : public WeightSource {
 public:
  CheckpointWeights(const std::string& model_dir, const ModelConfig& cfg);
  std::vector<std::string> check(const std::vector<TensorSpec>& specs) override;
  bool has(const std::string& name) const override { return ckpt_.has(name); }
  Tensor get(const TensorSpec& spec) override;
  std::string describe() const override { return "checkpoint " + ckpt_.path(); }
  const Checkpoint& checkpoint() const { return ckpt_; }

 private:
  Checkpoint ckpt_;
  const ModelConfig& cfg_;
};

class DummyWeights final : public WeightSource {
 public:
  DummyWeights(const ModelConfig& cfg, uint64_t seed) : cfg_(cfg), seed_(seed) {}
  std::vector<std::string> check(const std::vector<TensorSpec>&) override { return {}; }
  bool has(const std::string&) const override { return true; }
  Tensor get(const TensorSpec& spec) override;
  std::string describe() const override { return "dummy weights (seed " + std::to_string(seed_) + ")"; }
  // Same distribution per role as get() (which draws its values on the host from another generator).
  std::optional<RandomFill> random_fill(const TensorSpec& spec) const override;

 private:
  const ModelConfig& cfg_;
  uint64_t seed_;
};

// Another source seen under renamed tensors: names starting with `prefix` are read from the inner
// source as `inner_prefix` + the rest (an exported NextN checkpoint keeps the MTP layer of layer L
// as model.layers.0.*).
class RenamedWeights final : public WeightSource {
 public:
  RenamedWeights(WeightSource& inner, std::string prefix, std::string inner_prefix)
      : inner_(inner), prefix_(std::move(prefix)), inner_prefix_(std::move(inner_prefix)) {}
  std::vector<std::string> check(const std::vector<TensorSpec>& specs) override;
  bool has(const std::string& name) const override { return inner_.has(rename(name)); }
  Tensor get(const TensorSpec& spec) override;
  std::string describe() const override { return inner_.describe(); }
  std::optional<RandomFill> random_fill(const TensorSpec& spec) const override;

 private:
  std::string rename(const std::string& name) const;
  WeightSource& inner_;
  std::string prefix_, inner_prefix_;
};

}  // namespace dsserve
