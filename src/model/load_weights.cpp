// Weight loading and the load-time transforms (see weights.h).
#include <spdlog/spdlog.h>

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <map>

#include "backend/weight_dequant.h"
#include "core/error.h"
#include "model/tensor_specs.h"
#include "model/weights.h"

namespace dsserve {

namespace {

// Shows loading progress over the tensors' bytes on stderr.
class ProgressBar {
 public:
  ProgressBar(std::string label, size_t total) : label_(std::move(label)), total_(std::max<size_t>(total, 1)) {}
  void advance(size_t bytes) {
    done_ += bytes;
    int pct = int(std::min<size_t>(done_ * 100 / total_, 100));
    // On a terminal the bar redraws in place; elsewhere (logs, pipes) it prints every quarter.
    if (pct == shown_ || (!tty_ && pct % 25 != 0)) return;
    shown_ = pct;
    int bar = pct * 30 / 100;
    std::fprintf(stderr, "%s%s [%.*s%*s] %3d%% (%.1f MiB)", tty_ ? "\r" : "", label_.c_str(), bar,
                 "==============================", 30 - bar, "", pct, double(done_) / (1 << 20));
    if (pct == 100 || !tty_) std::fputc('\n', stderr);
    std::fflush(stderr);
  }

 private:
  std::string label_;
  bool tty_ = isatty(2);
  size_t total_, done_ = 0;
  int shown_ = -1;
};

// A contiguous host copy of a 2-D host tensor of any dtype (rows may be strided).
Tensor packed_copy(const Tensor& t) {
  Tensor out = Tensor::zeros_host(t.dtype(), t.shape());
  const size_t es = dtype_size(t.dtype()), row = size_t(t.size(1)) * es;
  for (int64_t r = 0; r < t.size(0); ++r) {
    const char* src = static_cast<const char*>(t.data()) + size_t(r * t.stride(0)) * es;
    if (t.stride(1) == 1) {
      std::memcpy(static_cast<char*>(out.data()) + size_t(r) * row, src, row);
    } else {
      for (int64_t c = 0; c < t.size(1); ++c)
        std::memcpy(static_cast<char*>(out.data()) + size_t(r) * row + size_t(c) * es,
                    src + size_t(c * t.stride(1)) * es, es);
    }
  }
  return out;
}

// This rank's rows (dim 0) or columns (dim 1) [lo, lo + n) of a host weight part, in its stored
// format where the slice keeps whole blocks (block FP8 / INT8: 128-aligned; AWQ: whole packed
// columns of 8, whole groups of input channels), else dequantized to float32 (see ShardSpec).
WeightPart slice_part(const WeightPart& full, int dim, int64_t lo, int64_t n) {
  WeightPart p = full;
  switch (full.stored_format()) {
    case WeightFormat::Float: return {host_to_f32(full.weight.slice(dim, lo, lo + n)), {}, {}, WeightFormat::Float, 0,
                                      full.name};
    case WeightFormat::BlockFp8:
    case WeightFormat::BlockInt8:
      if (lo % 128 != 0) break;
      {
        const int64_t blocks = full.scale.size(dim), b0 = lo / 128, b1 = std::min(blocks, (lo + n + 127) / 128);
        p.weight = packed_copy(full.weight.slice(dim, lo, lo + n));
        p.scale = host_to_f32(full.scale.slice(dim, b0, b1));
      }
      return p;
    case WeightFormat::ChannelInt8:
      p.weight = packed_copy(full.weight.slice(dim, lo, lo + n));
      p.scale = host_to_f32(dim == 0 ? full.scale.slice(0, lo, lo + n) : full.scale);
      return p;
    case WeightFormat::Awq: {
      const int64_t g = full.group_size;
      if (dim == 0 && lo % 8 == 0 && n % 8 == 0) {  // output columns: packed in eights
        p.weight = packed_copy(full.weight.slice(1, lo / 8, (lo + n) / 8));
        p.zeros = packed_copy(full.zeros.slice(1, lo / 8, (lo + n) / 8));
        p.scale = packed_copy(full.scale.slice(1, lo, lo + n));
        return p;
      }
      if (dim == 1 && lo % g == 0 && n % g == 0) {  // input channels: whole groups
        p.weight = packed_copy(full.weight.slice(0, lo, lo + n));
        p.zeros = packed_copy(full.zeros.slice(0, lo / g, (lo + n) / g));
        p.scale = packed_copy(full.scale.slice(0, lo / g, (lo + n) / g));
        return p;
      }
      break;
    }
  }
  return {host_to_f32(dequantize_to_f32(full).slice(dim, lo, lo + n)), {}, {}, WeightFormat::Float, 0, full.name};
}

class Loader {
 public:
  Loader(const ModelConfig& cfg, WeightSource& src, WeightSource& mtp_src, Backend& be,
         const std::vector<TensorSpec>& specs, ShardSpec shard)
      : cfg_(cfg), src_(src), mtp_src_(mtp_src), be_(be), shard_(shard) {
    for (const auto& s : specs) by_name_[s.name] = &s;
    size_t total = 0;
    for (const auto& s : specs) {
      size_t bytes = size_t(s.shape.numel()) * dtype_size(spec_storage_dtype(cfg, s));
      if (s.role == TensorRole::AwqWeight) {
        // AWQ projections the quantizer left alone are read as a BF16 weight of the same [out, in].
        const std::string prefix = linear_prefix(s.name.substr(0, s.name.size() - 7) + "weight");
        const TensorSpec& scales = *by_name_.at(prefix + "scales");
        TensorSpec w{prefix + "weight", {scales.shape[1], s.shape[0]}, TensorRole::Linear, s.mtp, false, s.fan_in};
        plain_awq_[w.name] = w;
        if (!source(s).has(s.name) && source(s).has(w.name)) bytes = size_t(w.shape.numel()) * 2;
      }
      if ((s.role == TensorRole::AwqZeros || s.role == TensorRole::AwqScales) &&
          !source(s).has(linear_prefix(s.name.substr(0, s.name.rfind('.') + 1) + "weight") + "qweight"))
        bytes = 0;
      total += bytes;
    }
    progress_ = std::make_unique<ProgressBar>("Loading weights", total);
  }

