// Parallel layout checks (see layout.h).
#include "parallel/layout.h"

#include <fmt/format.h>

#include "core/error.h"

namespace dsserve {

void ParallelLayout::validate(int heads, int experts, int vocab) const {
  DS_CHECK(tp >= 1 && dp >= 1 && ep >= 1, "--tp-size {}, --dp-size {} and --ep-size {} must be at least 1", tp, dp, ep);
  DS_CHECK(!dp_attention || tp % dp == 0, "--dp-size {} must divide --tp-size {} with --enable-dp-attention", dp, tp);
  DS_CHECK(dp_attention || dp == 1, "--dp-size {} needs --enable-dp-attention (data-parallel attention)", dp);
  DS_CHECK(tp % ep == 0, "--ep-size {} must divide --tp-size {}", ep, tp);
  DS_CHECK(heads % attention_tp() == 0, "{} attention heads do not split over {} GPUs", heads, attention_tp());
  DS_CHECK(experts == 0 || experts % ep == 0, "{} routed experts do not split over --ep-size {}", experts, ep);
  DS_CHECK(vocab > 0, "vocabulary size {}", vocab);
}

std::string ParallelLayout::describe() const {
  std::string s = dp_attention ? fmt::format("DP{} attention (TP{} within)", dp, attention_tp()) : fmt::format("TP{}", tp);
  if (ep > 1) s += fmt::format(" + EP{}", ep);
  return s + fmt::format(" over {} GPUs", tp);
}

}  // namespace dsserve
