// DeepSeek-V3 tool-call extraction, whole-text and streaming (see tool_call_parser.h).
#include "text/tool_call_parser.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <random>
#include <stdexcept>

#include "text/jinja/value.h"

namespace dsserve::text {
namespace {

constexpr std::string_view kCallsBegin = "<｜tool▁calls▁begin｜>";
constexpr std::string_view kCallsEnd = "<｜tool▁calls▁end｜>";
constexpr std::string_view kCallBegin = "<｜tool▁call▁begin｜>";
constexpr std::string_view kCallEnd = "<｜tool▁call▁end｜>";
constexpr std::string_view kSep = "<｜tool▁sep｜>";
constexpr std::string_view kArgsBegin = "\n```json\n";
constexpr std::string_view kArgsEnd = "\n```<｜tool▁call▁end｜>";

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

std::string_view strip(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

size_t partial_suffix(std::string_view s, std::string_view tag) {
  for (size_t k = std::min(s.size(), tag.size() - 1); k > 0; --k)
    if (s.substr(s.size() - k) == tag.substr(0, k)) return k;
  return 0;
}

bool offered(const std::vector<std::string>& names, const std::string& name) {
  return names.empty() || std::find(names.begin(), names.end(), name) != names.end();
}

// The arguments' JSON re-serialized as Python's json.dumps; false when it is not JSON.
bool json_arguments(std::string_view text, std::string& arguments) {
  try {
    arguments = jinja::Value::from_json(nlohmann::ordered_json::parse(text)).to_json();
  } catch (const std::exception&) {
    return false;
  }
  return true;
}

// V3.1: "<｜tool▁call▁begin｜>NAME<｜tool▁sep｜>ARGS<｜tool▁call▁end｜>" as SGLang's regex reads it.
bool parse_one_call_v31(std::string_view call, std::string& name, std::string& arguments) {
  if (call.substr(0, kCallBegin.size()) != kCallBegin || call.size() < kCallBegin.size() + kCallEnd.size() ||
      call.substr(call.size() - kCallEnd.size()) != kCallEnd)
    return false;
  const std::string_view body = call.substr(kCallBegin.size(), call.size() - kCallBegin.size() - kCallEnd.size());
  const size_t sep_at = body.find(kSep);
  if (sep_at == std::string_view::npos) return false;
  name = std::string(body.substr(0, sep_at));
  return json_arguments(body.substr(sep_at + kSep.size()), arguments);
}

// One "<｜tool▁call▁begin｜>TYPE<｜tool▁sep｜>NAME\n```json\nARGS\n```<｜tool▁call▁end｜>" as SGLang's
// greedy regex reads it; false when it does not match or ARGS is not JSON.
bool parse_one_call(std::string_view call, std::string& name, std::string& arguments) {
  if (call.substr(0, kCallBegin.size()) != kCallBegin || call.size() < kCallBegin.size() + kArgsEnd.size() ||
      call.substr(call.size() - kArgsEnd.size()) != kArgsEnd)
    return false;
  const std::string_view body = call.substr(kCallBegin.size(), call.size() - kCallBegin.size() - kArgsEnd.size());
  const size_t args_at = body.rfind(kArgsBegin);
  if (args_at == std::string_view::npos) return false;
  const std::string_view head = body.substr(0, args_at);
  const size_t sep_at = head.rfind(kSep);
  if (sep_at == std::string_view::npos) return false;
  name = std::string(head.substr(sep_at + kSep.size()));
  return json_arguments(body.substr(args_at + kArgsBegin.size()), arguments);
}

}  // namespace

ToolCallFormat tool_call_format(const std::string& parser) {
  if (parser == "deepseekv3") return ToolCallFormat::DeepseekV3;
  if (parser == "deepseekv31") return ToolCallFormat::DeepseekV31;
  throw std::invalid_argument("unknown tool-call parser '" + parser + "' (expected deepseekv3 or deepseekv31)");
}

bool tool_call_parser_known(const std::string& parser) { return parser == "deepseekv3" || parser == "deepseekv31"; }

std::string random_tool_call_id() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char* kHex = "0123456789abcdef";
  std::string id = "call_";
  for (int i = 0; i < 24; ++i) id += kHex[rng() % 16];
  return id;
}

ToolCallResult parse_tool_calls(std::string_view text, const std::vector<std::string>& tool_names,
                                const ToolCallIdMaker& make_id, ToolCallFormat format) {
  const size_t begin = text.find(kCallsBegin);
  if (begin == std::string_view::npos) return {std::string(text), {}};
  ToolCallResult r{std::string(strip(text.substr(0, begin))), {}};
  for (size_t pos = begin;;) {
    const size_t b = text.find(kCallBegin, pos);
    if (b == std::string_view::npos) break;
    const size_t e = text.find(kCallEnd, b);
    if (e == std::string_view::npos) break;
    ToolCall call;
    const std::string_view one = text.substr(b, e + kCallEnd.size() - b);
    const bool ok = format == ToolCallFormat::DeepseekV31 ? parse_one_call_v31(one, call.name, call.arguments)
                                                          : parse_one_call(one, call.name, call.arguments);
    if (!ok || !offered(tool_names, call.name))
      return {std::string(text), {}};  // malformed: keep everything as content
    call.index = static_cast<int>(r.calls.size());
    call.id = make_id();
    r.calls.push_back(std::move(call));
    pos = e + kCallEnd.size();
  }
  return r;
}

ToolCallDelta ToolCallStreamParser::push(std::string_view chunk) {
  buffer_.append(chunk);
  return drain(false);
}

ToolCallDelta ToolCallStreamParser::finish() { return drain(true); }

ToolCallDelta ToolCallStreamParser::drain(bool at_end) {
  ToolCallDelta d;
  while (true) {
    switch (state_) {
      case State::kContent: {
        const size_t b = buffer_.find(kCallsBegin);
        if (b != std::string::npos) {
          d.content += buffer_.substr(0, b);
          buffer_.erase(0, b + kCallsBegin.size());
          state_ = State::kBetweenCalls;
          continue;
        }
        const size_t hold = at_end ? 0 : partial_suffix(buffer_, kCallsBegin);
        d.content += buffer_.substr(0, buffer_.size() - hold);
        buffer_.erase(0, buffer_.size() - hold);
        return d;
      }
      case State::kBetweenCalls: {
        const size_t skip = std::find_if(buffer_.begin(), buffer_.end(), [](char c) { return !is_space(c); }) - buffer_.begin();
        const std::string_view rest = std::string_view(buffer_).substr(skip);
        if (rest.substr(0, kCallBegin.size()) == kCallBegin) {
          buffer_.erase(0, skip);
          state_ = State::kHeader;
          continue;
        }
        if (rest.substr(0, kCallsEnd.size()) == kCallsEnd) {
          buffer_.erase(0, skip + kCallsEnd.size());
          state_ = State::kAfterCalls;
          continue;
        }
        const bool may_be_tag = kCallBegin.substr(0, rest.size()) == rest || kCallsEnd.substr(0, rest.size()) == rest;
        if (may_be_tag && !at_end) return d;
        // neither a call nor the end of the calls: plain content from here on
        state_ = State::kAfterCalls;
        continue;
      }
      case State::kHeader: {
        if (format_ == ToolCallFormat::DeepseekV31) {  // "NAME<｜tool▁sep｜>", then the arguments
          const size_t sep = buffer_.find(kSep);
          const size_t end = buffer_.find(kCallEnd);
          if (sep == std::string::npos || (end != std::string::npos && end < sep)) {
            if (end == std::string::npos && !at_end) return d;
            state_ = State::kAfterCalls;
            continue;
          }
          std::string name = buffer_.substr(kCallBegin.size(), sep - kCallBegin.size());
          if (name.empty() || name.find('\n') != std::string::npos || !offered(tool_names_, name)) {
            state_ = State::kAfterCalls;
            continue;
          }
          d.calls.push_back({next_index_, make_id_(), std::move(name), ""});
          buffer_.erase(0, sep + kSep.size());
          state_ = State::kArguments;
          continue;
        }
        // buffer_ starts with kCallBegin; wait for "TYPE<｜tool▁sep｜>NAME\n```json\n"
        const size_t args = buffer_.find(kArgsBegin);
        const size_t end = buffer_.find(kCallEnd);
        if (args == std::string::npos || (end != std::string::npos && end < args)) {
          if (end == std::string::npos && !at_end) return d;
          state_ = State::kAfterCalls;  // malformed call: the rest is content
          continue;
        }
        const std::string_view head = std::string_view(buffer_).substr(kCallBegin.size(), args - kCallBegin.size());
        const size_t sep = head.find(kSep);
        std::string name = sep == std::string_view::npos ? "" : std::string(head.substr(sep + kSep.size()));
        if (sep == std::string_view::npos || name.empty() || name.find('\n') != std::string::npos ||
            !offered(tool_names_, name)) {
          state_ = State::kAfterCalls;
          continue;
        }
        d.calls.push_back({next_index_, make_id_(), std::move(name), ""});
        buffer_.erase(0, args + kArgsBegin.size());
        state_ = State::kArguments;
        continue;
      }
      case State::kArguments: {
        const std::string_view args_end = format_ == ToolCallFormat::DeepseekV31 ? kCallEnd : kArgsEnd;
        const size_t end = buffer_.find(args_end);
        std::string piece;
        if (end != std::string::npos) {
          piece = buffer_.substr(0, end);
          buffer_.erase(0, end + args_end.size());
          state_ = State::kBetweenCalls;
        } else {
          const size_t hold = at_end ? 0 : partial_suffix(buffer_, args_end);
          piece = buffer_.substr(0, buffer_.size() - hold);
          buffer_.erase(0, buffer_.size() - hold);
        }
        if (!piece.empty()) {
          if (!d.calls.empty() && d.calls.back().index == next_index_) d.calls.back().arguments += piece;
          else d.calls.push_back({next_index_, "", "", std::move(piece)});
        }
        if (state_ == State::kBetweenCalls) {
          ++next_index_;
          continue;
        }
        return d;
      }
      case State::kAfterCalls:
        d.content += buffer_;
        buffer_.clear();
        return d;
    }
  }
}

}  // namespace dsserve::text