  const TensorSpec& spec(const std::string& name) const {
    if (auto it = by_name_.find(name); it != by_name_.end()) return *it->second;
    auto alt = plain_awq_.find(name);
    DS_CHECK(alt != plain_awq_.end(), "internal: tensor {} is not in the model's tensor list", name);
    return alt->second;
  }
  WeightSource& source(const TensorSpec& s) const { return s.mtp ? mtp_src_ : src_; }

  // A tensor from its source: generated in place on the device when the source is random
  // (--load-format dummy), the backend can, and the loader does not transform it on the host (matrices
  // and the embedding go to the device; norms, biases, scales and kv_b_proj are made on the host).
  Tensor raw(const std::string& name, bool host = false) {
    const TensorSpec& spec = this->spec(name);
    WeightSource& src = source(spec);
    Tensor t;
    const bool matrix = spec.role == TensorRole::Linear || spec.role == TensorRole::Dense ||
                        spec.role == TensorRole::Embedding || spec.role == TensorRole::AwqWeight;
    if (!host && matrix)
      if (auto fill = src.random_fill(spec)) t = be_.random_weight(spec_storage_dtype(cfg_, spec), spec.shape, *fill);
    if (!t.defined()) t = src.get(spec);
    progress_->advance(t.nbytes());
    return t;
  }
  // An AWQ projection stored as qweight / qzeros / scales (rather than left in BF16).
  bool awq_stored(const std::string& weight_name) const {
    const std::string q = linear_prefix(weight_name) + "qweight";
    auto it = by_name_.find(q);
    return it != by_name_.end() && source(*it->second).has(q);
  }
  // The part of projection `weight_name` (".weight" named) in the form the checkpoint stores it.
  WeightPart part(const std::string& weight_name, bool host = false) {
    const std::string prefix = linear_prefix(weight_name);
    WeightPart p;
    p.name = weight_name;
    if (awq_stored(weight_name)) {
      p.format = WeightFormat::Awq;
      p.group_size = cfg_.quantization->group_size;
      p.name = prefix + "qweight";
      p.weight = raw(prefix + "qweight", host);
      p.zeros = raw(prefix + "qzeros", true);
      p.scale = raw(prefix + "scales", true);
      return p;
    }
    p.weight = raw(weight_name, host);
    if (p.weight.dtype() == DType::F8_E4M3 || p.weight.dtype() == DType::F8_E5M2) {
      p.format = WeightFormat::BlockFp8;
      p.scale = raw(prefix + "weight_scale_inv");
    } else if (p.weight.dtype() == DType::I8) {
      const bool channel = cfg_.quantized_as(QuantMethod::ChannelInt8);
      p.format = channel ? WeightFormat::ChannelInt8 : WeightFormat::BlockInt8;
      p.scale = raw(prefix + (channel ? "weight_scale" : "weight_scale_inv"));
    }
    return p;
  }
  // [out, in] of projection `weight_name`.
  Shape logical_shape(const std::string& weight_name) const {
    const std::string prefix = linear_prefix(weight_name);
    if (auto q = by_name_.find(prefix + "qweight"); q != by_name_.end())
      return {by_name_.at(prefix + "scales")->shape[1], q->second->shape[0]};
    return spec(weight_name).shape;
  }
  // Generated weights: the slice's own tensors drawn directly in their stored form (other values
  // than the whole tensor's), each component's spec cut to the slice.
  WeightPart generated_slice(const std::string& weight_name, int dim, int64_t n, bool host) {
    const std::string prefix = linear_prefix(weight_name);
    const Shape full = logical_shape(weight_name);
    auto cut = [&](const std::string& name, Shape shape) {
      TensorSpec s = spec(name);
      s.shape = shape;
      return s;
    };
    auto draw = [&](const TensorSpec& s, bool on_device) {
      WeightSource& src = source(s);
      Tensor t;
      if (on_device && !host)
        if (auto fill = src.random_fill(s)) t = be_.random_weight(spec_storage_dtype(cfg_, s), s.shape, *fill);
      if (!t.defined()) t = src.get(s);
      progress_->advance(t.nbytes());
      return t;
    };
    WeightPart p;
    p.name = weight_name;
    if (awq_stored(weight_name)) {
      const int64_t g = cfg_.quantization->group_size;
      const int64_t out = dim == 0 ? n : full[0], in = dim == 1 ? n : full[1];
      if (out % 8 != 0 || in % g != 0) return {};  // not expressible: the caller slices the whole
      p.format = WeightFormat::Awq;
      p.group_size = g;
      p.weight = draw(cut(prefix + "qweight", {in, out / 8}), true);
      p.zeros = draw(cut(prefix + "qzeros", {in / g, out / 8}), false);
      p.scale = draw(cut(prefix + "scales", {in / g, out}), false);
      return p;
    }
    Shape ws = full;
    ws[dim] = n;
    p.weight = draw(cut(weight_name, ws), true);
    const DType dt = p.weight.dtype();
    if (dt == DType::F8_E4M3 || dt == DType::I8) {
      const bool channel = cfg_.quantized_as(QuantMethod::ChannelInt8);
      p.format = dt == DType::F8_E4M3 ? WeightFormat::BlockFp8 : channel ? WeightFormat::ChannelInt8
                                                                          : WeightFormat::BlockInt8;
      const std::string sname = prefix + (channel ? "weight_scale" : "weight_scale_inv");
      Shape ss = spec(sname).shape;
      if (channel)
        ss[0] = ws[0];
      else
        ss[dim] = (n + 127) / 128;
      p.scale = draw(cut(sname, ss), false);
    }
    return p;
  }
  // This rank's slice of a weight along dim (0: rows, 1: columns); see ShardSpec. attention: split
  // over the rank's attention group (data-parallel attention) instead of over all ranks.
  WeightPart shard(const std::string& weight_name, int dim, bool host = false, bool attention = false) {
    const int world = attention ? shard_.attention_world() : shard_.world;
    const int rank = attention ? shard_.attention_rank() : shard_.rank;
    if (world == 1) return part(weight_name, host);
    const int64_t len = logical_shape(weight_name)[dim];
    DS_CHECK(len % world == 0, "--tp-size {}: {} has {} {} , not divisible", world, weight_name, len,
             dim == 0 ? "rows" : "columns");
    const int64_t n = len / world, lo = int64_t(rank) * n;
    const std::string first = awq_stored(weight_name) ? linear_prefix(weight_name) + "qweight" : weight_name;
    if (source(spec(first)).random_fill(spec(first))) {
      WeightPart p = generated_slice(weight_name, dim, n, host);
      if (p.weight.defined()) return p;
    }
    return slice_part(part(weight_name, /*host=*/true), dim, lo, n);
  }
  Tensor vec(const std::string& name) { return be_.make_vector(raw(name)); }
  LinearWeight linear(const std::vector<std::string>& fused, LinearUse use = LinearUse::Projection) {
    std::vector<WeightPart> parts;
    for (const auto& n : fused) parts.push_back(part(n));
    return be_.make_linear(parts, use);
  }
  MlpWeights mlp(const std::string& p) {
    std::vector<WeightPart> gate_up{shard(p + "gate_proj.weight", 0), shard(p + "up_proj.weight", 0)};
    WeightPart down = shard(p + "down_proj.weight", 1);
    return {be_.make_linear(gate_up, LinearUse::Projection),
            be_.make_linear(std::span<const WeightPart>(&down, 1), LinearUse::Projection)};
  }

