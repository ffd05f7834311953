// config.json -> ModelConfig: typed field reading with Hugging Face DeepSeek-V3/V2 defaults, rope_scaling
// (yarn), quantization_config (fp8, blockwise_int8, w8a8_int8, awq) and the --quantization flag,
// --json-model-override-args merging, validation, and the reverse (to_json). It does not look at weights; shapes implied by the config are checked by the loader.
#include "io/model_config.h"

#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace dsserve {

namespace {

using json = nlohmann::json;

std::string brief(const json& v) {
  std::string s = v.dump();
  return s.size() > 60 ? s.substr(0, 57) + "..." : s;
}

// Reads typed fields of one JSON object; `scope` ("rope_scaling.") prefixes field names in errors.
// Absent fields keep the value already in `out`; null is a type error unless `null_keeps` is set.
class FieldReader {
 public:
  FieldReader(const json& obj, const std::string& source, std::string scope = "")
      : obj_(obj), source_(source), scope_(std::move(scope)) {}

  const json* find(const char* key) const {
    auto it = obj_.find(key);
    return it == obj_.end() ? nullptr : &*it;
  }
  bool present(const char* key) const {
    const json* v = find(key);
    return v && !v->is_null();
  }
  [[noreturn]] void wrong(const char* key, const char* expected, const json& found) const {
    fail("{}: {}{}: expected {}, found {}", source_, scope_, key, expected, brief(found));
  }

  void read(const char* key, int& out, bool null_keeps = false) const {
    const json* v = lookup(key, null_keeps);
    if (!v) return;
    if (!v->is_number_integer()) wrong(key, "an integer", *v);
    int64_t x = v->get<int64_t>();
    if (v->is_number_unsigned() && v->get<uint64_t>() > uint64_t(INT32_MAX)) wrong(key, "a 32-bit integer", *v);
    if (x < INT32_MIN || x > INT32_MAX) wrong(key, "a 32-bit integer", *v);
    out = int(x);
  }
  void read(const char* key, double& out, bool null_keeps = false) const {
    const json* v = lookup(key, null_keeps);
    if (!v) return;
    if (!v->is_number()) wrong(key, "a number", *v);
    out = v->get<double>();
  }
  void read(const char* key, bool& out, bool null_keeps = false) const {
    const json* v = lookup(key, null_keeps);
    if (!v) return;
    if (!v->is_boolean()) wrong(key, "a boolean", *v);
    out = v->get<bool>();
  }
  void read(const char* key, std::string& out, bool null_keeps = false) const {
    const json* v = lookup(key, null_keeps);
    if (!v) return;
    if (!v->is_string()) wrong(key, "a string", *v);
    out = v->get<std::string>();
  }

 private:
  const json* lookup(const char* key, bool null_keeps) const {
    const json* v = find(key);
    if (!v || (v->is_null() && null_keeps)) return nullptr;
    return v;
  }
  const json& obj_;
  const std::string& source_;
  std::string scope_;
};

json parse_object(const std::string& text, const std::string& what) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  DS_CHECK(!j.is_discarded(), "{}: not valid JSON", what);
  DS_CHECK(j.is_object(), "{}: expected a JSON object, found {}", what, j.type_name());
  return j;
}

// Replaces top-level fields of `config` by those of the overrides object (as SGLang's
// --json-model-override-args does with the Hugging Face config).
void apply_overrides(json& config, const std::string& overrides) {
  if (overrides.find_first_not_of(" \t\r\n") == std::string::npos) return;
  json o = parse_object(overrides, "--json-model-override-args");
  for (auto& [k, v] : o.items()) config[k] = v;
}

