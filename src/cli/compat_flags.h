// SGLang launch_server flags that dsserve accepts although they change nothing here (each logs one
// line saying so and why) or that only check a value dsserve can honour (`--dtype`, a value it
// cannot honour is an error naming it). Kept apart from the flags that do something, so that a
// deployment's SGLang command line starts dsserve unchanged.
#pragma once
#include <CLI/CLI.hpp>
#include <string>

namespace dsserve {

struct CompatFlags {
  bool trust_remote_code = false, enable_torch_compile = false, enable_flashinfer_mla = false,
       enable_cache_report = false, skip_server_warmup = false, enable_dp_lm_head = false,
       enable_two_batch_overlap = false;
  std::string attention_backend, dtype = "auto", grammar_backend, tokenizer_mode = "auto", moe_a2a_backend;
  int stream_interval = 1, torch_compile_max_bs = 0, moe_dense_tp_size = 0;
};

void add_compat_flags(CLI::App& app, CompatFlags& f);
// One info line per flag given; Error for a value dsserve cannot honour (on_cpu: the device).
void check_compat_flags(const CompatFlags& f, bool on_cpu);

}  // namespace dsserve
