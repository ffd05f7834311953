// `dsserve bench-one-batch`: the latency of one static batch through the model alone (no
// scheduler, no server), as SGLang's bench_one_batch: a prefill of batch_size x input_len random
// tokens (expanded attention; whole sequences, at most --max-prefill-tokens per forward), then
// output_len greedy decode steps of batch_size tokens (absorbed attention through the paged cache).
// Each step is set beside its physical floor on this machine (measured at start-up): a decode step
// against the bytes it must read (weights touched, counting only the routed experts it ran, plus
// the latent cache) over the device-to-device copy bandwidth; the prefill against its FLOPs at the
// measured FP8 and BF16 matrix rates. A decode step is timed whole (forward, then greedy token
// choice where the logits are: Backend::sample, only the tokens and their logprobs read back) and up
// to the device finishing the forward. With --tp-size N (and --ep-size N) the floors are those of
// one GPU of the split (model/forward_cost.h: CostSplit; the all-reduces are not in them).
// --profile-layers (one GPU) then records the decode graphs again with a mark between decoder layers
// and runs the batches once more: each layer's time beside its own floor (its weights, the experts it
// ran on average, its latent cache), dense and MoE layers apart, with the kernels each launches.
// --decode-baseline (one GPU) then runs the same batches, after the same prefill, on the unfused
// decode kernels (Backend::set_fused_decode(false)) and prints both side by side.
// Prints one JSON line per run, then a table (and the per-layer table). Any --device.
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <random>

#include "cli/commands.h"
#include "cli/model_options.h"
#include "core/error.h"
#include "model/forward_cost.h"
#include "runtime/batch_builder.h"
#include "runtime/scheduler.h"