// Hugging Face defaults of DeepseekV3Config / DeepseekV2Config for fields the file may omit.
ModelConfig defaults_for(const std::string& model_type) {
  ModelConfig c;
  c.model_type = model_type;
  bool v3 = model_type == "deepseek_v3";
  c.architecture = v3 ? "DeepseekV3ForCausalLM" : "DeepseekV2ForCausalLM";
  c.vocab_size = v3 ? 129280 : 102400;
  c.hidden_size = v3 ? 7168 : 4096;
  c.intermediate_size = v3 ? 18432 : 11008;
  c.moe_intermediate_size = v3 ? 2048 : 1407;
  c.num_hidden_layers = v3 ? 61 : 30;
  c.num_nextn_predict_layers = v3 ? 1 : 0;
  c.num_attention_heads = c.num_key_value_heads = v3 ? 128 : 32;
  c.kv_lora_rank = 512;
  c.qk_nope_head_dim = 128;
  c.qk_rope_head_dim = 64;
  c.v_head_dim = 128;
  c.n_routed_experts = v3 ? 256 : 0;
  c.n_shared_experts = v3 ? 1 : 0;
  c.num_experts_per_tok = v3 ? 8 : 0;
  c.n_group = v3 ? 8 : 1;
  c.topk_group = v3 ? 4 : 1;
  c.first_k_dense_replace = v3 ? 3 : 0;
  c.norm_topk_prob = v3;
  c.routed_scaling_factor = v3 ? 2.5 : 1.0;
  c.scoring_func = v3 ? "sigmoid" : "softmax";
  c.topk_method = v3 ? "noaux_tc" : "greedy";
  c.max_position_embeddings = v3 ? 4096 : 2048;
  c.bos_token_id = v3 ? 0 : 100000;
  c.eos_token_id = v3 ? 1 : 100001;
  return c;
}

std::string read_model_type(const FieldReader& r, const std::string& source) {
  const json* v = r.find("model_type");
  DS_CHECK(v != nullptr, "{}: model_type: missing (expected \"deepseek_v3\" or \"deepseek_v2\")", source);
  if (!v->is_string()) r.wrong("model_type", "a string", *v);
  std::string t = v->get<std::string>();
  DS_CHECK(t == "deepseek_v3" || t == "deepseek_v2",
           "{}: model_type: expected \"deepseek_v3\" or \"deepseek_v2\", found \"{}\"", source, t);
  return t;
}

void read_dims(const FieldReader& r, ModelConfig& c) {
  r.read("vocab_size", c.vocab_size);
  r.read("hidden_size", c.hidden_size);
  r.read("intermediate_size", c.intermediate_size);
  r.read("moe_intermediate_size", c.moe_intermediate_size);
  r.read("num_hidden_layers", c.num_hidden_layers);
  r.read("num_nextn_predict_layers", c.num_nextn_predict_layers);
  r.read("num_attention_heads", c.num_attention_heads);
  r.read("num_key_value_heads", c.num_key_value_heads);
  r.read("kv_lora_rank", c.kv_lora_rank);
  r.read("qk_nope_head_dim", c.qk_nope_head_dim);
  r.read("qk_rope_head_dim", c.qk_rope_head_dim);
  r.read("v_head_dim", c.v_head_dim);
  r.read("max_position_embeddings", c.max_position_embeddings);
  if (r.present("q_lora_rank")) {  // absent or null: plain q_proj
    int q = 0;
    r.read("q_lora_rank", q);
    c.q_lora_rank = q;
  }
}

// MoE fields; V2 configs may set the expert counts to null, meaning none.
void read_moe(const FieldReader& r, ModelConfig& c) {
  r.read("n_routed_experts", c.n_routed_experts, true);
  r.read("n_shared_experts", c.n_shared_experts, true);
  r.read("num_experts_per_tok", c.num_experts_per_tok, true);
  r.read("n_group", c.n_group, true);
  r.read("topk_group", c.topk_group, true);
  r.read("first_k_dense_replace", c.first_k_dense_replace);
  r.read("moe_layer_freq", c.moe_layer_freq);
  r.read("norm_topk_prob", c.norm_topk_prob);
  r.read("routed_scaling_factor", c.routed_scaling_factor);
  r.read("scoring_func", c.scoring_func);
  r.read("topk_method", c.topk_method);
}

void read_architecture(const FieldReader& r, ModelConfig& c) {
  const json* v = r.find("architectures");
  if (!v || v->is_null()) return;
  if (!v->is_array() || (!v->empty() && !(*v)[0].is_string())) r.wrong("architectures", "a list of strings", *v);
  if (!v->empty()) c.architecture = (*v)[0].get<std::string>();
}

