// The DeepSeek tool-call parsers (SGLang --tool-call-parser deepseekv3 and deepseekv31). V3 writes
//   <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\n```json\nARGS\n```<｜tool▁call▁end｜>
//   ...<｜tool▁calls▁end｜>
// and V3.1 <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>NAME<｜tool▁sep｜>ARGS<｜tool▁call▁end｜>...<｜tool▁calls▁end｜>
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

enum class ToolCallFormat { DeepseekV3, DeepseekV31 };
// The format of a --tool-call-parser name (deepseekv3, deepseekv31); Error for another name.
ToolCallFormat tool_call_format(const std::string& parser);
bool tool_call_parser_known(const std::string& parser);

// Makes call ids; the default draws random hex.
using ToolCallIdMaker = std::function<std::string()>;
std::string random_tool_call_id();

// tool_names: the request's tools (empty: accept any name).
ToolCallResult parse_tool_calls(std::string_view text, const std::vector<std::string>& tool_names = {},
                                const ToolCallIdMaker& make_id = random_tool_call_id,
                                ToolCallFormat format = ToolCallFormat::DeepseekV3);

class ToolCallStreamParser {
 public:
  explicit ToolCallStreamParser(std::vector<std::string> tool_names = {}, ToolCallIdMaker make_id = random_tool_call_id,
                                ToolCallFormat format = ToolCallFormat::DeepseekV3)
      : tool_names_(std::move(tool_names)), make_id_(std::move(make_id)), format_(format) {}

  ToolCallDelta push(std::string_view chunk);
  ToolCallDelta finish();

 private:
  ToolCallDelta drain(bool at_end);

  enum class State { kContent, kBetweenCalls, kHeader, kArguments, kAfterCalls };
  std::vector<std::string> tool_names_;
  ToolCallIdMaker make_id_;
  ToolCallFormat format_;
  State state_ = State::kContent;
  std::string buffer_;
  int next_index_ = 0;
};

}  // namespace dsserve::text
