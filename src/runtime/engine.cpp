// Engine::submit_all for engines that queue one request at a time (see engine.h).
#include "runtime/engine.h"

namespace dsserve {

void Engine::submit_all(std::vector<Submission> group) {
  if (int64_t(group.size()) > max_queued_requests())
    refuse(EngineErrorKind::TooManySequences, "{} sequences in one request exceed the {} the server can queue "
           "(--max-queued-requests)", group.size(), max_queued_requests());
  std::vector<std::string> queued;
  try {
    for (Submission& s : group) {
      std::string rid = s.request.rid;
      submit(std::move(s.request), std::move(s.on_output));
      queued.push_back(std::move(rid));
    }
  } catch (...) {
    for (const std::string& rid : queued) abort(rid);
    throw;
  }
}

}  // namespace dsserve