// eos_token_id: an integer or a list of integers (the first is used).
void read_eos(const FieldReader& r, ModelConfig& c) {
  const json* v = r.find("eos_token_id");
  if (!v || v->is_null()) return;
  if (!v->is_array()) return r.read("eos_token_id", c.eos_token_id);
  if (v->empty() || !(*v)[0].is_number_integer()) r.wrong("eos_token_id", "an integer or a list of integers", *v);
  c.eos_token_id = (*v)[0].get<int>();
}

void read_misc(const FieldReader& r, ModelConfig& c) {
  read_architecture(r, c);
  r.read("hidden_act", c.hidden_act);
  r.read("rms_norm_eps", c.rms_norm_eps);
  r.read("rope_theta", c.rope_theta);
  r.read("tie_word_embeddings", c.tie_word_embeddings);
  r.read("bos_token_id", c.bos_token_id, true);
  read_eos(r, c);
  if (r.present("torch_dtype")) {
    r.read("torch_dtype", c.torch_dtype);
  } else {
    r.read("dtype", c.torch_dtype, true);  // newer transformers spell it "dtype"
  }
}

std::optional<RopeScaling> parse_rope(const FieldReader& top, const std::string& source) {
  const json* v = top.find("rope_scaling");
  if (!v || v->is_null()) return std::nullopt;
  if (!v->is_object()) top.wrong("rope_scaling", "an object or null", *v);
  FieldReader r(*v, source, "rope_scaling.");
  std::string type;
  r.read(r.present("type") ? "type" : "rope_type", type, true);
  DS_CHECK(type == "yarn" || type == "deepseek_yarn",
           "{}: rope_scaling.type: expected \"yarn\" (or \"deepseek_yarn\"), found \"{}\"", source, type);
  RopeScaling s;
  r.read("factor", s.factor);
  r.read("original_max_position_embeddings", s.original_max_position_embeddings);
  r.read("beta_fast", s.beta_fast);
  r.read("beta_slow", s.beta_slow);
  r.read("mscale", s.mscale);
  r.read("mscale_all_dim", s.mscale_all_dim);
  return s;
}

bool parse_quant_method(const std::string& name, QuantMethod* out) {
  for (QuantMethod m : {QuantMethod::Fp8, QuantMethod::BlockInt8, QuantMethod::ChannelInt8, QuantMethod::Awq})
    if (name == quant_method_name(m)) {
      *out = m;
      return true;
    }
  return false;
}

std::optional<Quantization> parse_quant(const FieldReader& top, const std::string& source) {
  const json* v = top.find("quantization_config");
  if (!v || v->is_null()) return std::nullopt;
  if (!v->is_object()) top.wrong("quantization_config", "an object or null", *v);
  FieldReader r(*v, source, "quantization_config.");
  std::string method;
  r.read("quant_method", method);
  Quantization q;
  DS_CHECK(parse_quant_method(method, &q.method),
           "{}: quantization_config.quant_method: expected \"fp8\", \"blockwise_int8\", \"w8a8_int8\" or \"awq\", "
           "found \"{}\"", source, method);
  r.read("fmt", q.fmt, true);
  r.read("activation_scheme", q.activation_scheme, true);
  if (const json* b = r.find("weight_block_size"); b && !b->is_null()) {
    if (!b->is_array() || b->size() != 2 || !(*b)[0].is_number_integer() || !(*b)[1].is_number_integer())
      r.wrong("weight_block_size", "[128, 128]", *b);
    q.block_n = (*b)[0].get<int>();
    q.block_k = (*b)[1].get<int>();
  }
  if (q.method == QuantMethod::Awq) {
    r.read("bits", q.bits, true);
    r.read("w_bit", q.bits, true);  // AutoAWQ's own quant_config.json spelling
    r.read("group_size", q.group_size, true);
    r.read("q_group_size", q.group_size, true);
    r.read("zero_point", q.zero_point, true);
    r.read("version", q.version, true);
    for (char& ch : q.version) ch = char(std::tolower(static_cast<unsigned char>(ch)));
  }
  return q;
}

void check_positive(const std::string& source, const char* field, double value) {
  DS_CHECK(value > 0, "{}: {}: expected a positive value, found {}", source, field, value);
}

void check_one_of(const std::string& source, const char* field, const std::string& value,
                  std::initializer_list<const char*> allowed) {
  std::string list;
  for (const char* a : allowed) {
    if (value == a) return;
    list += (list.empty() ? "\"" : ", \"") + std::string(a) + "\"";
  }
  fail("{}: {}: expected one of {}, found \"{}\"", source, field, list, value);
}

