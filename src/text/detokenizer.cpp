// Streaming detokenization with UTF-8 and stop-string hold-back (see detokenizer.h).
#include "text/detokenizer.h"

#include "text/utf8.h"

namespace dsserve::text {

IncrementalDetokenizer::IncrementalDetokenizer(const Tokenizer& tokenizer, DetokenizeOptions options)
    : tokenizer_(tokenizer), options_(std::move(options)) {
  std::erase_if(options_.stop, [](const std::string& s) { return s.empty(); });
}

std::string IncrementalDetokenizer::push(int32_t id) {
  if (stopped()) return {};
  const std::string& bytes = tokenizer_.token_bytes(id);
  if (options_.skip_special_tokens && tokenizer_.is_special(id)) return {};
  pending_bytes_ += bytes;
  const size_t tail = utf8_incomplete_tail(pending_bytes_);
  held_ += utf8_lossy(std::string_view(pending_bytes_).substr(0, pending_bytes_.size() - tail));
  pending_bytes_.erase(0, pending_bytes_.size() - tail);
  return release(false);
}

std::string IncrementalDetokenizer::finish() {
  if (stopped()) return {};
  held_ += utf8_lossy(pending_bytes_);
  pending_bytes_.clear();
  return release(true);
}

std::string IncrementalDetokenizer::release(bool at_end) {
  // The earliest stop string in the held text ends the stream.
  size_t best_pos = std::string::npos;
  const std::string* best = nullptr;
  for (const std::string& s : options_.stop) {
    const size_t pos = held_.find(s);
    if (pos < best_pos) {
      best_pos = pos;
      best = &s;
    }
  }
  std::string out;
  if (best) {
    matched_stop_ = *best;
    out = options_.no_stop_trim ? std::move(held_) : held_.substr(0, best_pos);
    held_.clear();
    pending_bytes_.clear();
    return out;
  }
  size_t keep = 0;  // longest suffix of held_ that is a proper prefix of a stop string
  if (!at_end) {
    for (const std::string& s : options_.stop) {
      for (size_t k = std::min(s.size() - 1, held_.size()); k > keep; --k) {
        if (held_.compare(held_.size() - k, k, s, 0, k) == 0) {
          keep = k;
          break;
        }
      }
    }
  }
  out = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return out;
}

}  // namespace dsserve::text
