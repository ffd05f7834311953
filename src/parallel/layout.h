// How the model is spread over GPUs (SGLang's flags): --tp-size GPUs in all; --ep-size of them
// hold whole routed experts each (expert parallel); with --enable-dp-attention, --dp-size attention
// groups each run their own batch and latent cache, attention weights split over tp / dp GPUs.
#pragma once
#include <string>

namespace dsserve {

struct ParallelLayout {
  int tp = 1;             // GPUs of the model replica (--tp-size)
  int dp = 1;             // attention groups (--dp-size, with --enable-dp-attention)
  int ep = 1;             // expert-parallel degree (--ep-size): routed experts split as whole experts
  bool dp_attention = false;

  int attention_tp() const { return dp_attention ? tp / dp : tp; }
  // Checks the relations (tp divisible by dp and ep, heads and experts divisible); throws naming the flag.
  void validate(int num_attention_heads, int n_routed_experts, int vocab_size) const;
  std::string describe() const;  // "TP8", "DP8 attention + EP8 over 8 GPUs", ...
};

}  // namespace dsserve