void validate_dims(const ModelConfig& c, const std::string& s) {
  check_positive(s, "vocab_size", c.vocab_size);
  check_positive(s, "hidden_size", c.hidden_size);
  check_positive(s, "intermediate_size", c.intermediate_size);
  check_positive(s, "num_hidden_layers", c.num_hidden_layers);
  check_positive(s, "num_attention_heads", c.num_attention_heads);
  check_positive(s, "num_key_value_heads", c.num_key_value_heads);
  check_positive(s, "kv_lora_rank", c.kv_lora_rank);
  check_positive(s, "qk_nope_head_dim", c.qk_nope_head_dim);
  check_positive(s, "qk_rope_head_dim", c.qk_rope_head_dim);
  check_positive(s, "v_head_dim", c.v_head_dim);
  check_positive(s, "max_position_embeddings", c.max_position_embeddings);
  if (c.q_lora_rank) check_positive(s, "q_lora_rank", *c.q_lora_rank);
  DS_CHECK(c.qk_rope_head_dim % 2 == 0, "{}: qk_rope_head_dim: expected an even value (RoPE rotates pairs), found {}",
           s, c.qk_rope_head_dim);
  DS_CHECK(c.num_nextn_predict_layers >= 0, "{}: num_nextn_predict_layers: expected >= 0, found {}", s,
           c.num_nextn_predict_layers);
  check_positive(s, "rms_norm_eps", c.rms_norm_eps);
  check_positive(s, "rope_theta", c.rope_theta);
  check_one_of(s, "hidden_act", c.hidden_act, {"silu"});
}

// Group-limited routing picks num_experts_per_tok experts among topk_group of n_group groups.
void validate_groups(const ModelConfig& c, const std::string& s) {
  DS_CHECK(c.n_routed_experts % c.n_group == 0, "{}: n_routed_experts ({}) must be divisible by n_group ({})", s,
           c.n_routed_experts, c.n_group);
  DS_CHECK(c.topk_group <= c.n_group, "{}: topk_group ({}) must be <= n_group ({})", s, c.topk_group, c.n_group);
  DS_CHECK(c.num_experts_per_tok <= c.n_routed_experts, "{}: num_experts_per_tok ({}) must be <= n_routed_experts ({})",
           s, c.num_experts_per_tok, c.n_routed_experts);
  int per_group = c.n_routed_experts / c.n_group;
  if (c.topk_method == "greedy") return;
  DS_CHECK(c.num_experts_per_tok <= c.topk_group * per_group,
           "{}: num_experts_per_tok ({}) exceeds the {} experts in topk_group ({}) groups of {}", s,
           c.num_experts_per_tok, c.topk_group * per_group, c.topk_group, per_group);
  DS_CHECK(c.topk_method != "noaux_tc" || per_group >= 2,
           "{}: topk_method noaux_tc scores a group by its 2 best experts, but n_routed_experts / n_group is {}", s,
           per_group);
}

void validate_moe(const ModelConfig& c, const std::string& s) {
  DS_CHECK(c.n_routed_experts >= 0, "{}: n_routed_experts: expected >= 0, found {}", s, c.n_routed_experts);
  DS_CHECK(c.n_shared_experts >= 0, "{}: n_shared_experts: expected >= 0, found {}", s, c.n_shared_experts);
  DS_CHECK(c.first_k_dense_replace >= 0, "{}: first_k_dense_replace: expected >= 0, found {}", s,
           c.first_k_dense_replace);
  check_one_of(s, "scoring_func", c.scoring_func, {"sigmoid", "softmax"});
  check_one_of(s, "topk_method", c.topk_method, {"noaux_tc", "greedy", "group_limited_greedy"});
  if (c.n_routed_experts == 0) return;
  check_positive(s, "moe_intermediate_size", c.moe_intermediate_size);
  check_positive(s, "num_experts_per_tok", c.num_experts_per_tok);
  check_positive(s, "n_group", c.n_group);
  check_positive(s, "topk_group", c.topk_group);
  check_positive(s, "moe_layer_freq", c.moe_layer_freq);
  check_positive(s, "routed_scaling_factor", c.routed_scaling_factor);
  validate_groups(c, s);
}