  MlaWeights attention(const std::string& a) {
    MlaWeights w;
    const int64_t n = cfg_.num_attention_heads / shard_.attention_world(), dn = cfg_.qk_nope_head_dim, dv = cfg_.v_head_dim,
                  kr = cfg_.kv_lora_rank;
    if (cfg_.q_lora_rank) {
      w.qkv_a = linear({a + "q_a_proj.weight", a + "kv_a_proj_with_mqa.weight"});
      w.q_a_norm = vec(a + "q_a_layernorm.weight");
      WeightPart q_b = shard(a + "q_b_proj.weight", 0, false, /*attention=*/true);
      w.q_b = be_.make_linear(std::span<const WeightPart>(&q_b, 1), LinearUse::Projection);
    } else {
      DS_CHECK(shard_.attention_world() == 1, "--tp-size {}: models without q_lora_rank are not split yet",
               shard_.attention_world());
      w.qkv_a = linear({a + "q_proj.weight", a + "kv_a_proj_with_mqa.weight"});
    }
    w.kv_a_norm = vec(a + "kv_a_layernorm.weight");
    WeightPart kv_b = shard(a + "kv_b_proj.weight", 0, /*host=*/true, /*attention=*/true);  // split on the host below
    w.kv_b = be_.make_linear(std::span<const WeightPart>(&kv_b, 1), LinearUse::Projection);
    // Split kv_b_proj [n * (dn + dv), kr] into W_UK^T [n, kr, dn] and W_UV [n, dv, kr].
    Tensor kvb = dequantize_to_f32(kv_b);
    Tensor uk_t = Tensor::zeros_host(DType::F32, {n, kr, dn}), uv = Tensor::zeros_host(DType::F32, {n, dv, kr});
    const float* src = kvb.ptr<float>();
    for (int64_t h = 0; h < n; ++h) {
      const float* head = src + h * (dn + dv) * kr;
      for (int64_t d = 0; d < dn; ++d)
        for (int64_t c = 0; c < kr; ++c) uk_t.ptr<float>()[(h * kr + c) * dn + d] = head[d * kr + c];
      std::memcpy(uv.ptr<float>() + h * dv * kr, head + dn * kr, size_t(dv * kr) * 4);
    }
    const bool fp8 = kv_b.weight.dtype() == DType::F8_E4M3;  // per-head blocks stay 128x128 blocks
    w.w_uk_t = be_.make_head_weight(uk_t, fp8);
    w.w_uv = be_.make_head_weight(uv, fp8);
    WeightPart o = shard(a + "o_proj.weight", 1, false, /*attention=*/true);
    w.o_proj = be_.make_linear(std::span<const WeightPart>(&o, 1), LinearUse::Projection);
    return w;
  }

