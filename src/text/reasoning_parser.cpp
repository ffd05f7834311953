// deepseek-r1 reasoning separation (see reasoning_parser.h).
#include "text/reasoning_parser.h"

#include <algorithm>

namespace dsserve::text {
namespace {

constexpr std::string_view kThinkStart = "<think>";
constexpr std::string_view kThinkEnd = "</think>";

bool is_py_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

std::string_view strip(std::string_view s) {
  while (!s.empty() && is_py_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_py_space(s.back())) s.remove_suffix(1);
  return s;
}

// Length of the longest suffix of s that is a proper prefix of tag.
size_t partial_tag_suffix(std::string_view s, std::string_view tag) {
  for (size_t k = std::min(s.size(), tag.size() - 1); k > 0; --k)
    if (s.substr(s.size() - k) == tag.substr(0, k)) return k;
  return 0;
}

}  // namespace

bool reasoning_parser_known(const std::string& parser) { return parser == "deepseek-r1" || parser == "deepseek-v3"; }

bool reasoning_applies(const std::string& parser, bool thinking_requested) {
  if (parser == "deepseek-r1") return true;
  if (parser == "deepseek-v3") return thinking_requested;
  return false;
}

ReasoningResult parse_reasoning(std::string_view text) {
  // SGLang: remove every <think>, strip, split once at </think>, strip the content.
  std::string processed;
  for (size_t pos = 0;;) {
    const size_t f = text.find(kThinkStart, pos);
    processed.append(text.substr(pos, f == std::string_view::npos ? std::string_view::npos : f - pos));
    if (f == std::string_view::npos) break;
    pos = f + kThinkStart.size();
  }
  const std::string_view p = strip(processed);
  const size_t end = p.find(kThinkEnd);
  if (end == std::string_view::npos) return {std::string(p), ""};
  return {std::string(p.substr(0, end)), std::string(strip(p.substr(end + kThinkEnd.size())))};
}

ReasoningResult ReasoningStreamParser::push(std::string_view chunk) {
  buffer_.append(chunk);
  return drain(false);
}

ReasoningResult ReasoningStreamParser::finish() {
  ReasoningResult r = drain(true);
  if (in_reasoning_) {
    r.reasoning += reasoning_held_;
    reasoning_held_.clear();
  }
  return r;
}

ReasoningResult ReasoningStreamParser::drain(bool at_end) {
  ReasoningResult r;
  if (!in_reasoning_) {
    r.content = std::move(buffer_);
    buffer_.clear();
    return r;
  }
  if (!start_stripped_) {
    if (const size_t s = buffer_.find(kThinkStart); s != std::string::npos && s < buffer_.find(kThinkEnd)) {
      buffer_.erase(s, kThinkStart.size());
      start_stripped_ = true;
    }
  }
  if (const size_t e = buffer_.find(kThinkEnd); e != std::string::npos) {
    reasoning_held_ += buffer_.substr(0, e);
    // reasoning ends: drop its trailing whitespace, as SGLang's rstrip of the last piece
    const size_t keep = reasoning_held_.find_last_not_of(" \t\n\r\f\v");
    reasoning_held_.erase(keep == std::string::npos ? 0 : keep + 1);
    r.reasoning = std::move(reasoning_held_);
    reasoning_held_.clear();
    r.content = buffer_.substr(e + kThinkEnd.size());
    buffer_.clear();
    in_reasoning_ = false;
    start_stripped_ = true;
    return r;
  }
  // Hold back what may still become a tag.
  size_t hold = at_end ? 0 : partial_tag_suffix(buffer_, kThinkEnd);
  if (!at_end && !start_stripped_) hold = std::max(hold, partial_tag_suffix(buffer_, kThinkStart));
  reasoning_held_ += buffer_.substr(0, buffer_.size() - hold);
  buffer_.erase(0, buffer_.size() - hold);
  if (stream_reasoning_) {
    // Send all but trailing whitespace, which </think> may still strip.
    const size_t last = reasoning_held_.find_last_not_of(" \t\n\r\f\v");
    const size_t send = last == std::string::npos ? 0 : last + 1;
    r.reasoning = reasoning_held_.substr(0, send);
    reasoning_held_.erase(0, send);
  }
  return r;
}

}  // namespace dsserve::text