void validate_quantization(const Quantization& q, const std::string& s) {
  if (q.method == QuantMethod::Fp8) check_one_of(s, "quantization_config.fmt", q.fmt, {"e4m3"});
  if (q.block_scaled()) {
    check_one_of(s, "quantization_config.activation_scheme", q.activation_scheme, {"dynamic"});
    DS_CHECK(q.block_n == 128 && q.block_k == 128,
             "{}: quantization_config.weight_block_size: expected [128, 128], found [{}, {}]", s, q.block_n,
             q.block_k);
  }
  if (q.method == QuantMethod::Awq) {
    DS_CHECK(q.bits == 4, "{}: quantization_config.bits: expected 4 (AWQ 4-bit weights), found {}", s, q.bits);
    DS_CHECK(q.group_size > 0, "{}: quantization_config.group_size: expected a positive group of input channels, "
             "found {}", s, q.group_size);
    DS_CHECK(q.zero_point, "{}: quantization_config.zero_point: expected true (AutoAWQ's asymmetric 4-bit weights), "
             "found false", s);
    check_one_of(s, "quantization_config.version", q.version, {"gemm"});
  }
}

void validate_extras(const ModelConfig& c, const std::string& s) {
  if (c.rope_scaling) {
    check_positive(s, "rope_scaling.factor", c.rope_scaling->factor);
    check_positive(s, "rope_scaling.original_max_position_embeddings",
                   c.rope_scaling->original_max_position_embeddings);
  }
  if (c.quantization) validate_quantization(*c.quantization, s);
}

}  // namespace

const char* quant_method_name(QuantMethod m) {
  switch (m) {
    case QuantMethod::Fp8: return "fp8";
    case QuantMethod::BlockInt8: return "blockwise_int8";
    case QuantMethod::ChannelInt8: return "w8a8_int8";
    case QuantMethod::Awq: return "awq";
  }
  return "?";
}

void ModelConfig::apply_quantization_flag(const std::string& flag, const std::string& source, bool generated) {
  if (flag.empty()) return;
  QuantMethod wanted;
  if (flag == "awq_marlin" || flag == "moe_wna16")
    wanted = QuantMethod::Awq;  // SGLang's kernels for AWQ checkpoints; the format is the same
  else
    DS_CHECK(parse_quant_method(flag, &wanted),
             "--quantization {}: expected fp8, blockwise_int8, w8a8_int8, awq, awq_marlin or moe_wna16", flag);
  if (generated) {
    if (quantization && quantization->method == wanted) return;
    Quantization q;
    q.method = wanted;
    quantization = q;
    return;
  }
  if (quantization) {
    DS_CHECK(quantization->method == wanted,
             "--quantization {} contradicts the checkpoint: {} has quantization_config.quant_method \"{}\" (drop "
             "the flag, or pass --quantization {})", flag, source, quant_method_name(quantization->method),
             quant_method_name(quantization->method));
    return;
  }
  DS_CHECK(wanted == QuantMethod::ChannelInt8 || wanted == QuantMethod::BlockInt8,
           "--quantization {} contradicts the checkpoint: {} has no quantization_config, so its weights are not {} "
           "(dsserve reads checkpoints as they are stored; `dsserve quantize` writes an AWQ or INT8 copy)", flag,
           source, flag);
  Quantization q;
  q.method = wanted;
  q.in_config = false;
  quantization = q;
}

ModelConfig ModelConfig::parse(const std::string& json_text, const std::string& source,
                               const std::string& overrides, const std::string& quantization_flag) {
  json j = parse_object(json_text, source);
  apply_overrides(j, overrides);
  FieldReader r(j, source);
  ModelConfig c = defaults_for(read_model_type(r, source));
  read_dims(r, c);
  read_moe(r, c);
  read_misc(r, c);
  c.rope_scaling = parse_rope(r, source);
  c.quantization = parse_quant(r, source);
  c.validate(source);
  c.apply_quantization_flag(quantization_flag, source);
  return c;
}