namespace dsserve {

namespace {

struct BenchOneBatchOptions {
  ModelOptions model;
  std::vector<int> batch_sizes{1};
  std::vector<int> input_lens{1024};
  int output_len = 16;
  int max_prefill_tokens = 16384;
  bool profile_layers = false;
  bool decode_baseline = false;
};

// Per-layer decode profile of one run: every step's seconds of each layer.
struct LayerSamples {
  std::vector<std::vector<double>> seconds;  // [layer][step]
  std::vector<int> kernels;                  // [layer], from the replayed graph (empty: not known)
  std::vector<double> floor_s;               // [layer]: summed over the steps (averaged at the end)
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

SequenceChunk make_chunk(const SequencePages* pages, int64_t prefix, std::vector<int32_t> tokens, int32_t logit) {
  SequenceChunk c;
  c.pages = pages;
  c.prefix_len = prefix;
  c.tokens = std::move(tokens);
  c.logit_offsets = {logit};
  return c;
}

// One forward, waited for; returns the greedy next token of each sequence (Backend::sample) and
// sets forward_s to the time until the device finished the forward. Fails when a chosen token's
// logprob is not finite (a NaN or +inf logit anywhere in its row makes it so).
std::vector<int32_t> step(LoadedModel& m, const std::vector<SequenceChunk>& chunks, AttentionMode mode,
                          double& forward_s) {
  const auto t0 = std::chrono::steady_clock::now();
  ForwardBatch fb = build_forward_batch(chunks, BatchLayout{m.cache.page_size, mode});
  ForwardOutput out = m.runner().forward(fb, m.cache);
  m.runner().synchronize();  // every rank's device done
  forward_s = seconds_since(t0);
  SamplingRow greedy;
  greedy.temperature = 0;
  greedy.want_logprob = true;
  const std::vector<SamplingRow> rows(static_cast<size_t>(out.logits.size(0)), greedy);
  std::vector<int32_t> next;
  for (const SampledToken& t : m.lead_backend().sample(out.logits, rows)) {
    DS_CHECK(std::isfinite(t.logprob), "bench-one-batch: non-finite logits (row {} of a {} forward)", next.size(),
             mode == AttentionMode::Expanded ? "prefill" : "decode");
    next.push_back(t.token);
  }
  return next;
}

double ratio(double measured, double floor) { return floor > 0 ? measured / floor : 0.0; }

// Decode forwards replayed from CUDA graphs so far (rank 0's under tensor parallelism).
int64_t graph_replays(LoadedModel& m) { return m.runner().recorded_graphs().decode_replays; }

nlohmann::json layer_rows(const ModelConfig& cfg, const LayerSamples& ls, int steps);

// How a batch's decode steps run: which kernels (Backend::set_fused_decode) and whether the graphs
// carry a mark between layers (--profile-layers).
struct Phase {
  bool fused = false, profile = false;
};

// Switches the lead backend to `ph` and records the decode graphs again when that changes them.
void enter(LoadedModel& m, const Phase& ph, Phase& current) {
  if (ph.fused == current.fused && ph.profile == current.profile) return;
  Backend& lead = m.lead_backend();
  lead.set_fused_decode(ph.fused);
  lead.set_layer_profiling(ph.profile);
  GraphPlan plan;
  plan.trash_slot = m.trash_slot;
  plan.decode_sizes = m.runner().recorded_graphs().decode;
  if (!plan.decode_sizes.empty()) m.runner().capture_graphs(plan, m.cache, m.mtp_cache);
  current = ph;
}

// One batch: the prefill, then output_len decode steps in each phase, continuing the same
// sequences (so one prefill serves every phase). One JSON object per phase.
std::vector<nlohmann::json> run(LoadedModel& m, const BenchOneBatchOptions& o, const DeviceCeilings& ceil, int B,
                                int input_len, std::mt19937& rng, const std::vector<Phase>& phases, Phase& current) {
  const ModelConfig& cfg = m.runner().config();
  const CostSplit split{o.model.tp_size, o.model.ep_size > 1};  // floors of one GPU of the split
  Backend& lead = m.lead_backend();
  const int decode_len = o.output_len * int(phases.size());
  std::vector<SequencePages> seqs(static_cast<size_t>(B));
  for (auto& s : seqs)
    DS_CHECK(s.reserve(*m.pool, input_len + decode_len),
             "bench-one-batch: the KV cache is too small for batch {} x {} tokens (raise --max-total-tokens)", B,
             input_len + decode_len);
  std::uniform_int_distribution<int32_t> tok(0, cfg.vocab_size - 1);
  std::vector<SequenceChunk> prefill;
  for (auto& s : seqs) {
    std::vector<int32_t> ids(static_cast<size_t>(input_len));
    for (auto& t : ids) t = tok(rng);
    prefill.push_back(make_chunk(&s, 0, std::move(ids), input_len - 1));
  }
  // Prefill: whole sequences, at most max_prefill_tokens per forward (one sequence at least).
  const int per_forward = std::max(1, o.max_prefill_tokens / input_len);
  std::vector<int32_t> next;
  auto t0 = std::chrono::steady_clock::now();
  for (int b = 0; b < B; b += per_forward) {
    std::vector<SequenceChunk> part(prefill.begin() + b, prefill.begin() + std::min(B, b + per_forward));
    double fwd = 0;
    std::vector<int32_t> n = step(m, part, AttentionMode::Expanded, fwd);
    next.insert(next.end(), n.begin(), n.end());
  }
  const double prefill_s = seconds_since(t0);
  std::vector<int64_t> lens(static_cast<size_t>(B), input_len);
  const ForwardCost pc = prefill_cost(cfg, lens, split);
  // Without FP8 products (the Ampere kernel set: fp8_tflops 0) every FLOP is a BF16 one.
  const double prefill_floor_bf16 = ceil.bf16_tflops > 0 ? pc.flops() / (ceil.bf16_tflops * 1e12) : 0.0;
  const double prefill_floor = ceil.fp8_tflops > 0 && ceil.bf16_tflops > 0
                                   ? pc.fp8_flops / (ceil.fp8_tflops * 1e12) + pc.bf16_flops / (ceil.bf16_tflops * 1e12)
                                   : prefill_floor_bf16;
  int moe_layers = 0;
  for (int i = 0; i < cfg.num_hidden_layers; ++i) moe_layers += cfg.is_moe_layer(i);
  auto median_of = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0.0 : v[v.size() / 2];
  };

