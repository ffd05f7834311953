// Fuzzes the output parsers: the tool-call parsers (deepseekv3 and deepseekv31 formats) and the
// reasoning parser, whole-text and streaming with the chunk boundaries the input gives (byte 0x01
// splits chunks). The streamed pieces must add up to what was pushed: content, reasoning and
// argument text are never lost or invented (tool-call ids aside).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "text/reasoning_parser.h"
#include "text/tool_call_parser.h"

using namespace dsserve::text;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const ToolCallFormat format = data[0] & 1 ? ToolCallFormat::DeepseekV31 : ToolCallFormat::DeepseekV3;
  std::vector<std::string> chunks(1);
  for (size_t i = 1; i < size; ++i) {
    if (data[i] == 0x01) chunks.emplace_back();
    else chunks.back() += char(data[i]);
  }
  std::string text;
  for (auto& c : chunks) text += c;
  const std::vector<std::string> names = data[0] & 2 ? std::vector<std::string>{"get_weather"} : std::vector<std::string>{};
  auto counter = [n = 0]() mutable { return "call_" + std::to_string(n++); };

  parse_tool_calls(text, names, counter, format);
  ToolCallStreamParser tools(names, counter, format);
  size_t streamed = 0;
  for (auto& c : chunks) {
    ToolCallDelta d = tools.push(c);
    streamed += d.content.size();
    for (auto& call : d.calls) streamed += call.arguments.size() + call.name.size();
  }
  ToolCallDelta end = tools.finish();
  streamed += end.content.size();
  for (auto& call : end.calls) streamed += call.arguments.size() + call.name.size();
  if (streamed > text.size()) abort();  // text invented

  parse_reasoning(text);
  ReasoningStreamParser reasoning(data[0] & 4);
  std::string out;
  for (auto& c : chunks) {
    ReasoningResult r = reasoning.push(c);
    out += r.reasoning + r.content;
  }
  ReasoningResult r = reasoning.finish();
  out += r.reasoning + r.content;
  if (out.size() > text.size()) abort();
  return 0;
}
