// Why the engine refused a request, as a type: the server maps each kind to its HTTP answer (400,
// 503 with Retry-After, ...) without reading message text. The message names the request and what
// was expected versus found; `field` names the request field at fault (SamplingParams' names, with
// the prefix the caller gave) when one is.
#pragma once
#include <string>

#include "core/error.h"

namespace dsserve {

enum class EngineErrorKind {
  InvalidRequest,      // a field out of range, an empty prompt, a token outside the vocabulary, ...
  DuplicateRequestId,  // the rid is in flight already
  TooManySequences,    // more sequences in one request than the engine can ever hold
  QueueFull,           // waiting requests at --max-queued-requests: retry later
  ShuttingDown,        // the server is stopping
  DeviceFailed,        // the device can run nothing more
};

class EngineError : public Error {
 public:
  EngineError(EngineErrorKind kind, const std::string& message, std::string field = "")
      : Error(message), kind(kind), field(std::move(field)) {}
  EngineErrorKind kind;
  std::string field;
};

template <typename... Args>
[[noreturn]] void refuse(EngineErrorKind kind, fmt::format_string<Args...> f, Args&&... args) {
  throw EngineError(kind, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace dsserve
