// YaRN rotary tables (see rope.h).
#include "model/rope.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace dsserve {

namespace {
double yarn_mscale(double factor, double m) { return factor <= 1 ? 1.0 : 0.1 * m * std::log(factor) + 1.0; }
}  // namespace

Tensor build_rope_table(const ModelConfig& cfg, int64_t positions) {
  const int dim = cfg.qk_rope_head_dim;
  const double base = cfg.rope_theta;
  std::vector<double> inv(dim / 2);
  for (int i = 0; i < dim / 2; ++i) inv[i] = 1.0 / std::pow(base, double(2 * i) / dim);
  double attention_factor = 1.0;
  if (cfg.rope_scaling) {
    const RopeScaling& rs = *cfg.rope_scaling;
    const double orig = rs.original_max_position_embeddings;
    auto correction_dim = [&](double rotations) {
      return dim * std::log(orig / (rotations * 2 * M_PI)) / (2 * std::log(base));
    };
    double low = std::max(std::floor(correction_dim(rs.beta_fast)), 0.0);
    double high = std::min(std::ceil(correction_dim(rs.beta_slow)), double(dim - 1));
    if (low == high) high += 0.001;
    for (int i = 0; i < dim / 2; ++i) {
      double ramp = std::clamp((i - low) / (high - low), 0.0, 1.0);
      double extrapolation = 1.0 - ramp;
      inv[i] = inv[i] / rs.factor * (1.0 - extrapolation) + inv[i] * extrapolation;
    }
    attention_factor = yarn_mscale(rs.factor, rs.mscale) / yarn_mscale(rs.factor, rs.mscale_all_dim);
  }
  Tensor t = Tensor::zeros_host(DType::F32, {positions, dim});
  float* p = t.ptr<float>();
  for (int64_t pos = 0; pos < positions; ++pos)
    for (int i = 0; i < dim / 2; ++i) {
      double a = double(pos) * inv[i];
      p[pos * dim + 2 * i] = float(std::cos(a) * attention_factor);
      p[pos * dim + 2 * i + 1] = float(std::sin(a) * attention_factor);
    }
  return t;
}

}  // namespace dsserve
