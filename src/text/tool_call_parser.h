// The DeepSeek-V3 tool-call parser (SGLang --tool-call-parser deepseekv3). The model writes
//   <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\n```json\nARGS\n```<｜tool▁call▁end｜>
//   ...<｜tool▁calls▁end｜>
// and the server returns OpenAI tool_calls {id, type: "function", function: {name, arguments}}
// with arguments a JSON string. Non-streaming follows SGLang's detect_and_parse: content is the
// text before the calls (stripped); arguments are re-serialized as Python's json.dumps; if any call
// is malformed (or names a tool not offered) the whole text stays plain content. Streaming sends
// content until the calls begin, then per call one delta with id and name and the raw argument
// text as further deltas; a call whose header is malformed goes out as plain content.
#pragma once
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace dsserve::text {

struct ToolCall {
  int index = 0;
  std::string id;  // "call_" + 24 hex digits
  std::string name;
  std::string arguments;  // JSON text
};

struct ToolCallResult {
  std::string content;
  std::vector<ToolCall> calls;
};

// A streaming delta: content text and/or pieces of calls (a piece with a non-empty name starts a
// call; later pieces of the same index carry argument text only).
struct ToolCallDelta {
  std::string content;
  std::vector<ToolCall> calls;
};

// Makes call ids; the default draws random hex.
using ToolCallIdMaker = std::function<std::string()>;
std::string random_tool_call_id();

// tool_names: the request's tools (empty: accept any name).
ToolCallResult parse_tool_calls(std::string_view text, const std::vector<std::string>& tool_names = {},
                                const ToolCallIdMaker& make_id = random_tool_call_id);

class ToolCallStreamParser {
 public:
  explicit ToolCallStreamParser(std::vector<std::string> tool_names = {}, ToolCallIdMaker make_id = random_tool_call_id)
      : tool_names_(std::move(tool_names)), make_id_(std::move(make_id)) {}

  ToolCallDelta push(std::string_view chunk);
  ToolCallDelta finish();

 private:
  ToolCallDelta drain(bool at_end);

  enum class State { kContent, kBetweenCalls, kHeader, kArguments, kAfterCalls };
  std::vector<std::string> tool_names_;
  ToolCallIdMaker make_id_;
  State state_ = State::kContent;
  std::string buffer_;
  int next_index_ = 0;
};

}  // namespace dsserve::text