ModelConfig ModelConfig::load(const std::string& model_dir, const std::string& overrides,
                              const std::string& quantization_flag) {
  std::string path = (std::filesystem::path(model_dir) / "config.json").string();
  std::error_code ec;
  DS_CHECK(std::filesystem::is_regular_file(path, ec), "{}: config.json not found in model directory {}", path,
           model_dir);
  std::ifstream in(path, std::ios::binary);
  DS_CHECK(in.good(), "{}: cannot open", path);
  std::string text((std::istreambuf_iterator<char>(in)), {});
  return parse(text, path, overrides, quantization_flag);
}

void ModelConfig::validate(const std::string& source) const {
  DS_CHECK(model_type == "deepseek_v3" || model_type == "deepseek_v2",
           "{}: model_type: expected \"deepseek_v3\" or \"deepseek_v2\", found \"{}\"", source, model_type);
  validate_dims(*this, source);
  validate_moe(*this, source);
  validate_extras(*this, source);
}

double ModelConfig::softmax_scale() const {
  double scale = 1.0 / std::sqrt(double(qk_head_dim()));
  if (rope_scaling && rope_scaling->factor > 1.0 && rope_scaling->mscale_all_dim != 0.0) {
    double m = 0.1 * rope_scaling->mscale_all_dim * std::log(rope_scaling->factor) + 1.0;
    scale *= m * m;
  }
  return scale;
}

nlohmann::json ModelConfig::to_json() const {
  json j = {{"architectures", json::array({architecture})},
            {"model_type", model_type},
            {"vocab_size", vocab_size},
            {"hidden_size", hidden_size},
            {"intermediate_size", intermediate_size},
            {"moe_intermediate_size", moe_intermediate_size},
            {"num_hidden_layers", num_hidden_layers},
            {"num_nextn_predict_layers", num_nextn_predict_layers},
            {"num_attention_heads", num_attention_heads},
            {"num_key_value_heads", num_key_value_heads},
            {"q_lora_rank", q_lora_rank ? json(*q_lora_rank) : json(nullptr)},
            {"kv_lora_rank", kv_lora_rank},
            {"qk_nope_head_dim", qk_nope_head_dim},
            {"qk_rope_head_dim", qk_rope_head_dim},
            {"v_head_dim", v_head_dim},
            {"n_routed_experts", n_routed_experts},
            {"n_shared_experts", n_shared_experts},
            {"num_experts_per_tok", num_experts_per_tok},
            {"n_group", n_group},
            {"topk_group", topk_group},
            {"first_k_dense_replace", first_k_dense_replace},
            {"moe_layer_freq", moe_layer_freq},
            {"norm_topk_prob", norm_topk_prob},
            {"routed_scaling_factor", routed_scaling_factor},
            {"scoring_func", scoring_func},
            {"topk_method", topk_method},
            {"hidden_act", hidden_act},
            {"rms_norm_eps", rms_norm_eps},
            {"rope_theta", rope_theta},
            {"max_position_embeddings", max_position_embeddings},
            {"tie_word_embeddings", tie_word_embeddings},
            {"bos_token_id", bos_token_id},
            {"eos_token_id", eos_token_id},
            {"torch_dtype", torch_dtype},
            {"rope_scaling", nullptr}};
  if (rope_scaling) {
    const RopeScaling& s = *rope_scaling;
    j["rope_scaling"] = {{"type", "yarn"},
                         {"factor", s.factor},
                         {"original_max_position_embeddings", s.original_max_position_embeddings},
                         {"beta_fast", s.beta_fast},
                         {"beta_slow", s.beta_slow},
                         {"mscale", s.mscale},
                         {"mscale_all_dim", s.mscale_all_dim}};
  }
  if (quantization && quantization->in_config) {
    const Quantization& q = *quantization;
    json& qc = j["quantization_config"];
    qc = {{"quant_method", quant_method_name(q.method)}};
    if (q.method == QuantMethod::Fp8) qc["fmt"] = q.fmt;
    if (q.block_scaled()) {
      qc["activation_scheme"] = q.activation_scheme;
      qc["weight_block_size"] = {q.block_n, q.block_k};
    }
    if (q.method == QuantMethod::Awq) {
      qc["bits"] = q.bits;
      qc["group_size"] = q.group_size;
      qc["zero_point"] = q.zero_point;
      qc["version"] = q.version;
      qc["modules_to_not_convert"] = nullptr;
    }
  }
  return j;
}

}  // namespace dsserve