  DecoderLayerWeights layer(int i) {
    const std::string p = layer_prefix(i), m = p + "mlp.";
    DecoderLayerWeights w;
    w.input_norm = vec(p + "input_layernorm.weight");
    w.post_attention_norm = vec(p + "post_attention_layernorm.weight");
    w.attn = attention(p + "self_attn.");
    if (!cfg_.is_moe_layer(i)) {
      w.mlp = mlp(m);
      return w;
    }
    MoeWeights moe;
    moe.router = linear({m + "gate.weight"}, LinearUse::Router);
    if (cfg_.topk_method == "noaux_tc") moe.score_bias = vec(m + "gate.e_score_correction_bias");
    std::vector<ExpertParts> experts;
    int first = 0, count = cfg_.n_routed_experts;
    if (shard_.expert_parallel && shard_.world > 1) {  // whole experts, a contiguous range per rank
      DS_CHECK(cfg_.n_routed_experts % shard_.world == 0, "--ep-size {}: {} routed experts do not divide",
               shard_.world, cfg_.n_routed_experts);
      count = cfg_.n_routed_experts / shard_.world;
      first = shard_.rank * count;
    }
    for (int e = first; e < first + count; ++e) {
      std::string q = m + "experts." + std::to_string(e) + ".";
      if (shard_.expert_parallel)
        experts.push_back({part(q + "gate_proj.weight"), part(q + "up_proj.weight"), part(q + "down_proj.weight")});
      else
        experts.push_back({shard(q + "gate_proj.weight", 0), shard(q + "up_proj.weight", 0),
                           shard(q + "down_proj.weight", 1)});
    }
    moe.experts = be_.make_experts(experts);
    moe.experts.first_expert = first;
    moe.experts.total_experts = cfg_.n_routed_experts;
    if (cfg_.n_shared_experts > 0) moe.shared = mlp(m + "shared_experts.");
    w.moe = std::move(moe);
    return w;
  }