  std::vector<nlohmann::json> outs;
  int position = input_len;
  for (const Phase& ph : phases) {
    if (m.one_device()) enter(m, ph, current);
    std::vector<double> decode_s, forward_s;
    LayerSamples layers;
    double decode_bytes = 0, experts = 0;
    int64_t experts_known = 0;
    const int64_t replays0 = graph_replays(m);
    for (int i = 0; i < o.output_len; ++i, ++position) {
      std::vector<SequenceChunk> chunks;
      for (int b = 0; b < B; ++b) chunks.push_back(make_chunk(&seqs[b], position, {next[b]}, 0));
      const int64_t e0 = lead.experts_run();
      t0 = std::chrono::steady_clock::now();
      double fwd = 0;
      next = step(m, chunks, AttentionMode::Absorbed, fwd);
      decode_s.push_back(seconds_since(t0));
      forward_s.push_back(fwd);
      const int64_t ran = e0 >= 0 ? lead.experts_run() - e0 : -1;
      std::vector<int64_t> keys(static_cast<size_t>(B), position + 1);
      const int kv_value_bytes = dtype_size(m.cache.data.dtype()) == 1 ? 1 : 2;  // FP8, else as BF16 on a GPU
      decode_bytes += decode_step_cost(cfg, keys, ran, kv_value_bytes, split).bytes();
      if (ran >= 0) experts += double(ran), ++experts_known;
      if (ph.profile) {
        const Backend::LayerProfile p = lead.layer_profile();
        if (p.seconds.size() == size_t(cfg.num_hidden_layers)) {
          layers.seconds.resize(p.seconds.size());
          layers.floor_s.resize(p.seconds.size());
          for (size_t l = 0; l < p.seconds.size(); ++l) layers.seconds[l].push_back(p.seconds[l]);
          if (!p.kernels.empty()) layers.kernels = p.kernels;
          const double per_moe_layer = ran >= 0 && moe_layers > 0 ? double(ran) / moe_layers : -1.0;
          for (int l = 0; l < cfg.num_hidden_layers; ++l)
            layers.floor_s[size_t(l)] += ceil.copy_gbs > 0 ? decode_layer_cost(cfg, l, keys, per_moe_layer,
                                                                               kv_value_bytes, split).bytes() /
                                                                 (ceil.copy_gbs * 1e9)
                                                           : 0.0;
        }
      }
    }
    const double median = median_of(decode_s), median_forward = median_of(forward_s);
    if (!decode_s.empty()) decode_bytes /= double(decode_s.size());
    const double decode_floor = ceil.copy_gbs > 0 ? decode_bytes / (ceil.copy_gbs * 1e9) : 0.0;
    nlohmann::json out = {{"batch_size", B},
                          {"decode_kernels", ph.fused ? "fused" : "unfused"},
                          {"profile_layers", ph.profile},
                          {"decode_steps_from_cuda_graphs", graph_replays(m) - replays0},
                          {"input_len", input_len},
                          {"output_len", o.output_len},
                          {"device", lead.name()},
                          {"sm80_kernels_forced", o.model.force_sm80_kernels},
                          {"tp_size", o.model.tp_size},
                          {"ep_size", o.model.ep_size},
                          {"prefill_latency_s", prefill_s},
                          {"prefill_throughput_tok_s", double(B) * input_len / prefill_s},
                          {"prefill_forwards", (B + per_forward - 1) / per_forward},
                          {"prefill_tflop", pc.flops() / 1e12},
                          {"prefill_fp8_tflop", pc.fp8_flops / 1e12},
                          {"prefill_floor_s", prefill_floor},
                          {"prefill_floor_bf16_only_s", prefill_floor_bf16},
                          {"prefill_ratio_to_floor", ratio(prefill_s, prefill_floor)},
                          {"median_decode_latency_s", median},
                          {"median_decode_throughput_tok_s", median > 0 ? B / median : 0.0},
                          {"decode_bytes_per_step", decode_bytes},
                          {"decode_experts_per_moe_layer",
                           experts_known && moe_layers ? experts / experts_known / moe_layers : -1.0},
                          {"decode_floor_s", decode_floor},
                          {"decode_ratio_to_floor", ratio(median, decode_floor)},
                          {"median_decode_forward_s", median_forward},
                          {"decode_forward_ratio_to_floor", ratio(median_forward, decode_floor)}};
    if (ph.profile) out["layers"] = layer_rows(cfg, layers, int(decode_s.size()));
    outs.push_back(std::move(out));
  }
  for (auto& s : seqs) s.release_all(*m.pool);
  return outs;
}

// Dense and MoE layers apart: the median over steps of each layer's time, then the median over the
// layers of a kind, beside the kind's mean floor per layer (layer 0 has no norm before it inside its
// marks, so it is left out of its kind where the kind has other layers).
nlohmann::json layer_rows(const ModelConfig& cfg, const LayerSamples& ls, int steps) {
  nlohmann::json rows = nlohmann::json::array();
  if (ls.seconds.empty() || steps == 0) return rows;
  for (bool moe : {false, true}) {
    std::vector<double> times, floors;
    std::vector<int> kernels;
    for (int l = 0; l < int(ls.seconds.size()); ++l) {
      if (cfg.is_moe_layer(l) != moe) continue;
      std::vector<double> t = ls.seconds[size_t(l)];
      std::sort(t.begin(), t.end());
      times.push_back(t[t.size() / 2]);
      floors.push_back(ls.floor_s[size_t(l)] / steps);
      if (!ls.kernels.empty()) kernels.push_back(ls.kernels[size_t(l)]);
    }
    if (times.size() > 1 && !moe && !cfg.is_moe_layer(0)) {  // layer 0 lacks the norm before it
      times.erase(times.begin()), floors.erase(floors.begin());
      if (!kernels.empty()) kernels.erase(kernels.begin());
    }
    if (times.empty()) continue;
    std::vector<double> sorted = times;
    std::sort(sorted.begin(), sorted.end());
    double floor = 0;
    for (double f : floors) floor += f;
    floor /= double(floors.size());
    const double median = sorted[sorted.size() / 2];
    nlohmann::json r = {{"kind", moe ? "moe" : "dense"},
                        {"layers", times.size()},
                        {"median_layer_s", median},
                        {"min_layer_s", sorted.front()},
                        {"max_layer_s", sorted.back()},
                        {"floor_layer_s", floor},
                        {"ratio_to_floor", ratio(median, floor)}};
    if (!kernels.empty()) r["kernels_per_layer"] = kernels[kernels.size() / 2];
    rows.push_back(r);
  }
  return rows;
}

void print_table(const DeviceCeilings& c, const std::vector<nlohmann::json>& rows) {
  if (c.copy_gbs > 0)
    std::printf("ceilings: copy %.0f GB/s (read + write), bf16 %.0f TFLOP/s, fp8 %.0f TFLOP/s%s\n", c.copy_gbs,
                c.bf16_tflops, c.fp8_tflops, c.fp8_tflops > 0 ? "" : " (no FP8 products: floors at the BF16 rate)");
  else
    std::printf("ceilings: not measured on this device (floors and ratios print as 0)\n");
  std::printf("| batch | input | prefill s | tok/s | TFLOP | floor s | x floor | decode ms | tok/s | GB/step | experts/layer | floor ms | x floor | forward ms | x floor | graph steps |\n");
  std::printf("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (const auto& r : rows)
    std::printf("| %d | %d | %.3f | %.0f | %.1f | %.3f | %.2f | %.2f | %.0f | %.2f | %.1f | %.2f | %.2f | %.2f | %.2f | %lld |\n",
                r["batch_size"].get<int>(), r["input_len"].get<int>(), r["prefill_latency_s"].get<double>(),
                r["prefill_throughput_tok_s"].get<double>(), r["prefill_tflop"].get<double>(),
                r["prefill_floor_s"].get<double>(), r["prefill_ratio_to_floor"].get<double>(),
                1e3 * r["median_decode_latency_s"].get<double>(), r["median_decode_throughput_tok_s"].get<double>(),
                r["decode_bytes_per_step"].get<double>() / 1e9, r["decode_experts_per_moe_layer"].get<double>(),
                1e3 * r["decode_floor_s"].get<double>(), r["decode_ratio_to_floor"].get<double>(),
                1e3 * r["median_decode_forward_s"].get<double>(), r["decode_forward_ratio_to_floor"].get<double>(),
                static_cast<long long>(r["decode_steps_from_cuda_graphs"].get<int64_t>()));
}

void print_layer_table(const std::vector<nlohmann::json>& prof) {
  std::printf("per decoder layer (decode graphs recorded with a mark between layers; median over steps, then "
              "over the layers of a kind):\n");
  std::printf("| batch | input | layer | layers | ms per layer | min ms | max ms | floor ms | x floor | kernels |\n");
  std::printf("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|\n");
  for (const auto& r : prof)
    for (const auto& l : r["layers"])
      std::printf("| %d | %d | %s | %d | %.4f | %.4f | %.4f | %.4f | %.2f | %s |\n", r["batch_size"].get<int>(),
                  r["input_len"].get<int>(), l["kind"].get<std::string>().c_str(), l["layers"].get<int>(),
                  1e3 * l["median_layer_s"].get<double>(), 1e3 * l["min_layer_s"].get<double>(),
                  1e3 * l["max_layer_s"].get<double>(), 1e3 * l["floor_layer_s"].get<double>(),
                  l["ratio_to_floor"].get<double>(),
                  l.contains("kernels_per_layer") ? std::to_string(l["kernels_per_layer"].get<int>()).c_str() : "-");
}

}  // namespace

void add_bench_one_batch_command(CLI::App& app) {
  auto o = std::make_shared<BenchOneBatchOptions>();
  CLI::App* cmd = app.add_subcommand("bench-one-batch", "Latency of one static batch: prefill, then decode steps");
  o->model.add_to(*cmd);
  o->model.add_single_node_flags(*cmd, "bench-one-batch");
  cmd->add_option("--tp-size,--tp", o->model.tp_size, "GPUs to split the model over (tensor parallel)")->capture_default_str();
  cmd->add_option("--ep-size,--ep", o->model.ep_size, "1, or --tp-size: routed experts placed whole on the ranks")
      ->capture_default_str();
  cmd->add_option("--batch-size", o->batch_sizes, "Sequences in the batch (one run each)")->capture_default_str();
  cmd->add_option("--input-len", o->input_lens, "Prompt lengths to measure (one run each)");
  cmd->add_option("--output-len", o->output_len, "Decode steps after the prefill")->capture_default_str();
  cmd->add_option("--max-prefill-tokens", o->max_prefill_tokens, "Prompt tokens per prefill forward")
      ->capture_default_str();
  cmd->add_flag("--enable-sm90-fp8-gemm", o->model.sm90_fp8_gemm,
                "CUDA: prefill-size FP8 linears, the FP8 per-head products and routed experts at every size on "
                "the sm90 block-FP8 GEMM (off by default: slower than cuBLASLt on the dense V3 shapes; the "
                "experts take it up to 32,768 pairs either way)");
  cmd->add_flag("--profile-layers", o->profile_layers,
                "Then time every decoder layer of the decode steps against its own floor (one GPU)");
  cmd->add_flag("--decode-baseline", o->decode_baseline,
                "Then the same batches, after the same prefill, on the unfused decode kernels (the baseline), and the "
                "speed-up (one GPU)");
  cmd->add_flag("--force-sm80-kernels", o->model.force_sm80_kernels,
                "CUDA: run the Ampere (sm_80) kernel set on a Hopper GPU, as an A100 would (W8A16 FP8 linears, "
                "mma.sync attention)");
  cmd->callback([o] {
    DS_CHECK(!o->batch_sizes.empty() && *std::min_element(o->batch_sizes.begin(), o->batch_sizes.end()) >= 1 &&
                 o->output_len >= 0 && o->max_prefill_tokens >= 1,
             "bench-one-batch: every --batch-size must be >= 1, --output-len >= 0, --max-prefill-tokens >= 1");
    const int largest = *std::max_element(o->batch_sizes.begin(), o->batch_sizes.end());
    DS_CHECK(!o->input_lens.empty() && *std::min_element(o->input_lens.begin(), o->input_lens.end()) >= 1,
             "bench-one-batch: every --input-len must be >= 1");
    const int longest = *std::max_element(o->input_lens.begin(), o->input_lens.end());
    ModelOptions mo = o->model;
    mo.load_mtp = false;  // plain decoding reads no MTP weights
    const int phase_count = (1 + int(o->profile_layers)) * (1 + int(o->decode_baseline));
    if (mo.cuda_graph_bs.empty() && mo.cuda_graph_max_bs == 0) {  // record just the batch sizes measured
      mo.cuda_graph_bs = o->batch_sizes;
      mo.cuda_graph_bs.push_back(1);  // the warm-up run
    }
    const int64_t need = int64_t(largest) * (longest + phase_count * o->output_len + std::max(mo.page_size, 64));
    if (mo.max_total_tokens < need) mo.max_total_tokens = need;
    if (mo.context_length > 0 && mo.context_length < longest + phase_count * o->output_len)
      fail("bench-one-batch: --context-length {} is shorter than input + output in every phase ({})", mo.context_length,
           longest + phase_count * o->output_len);
    LoadedModel m = load_model(mo);
    const DeviceCeilings ceil = m.lead_backend().measure_ceilings();
    if (ceil.copy_gbs > 0)
      spdlog::info("ceilings: copy {:.0f} GB/s (read + write), bf16 {:.0f} TFLOP/s, fp8 {:.0f} TFLOP/s", ceil.copy_gbs,
                   ceil.bf16_tflops, ceil.fp8_tflops);
    std::mt19937 rng(uint32_t(mo.random_seed));
    DS_CHECK(!(o->profile_layers || o->decode_baseline) || m.one_device(),
             "bench-one-batch --profile-layers / --decode-baseline: one GPU only (no --tp-size, --dp-size, --nnodes)");
    // The phases of every batch, after one prefill: the loaded kernels, then (--profile-layers) the
    // same with a mark between layers, then (--decode-baseline) both on the unfused kernels.
    const bool fused = m.lead_backend().fused_decode();
    std::vector<Phase> phases{{fused, false}};
    if (o->profile_layers) phases.push_back({fused, true});
    if (o->decode_baseline) {
      phases.push_back({!fused, false});
      if (o->profile_layers) phases.push_back({!fused, true});
    }
    Phase current{fused, false};
    run(m, *o, ceil, 1, longest, rng, phases, current);  // warm-up: library handles, algorithm choices, scratch
    std::vector<nlohmann::json> rows, prof, base_rows, base_prof;
    for (int b : o->batch_sizes)
      for (int len : o->input_lens)
        for (nlohmann::json& r : run(m, *o, ceil, b, len, rng, phases, current)) {
          std::cout << r.dump() << std::endl;
          const bool base = r["decode_kernels"] != (fused ? "fused" : "unfused");
          (r["profile_layers"].get<bool>() ? (base ? base_prof : prof) : (base ? base_rows : rows)).push_back(r);
        }
    const char* path = fused ? "fused decode kernels" : "unfused decode kernels";
    const char* other = fused ? "unfused decode kernels" : "fused decode kernels";
    std::printf("decode on the %s:\n", path);
    print_table(ceil, rows);
    if (o->profile_layers) print_layer_table(prof);
    if (!o->decode_baseline) return;
    std::printf("baseline: decode on the %s (same process, same prefill, same ceilings):\n", other);
    print_table(ceil, base_rows);
    if (o->profile_layers) print_layer_table(base_prof);
    std::printf("%s against the %s (speed-up: baseline ms / ms):\n", path, other);
    std::printf("| batch | input | what | ms | baseline ms | speed-up | x floor | baseline x floor | kernels | baseline kernels |\n");
    std::printf("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|\n");
    auto kernels_of = [](const nlohmann::json& l) {
      return l.contains("kernels_per_layer") ? std::to_string(l["kernels_per_layer"].get<int>()) : std::string("-");
    };
    for (size_t i = 0; i < rows.size() && i < base_rows.size(); ++i) {
      const auto &a = rows[i], &b = base_rows[i];
      const double ms = 1e3 * a["median_decode_latency_s"].get<double>(), bms = 1e3 * b["median_decode_latency_s"].get<double>();
      std::printf("| %d | %d | step | %.3f | %.3f | %.2fx | %.2f | %.2f | - | - |\n", a["batch_size"].get<int>(),
                  a["input_len"].get<int>(), ms, bms, ratio(bms, ms), a["decode_ratio_to_floor"].get<double>(),
                  b["decode_ratio_to_floor"].get<double>());
    }
    for (size_t i = 0; i < prof.size() && i < base_prof.size(); ++i)
      for (const auto& l : prof[i]["layers"])
        for (const auto& bl : base_prof[i]["layers"]) {
          if (bl["kind"] != l["kind"]) continue;
          const double ms = 1e3 * l["median_layer_s"].get<double>(), bms = 1e3 * bl["median_layer_s"].get<double>();
          std::printf("| %d | %d | %s layer | %.4f | %.4f | %.2fx | %.2f | %.2f | %s | %s |\n",
                      prof[i]["batch_size"].get<int>(), prof[i]["input_len"].get<int>(),
                      l["kind"].get<std::string>().c_str(), ms, bms, ratio(bms, ms), l["ratio_to_floor"].get<double>(),
                      bl["ratio_to_floor"].get<double>(), kernels_of(l).c_str(), kernels_of(bl).c_str());
        }
  });
}

}  // namespace dsserve
