// SGLang flags accepted without effect (see compat_flags.h).
#include "cli/compat_flags.h"

#include <spdlog/spdlog.h>

#include <set>

#include "core/error.h"

namespace dsserve {

void add_compat_flags(CLI::App& s, CompatFlags& f) {
  s.add_flag("--trust-remote-code", f.trust_remote_code, "Accepted for compatibility (no remote code exists here)");
  s.add_flag("--enable-torch-compile", f.enable_torch_compile, "Accepted for compatibility (nothing to compile)");
  s.add_option("--torch-compile-max-bs", f.torch_compile_max_bs, "Accepted for compatibility (nothing to compile)")
      ->check(CLI::Range(1, 1 << 20));
  s.add_option("--attention-backend", f.attention_backend,
               "Accepted names: flashinfer, fa3, flashmla, cutlass_mla, triton, torch_native, trtllm_mla")
      ->check(CLI::IsMember({"flashinfer", "fa3", "flashmla", "cutlass_mla", "triton", "torch_native", "trtllm_mla"}));
  s.add_flag("--enable-flashinfer-mla", f.enable_flashinfer_mla, "Accepted for compatibility (MLA kernels are built in)");
  s.add_option("--dtype", f.dtype, "auto | bfloat16 (activations: BF16 on a GPU, float32 on the CPU oracle)")
      ->capture_default_str();
  s.add_option("--grammar-backend", f.grammar_backend, "Accepted names: xgrammar, outlines, llguidance, none")
      ->check(CLI::IsMember({"xgrammar", "outlines", "llguidance", "none"}));
  s.add_flag("--enable-cache-report", f.enable_cache_report,
             "Accepted: usage.prompt_tokens_details.cached_tokens is always reported");
  s.add_option("--stream-interval", f.stream_interval, "Accepted: every step's tokens are streamed as they come")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  s.add_flag("--skip-server-warmup", f.skip_server_warmup, "Accepted: dsserve sends itself no warm-up request");
  s.add_option("--tokenizer-mode", f.tokenizer_mode, "auto | slow (one native tokenizer either way)")
      ->check(CLI::IsMember({"auto", "slow"}))
      ->capture_default_str();
  s.add_flag("--enable-dp-lm-head", f.enable_dp_lm_head, "Accepted: the lm_head is split within each attention group");
  s.add_option("--moe-dense-tp-size", f.moe_dense_tp_size, "Accepted: dense MLP layers are split like the rest")
      ->check(CLI::Range(1, 1 << 16));
  s.add_flag("--enable-two-batch-overlap", f.enable_two_batch_overlap, "Accepted: batches run one at a time");
  s.add_option("--moe-a2a-backend", f.moe_a2a_backend, "Accepted names: none, deepep, mooncake (experts exchange "
               "tokens through dsserve's own collectives)")
      ->check(CLI::IsMember({"none", "deepep", "mooncake"}));
}

void check_compat_flags(const CompatFlags& f, bool on_cpu) {
  DS_CHECK(f.dtype == "auto" || f.dtype == "bfloat16" || f.dtype == "bf16",
           "--dtype {}: dsserve computes in BF16 on a GPU (float32 on the CPU oracle); use auto or bfloat16",
           f.dtype);
  auto note = [](bool given, const std::string& line) {
    if (given) spdlog::info("{}", line);
  };
  note(f.trust_remote_code, "--trust-remote-code: no effect; dsserve runs no code from checkpoints");
  note(f.enable_torch_compile, "--enable-torch-compile: no effect; there is nothing to compile (the kernels are native)");
  note(f.torch_compile_max_bs > 0, "--torch-compile-max-bs: no effect; there is nothing to compile (decode runs "
                                   "through CUDA graphs up to --cuda-graph-max-bs)");
  note(f.enable_flashinfer_mla, "--enable-flashinfer-mla: no effect; MLA kernels are built in");
  note(!f.attention_backend.empty(),
       "--attention-backend " + f.attention_backend + ": no effect; dsserve uses its own MLA kernels");
  note(f.dtype != "auto", "--dtype " + f.dtype + ": as by default (" + (on_cpu ? "float32 on the CPU oracle" : "BF16") + ")");
  note(!f.grammar_backend.empty(), "--grammar-backend " + f.grammar_backend +
                                       ": no effect; dsserve has one constrained-decoding engine of its own");
  note(f.enable_cache_report, "--enable-cache-report: no effect; cached prompt tokens are always reported "
                              "(usage.prompt_tokens_details.cached_tokens)");
  note(f.stream_interval != 1, "--stream-interval: no effect; tokens are streamed as each step makes them");
  note(f.skip_server_warmup, "--skip-server-warmup: no effect; dsserve sends itself no warm-up request");
  note(f.tokenizer_mode != "auto", "--tokenizer-mode: no effect; dsserve has one native tokenizer");
  note(f.enable_dp_lm_head, "--enable-dp-lm-head: no effect; the lm_head is split within each attention group");
  note(f.moe_dense_tp_size > 0, "--moe-dense-tp-size: no effect; dense MLP layers are split over the "
                                "tensor-parallel ranks like the rest");
  note(f.enable_two_batch_overlap, "--enable-two-batch-overlap: no effect; dsserve runs one batch at a time");
  note(!f.moe_a2a_backend.empty() && f.moe_a2a_backend != "none",
       "--moe-a2a-backend " + f.moe_a2a_backend + ": no effect; experts exchange tokens through dsserve's collectives");
}

}  // namespace dsserve