  MtpWeights mtp(int i) {
    const std::string p = layer_prefix(i);
    MtpWeights w;
    w.enorm = vec(p + "enorm.weight");
    w.hnorm = vec(p + "hnorm.weight");
    w.eh_proj = linear({p + "eh_proj.weight"}, LinearUse::Projection);
    w.layer = layer(i);
    w.head_norm = vec(p + "shared_head.norm.weight");
    return w;
  }

 private:
  const ModelConfig& cfg_;
  WeightSource& src_;
  WeightSource& mtp_src_;
  Backend& be_;
  ShardSpec shard_;
  std::map<std::string, const TensorSpec*> by_name_;
  std::map<std::string, TensorSpec> plain_awq_;  // the BF16 form of each AWQ projection, by weight name
  std::unique_ptr<ProgressBar> progress_;
};

}  // namespace

ModelWeights load_model_weights(const ModelConfig& cfg, WeightSource& src, Backend& backend, const LoadOptions& opt) {
  WeightSource& mtp_src = opt.mtp_weights ? *opt.mtp_weights : src;
  bool mtp = opt.load_mtp && cfg.num_nextn_predict_layers > 0 &&
             mtp_src.has(layer_prefix(cfg.num_hidden_layers) + "eh_proj.weight");
  DS_CHECK(!opt.mtp_weights || mtp, "draft model {}: no MTP layer found (expected model.layers.0.eh_proj.weight)",
           mtp_src.describe());
  std::vector<TensorSpec> specs = model_tensor_specs(cfg, mtp);
  auto warn_unused = [&cfg](const WeightSource& s, std::vector<std::string> unexpected) {
    // The MTP layer unloaded (no speculative decoding) is as it should be: say so at info level.
    const std::string mtp_prefix = layer_prefix(cfg.num_hidden_layers);
    const size_t mtp_tensors = size_t(std::erase_if(unexpected, [&](const std::string& n) {
      return cfg.num_nextn_predict_layers > 0 && n.rfind(mtp_prefix, 0) == 0;
    }));
    if (mtp_tensors > 0)
      spdlog::info("{}: the checkpoint has a multi-token-prediction layer ({}*, {} tensors), not loaded: "
                   "--speculative-algorithm EAGLE drafts with it", s.describe(), mtp_prefix, mtp_tensors);
    if (unexpected.empty()) return;
    std::string list;
    for (size_t i = 0; i < unexpected.size() && i < 10; ++i) list += (i ? ", " : "") + unexpected[i];
    spdlog::warn("{}: {} tensors not used by the model: {}{}", s.describe(), unexpected.size(), list,
                 unexpected.size() > 10 ? ", ..." : "");
  };
  if (opt.mtp_weights) {
    std::vector<TensorSpec> target, draft;
    for (const auto& s : specs) (s.mtp ? draft : target).push_back(s);
    warn_unused(src, src.check(target));
    warn_unused(mtp_src, mtp_src.check(draft));
  } else {
    warn_unused(src, src.check(specs));
  }
  // Shared MTP copies are neither loaded nor counted.
  std::erase_if(specs, [](const TensorSpec& s) { return s.shared; });
  DS_CHECK(opt.shard.world >= 1 && opt.shard.rank >= 0 && opt.shard.rank < opt.shard.world, "bad shard {} of {}",
           opt.shard.rank, opt.shard.world);
  DS_CHECK(opt.shard.attention_groups >= 1 && opt.shard.world % opt.shard.attention_groups == 0,
           "--dp-size {} must divide --tp-size {}", opt.shard.attention_groups, opt.shard.world);
  Loader ld(cfg, src, mtp_src, backend, specs, opt.shard);
  ModelWeights w;
  w.embed_tokens = backend.make_embedding(ld.raw("model.embed_tokens.weight"));
  for (int i = 0; i < cfg.num_hidden_layers; ++i) w.layers.push_back(ld.layer(i));
  w.final_norm = ld.vec("model.norm.weight");
  {  // vocabulary rows split over the ranks of the attention group (logits all-gathered by the model)
    WeightPart head = ld.shard(cfg.tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight", 0, false,
                               /*attention=*/true);
    w.lm_head = backend.make_linear(std::span<const WeightPart>(&head, 1), LinearUse::LmHead);
  }
  if (mtp)
    for (int j = 0; j < cfg.num_nextn_predict_layers; ++j) w.mtp.push_back(ld.mtp(cfg.num_hidden_layers + j));
  return w;
}

}  // namespace dsserve
