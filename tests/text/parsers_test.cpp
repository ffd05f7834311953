// Reasoning (deepseek-r1) and tool-call (deepseekv3) parser tests: SGLang's non-streaming
// results, and streaming results that are identical for every chunking of the same text (one
// character at a time, every two-piece split, random chunk sizes).
#include <gtest/gtest.h>

#include <random>

#include "text/reasoning_parser.h"
#include "text/tool_call_parser.h"

namespace dsserve::text {
namespace {

// Chunkings of text: whole, one byte at a time, every split in two, and random sizes.
std::vector<std::vector<std::string>> chunkings(const std::string& text) {
  std::vector<std::vector<std::string>> all;
  all.push_back({text});
  std::vector<std::string> bytes;
  for (char c : text) bytes.emplace_back(1, c);
  all.push_back(bytes);
  for (size_t k = 1; k < text.size(); ++k) all.push_back({text.substr(0, k), text.substr(k)});
  std::mt19937 rng(42);
  for (int r = 0; r < 50; ++r) {
    std::vector<std::string> pieces;
    for (size_t p = 0; p < text.size();) {
      const size_t n = 1 + rng() % 12;
      pieces.push_back(text.substr(p, n));
      p += n;
    }
    all.push_back(pieces);
  }
  return all;
}

ReasoningResult stream_reasoning(const std::vector<std::string>& chunks, bool stream) {
  ReasoningStreamParser p(stream);
  ReasoningResult all;
  for (const auto& c : chunks) {
    auto r = p.push(c);
    all.reasoning += r.reasoning;
    all.content += r.content;
  }
  auto r = p.finish();
  all.reasoning += r.reasoning;
  all.content += r.content;
  return all;
}

struct ReasoningCase {
  std::string text, reasoning, content;  // non-streaming (SGLang detect_and_parse)
  std::string stream_reasoning, stream_content;
};

TEST(ReasoningParser, NonStreamingAndEveryChunking) {
  const std::vector<ReasoningCase> cases = {
      {"<think>\nLet me think.\n</think>\n\nThe answer is 4.", "Let me think.\n", "The answer is 4.", "\nLet me think.", "\n\nThe answer is 4."},
      {"Let me think.</think>Answer", "Let me think.", "Answer", "Let me think.", "Answer"},
      {"still thinking, no end tag", "still thinking, no end tag", "", "still thinking, no end tag", ""},
      {"</think>only content", "", "only content", "", "only content"},
      {"a < b </thin k> c </think>done </think> again", "a < b </thin k> c ", "done </think> again", "a < b </thin k> c", "done </think> again"},
      {"思考🚀 </think> 答案", "思考🚀 ", "答案", "思考🚀", " 答案"},
      {"", "", "", "", ""},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.text);
    const ReasoningResult whole = parse_reasoning(c.text);
    EXPECT_EQ(whole.reasoning, c.reasoning);
    EXPECT_EQ(whole.content, c.content);
    for (bool stream : {true, false}) {
      for (const auto& chunks : chunkings(c.text)) {
        const ReasoningResult s = stream_reasoning(chunks, stream);
        ASSERT_EQ(s.reasoning, c.stream_reasoning) << "chunks " << chunks.size() << " stream " << stream;
        ASSERT_EQ(s.content, c.stream_content) << "chunks " << chunks.size();
      }
    }
  }
}

TEST(ReasoningParser, StreamReasoningFalseBuffersUntilEndTagOrFinish) {
  ReasoningStreamParser p(false);
  EXPECT_EQ(p.push("abc").reasoning, "");
  EXPECT_EQ(p.push(" def</th").reasoning, "");
  auto r = p.push("ink>xyz");
  EXPECT_EQ(r.reasoning, "abc def");
  EXPECT_EQ(r.content, "xyz");

  ReasoningStreamParser q(false);
  EXPECT_EQ(q.push("never closed").reasoning, "");
  EXPECT_EQ(q.finish().reasoning, "never closed");
}

TEST(ReasoningParser, StreamingSendsReasoningEarly) {
  ReasoningStreamParser p(true);
  EXPECT_EQ(p.push("<think>step one").reasoning, "step one");
  auto r = p.push(" two</");
  EXPECT_EQ(r.reasoning, " two");
  r = p.push("think>ok");
  EXPECT_EQ(r.reasoning, "");
  EXPECT_EQ(r.content, "ok");
  EXPECT_FALSE(p.in_reasoning());
}

// ------------------------------------------------------------------ tool calls
std::string call(const std::string& name, const std::string& args) {
  return "<｜tool▁call▁begin｜>function<｜tool▁sep｜>" + name + "\n```json\n" + args + "\n```<｜tool▁call▁end｜>";
}
const std::string kBegin = "<｜tool▁calls▁begin｜>", kEnd = "<｜tool▁calls▁end｜>";

ToolCallIdMaker counter_ids() {
  auto n = std::make_shared<int>(0);
  return [n] { return "call_" + std::to_string((*n)++); };
}

TEST(ToolCallParser, NonStreamingExtractsCalls) {
  const std::string text = "Let me check. " + kBegin + call("get_weather", "{\"city\":\"Paris\", \"days\": 2.0}") + "\n" +
                           call("get_time", "{\"tz\": \"CET\"}") + kEnd;
  const ToolCallResult r = parse_tool_calls(text, {"get_weather", "get_time"}, counter_ids());
  EXPECT_EQ(r.content, "Let me check.");
  ASSERT_EQ(r.calls.size(), 2u);
  EXPECT_EQ(r.calls[0].name, "get_weather");
  EXPECT_EQ(r.calls[0].arguments, "{\"city\": \"Paris\", \"days\": 2.0}");  // json.dumps form
  EXPECT_EQ(r.calls[0].id, "call_0");
  EXPECT_EQ(r.calls[1].index, 1);
  EXPECT_EQ(r.calls[1].arguments, "{\"tz\": \"CET\"}");
}

TEST(ToolCallParser, RandomIdsLookLikeOpenAI) {
  const ToolCallResult r = parse_tool_calls(kBegin + call("f", "{}") + kEnd);
  ASSERT_EQ(r.calls.size(), 1u);
  EXPECT_EQ(r.calls[0].id.size(), 5u + 24u);
  EXPECT_EQ(r.calls[0].id.substr(0, 5), "call_");
}

TEST(ToolCallParser, MalformedCallsStayContent) {
  for (const std::string& bad : {kBegin + call("f", "{not json") + kEnd,
                                 kBegin + "<｜tool▁call▁begin｜>function f\n```json\n{}\n```<｜tool▁call▁end｜>" + kEnd,
                                 "pre " + kBegin + call("unknown_tool", "{}") + kEnd}) {
    const ToolCallResult r = parse_tool_calls(bad, {"f"});
    EXPECT_TRUE(r.calls.empty()) << bad;
    EXPECT_EQ(r.content, bad);
  }
  const ToolCallResult plain = parse_tool_calls("no calls here");
  EXPECT_EQ(plain.content, "no calls here");
}

ToolCallResult stream_tool_calls(const std::vector<std::string>& chunks, const std::vector<std::string>& tools,
                                 ToolCallFormat format = ToolCallFormat::DeepseekV3) {
  ToolCallStreamParser p(tools, counter_ids(), format);
  ToolCallResult all;
  auto add = [&](ToolCallDelta d) {
    all.content += d.content;
    for (auto& c : d.calls) {
      if (!c.name.empty()) {
        EXPECT_EQ(c.index, static_cast<int>(all.calls.size()));
        all.calls.push_back(c);
      } else {
        EXPECT_FALSE(all.calls.empty());
        EXPECT_EQ(c.index, all.calls.back().index);
        all.calls.back().arguments += c.arguments;
      }
    }
  };
  for (const auto& c : chunks) add(p.push(c));
  add(p.finish());
  return all;
}

TEST(ToolCallParser, StreamingEveryChunking) {
  struct Case {
    std::string text;
    std::string content;
    std::vector<std::pair<std::string, std::string>> calls;  // name, raw arguments
  };
  const std::vector<Case> cases = {
      {"Checking. " + kBegin + call("get_weather", "{\"city\": \"Paris\"}") + "\n" + call("get_time", "{\"tz\":\n \"CET\"}") + kEnd,
       "Checking. ", {{"get_weather", "{\"city\": \"Paris\"}"}, {"get_time", "{\"tz\":\n \"CET\"}"}}},
      {kBegin + call("f", "{\"s\": \"多语言 🚀 ```\"}") + kEnd + " trailing", " trailing", {{"f", "{\"s\": \"多语言 🚀 ```\"}"}}},
      {"just text with <｜tool fragments", "just text with <｜tool fragments", {}},
      {"x" + kBegin + "<｜tool▁call▁begin｜>function no separator<｜tool▁call▁end｜>" + kEnd,
       "x<｜tool▁call▁begin｜>function no separator<｜tool▁call▁end｜>" + kEnd, {}},
      {kBegin + call("unknown", "{}") + kEnd, call("unknown", "{}") + kEnd, {}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.text);
    for (const auto& chunks : chunkings(c.text)) {
      const ToolCallResult r = stream_tool_calls(chunks, {"get_weather", "get_time", "f"});
      ASSERT_EQ(r.content, c.content) << chunks.size() << " chunks";
      ASSERT_EQ(r.calls.size(), c.calls.size());
      for (size_t i = 0; i < c.calls.size(); ++i) {
        EXPECT_EQ(r.calls[i].name, c.calls[i].first);
        EXPECT_EQ(r.calls[i].arguments, c.calls[i].second);
        EXPECT_EQ(r.calls[i].id, "call_" + std::to_string(i));
      }
    }
  }
}

// --tool-call-parser deepseekv31: DeepSeek-V3.1's format (no type, no code fence), whole and
// streamed in every chunking.
TEST(ToolCallParser, DeepseekV31Format) {
  auto v31 = [](const std::string& name, const std::string& args) {
    return "<｜tool▁call▁begin｜>" + name + "<｜tool▁sep｜>" + args + "<｜tool▁call▁end｜>";
  };
  const std::string text = "Let me look." + kBegin + v31("get_weather", "{\"city\": \"Paris\"}") +
                           v31("get_time", "{\"tz\":\"CET\"}") + kEnd;
  ToolCallResult whole = parse_tool_calls(text, {"get_weather", "get_time"}, counter_ids(), ToolCallFormat::DeepseekV31);
  EXPECT_EQ(whole.content, "Let me look.");
  ASSERT_EQ(whole.calls.size(), 2u);
  EXPECT_EQ(whole.calls[0].name, "get_weather");
  EXPECT_EQ(whole.calls[0].arguments, "{\"city\": \"Paris\"}");
  EXPECT_EQ(whole.calls[1].arguments, "{\"tz\": \"CET\"}");  // re-serialized as json.dumps
  // The V3 parser does not read it (no "function" type and code fence): everything stays content.
  EXPECT_TRUE(parse_tool_calls(text, {"get_weather", "get_time"}, counter_ids()).calls.empty());
  for (const auto& chunks : chunkings(text)) {
    const ToolCallResult r = stream_tool_calls(chunks, {"get_weather", "get_time"}, ToolCallFormat::DeepseekV31);
    ASSERT_EQ(r.content, "Let me look.") << chunks.size() << " chunks";
    ASSERT_EQ(r.calls.size(), 2u);
    EXPECT_EQ(r.calls[0].name, "get_weather");
    EXPECT_EQ(r.calls[0].arguments, "{\"city\": \"Paris\"}");
    EXPECT_EQ(r.calls[1].name, "get_time");
    EXPECT_EQ(r.calls[1].arguments, "{\"tz\":\"CET\"}");
  }
  EXPECT_EQ(tool_call_format("deepseekv31"), ToolCallFormat::DeepseekV31);
  EXPECT_TRUE(tool_call_parser_known("deepseekv3"));
  EXPECT_FALSE(tool_call_parser_known("qwen25"));
}

// --reasoning-parser deepseek-v3 separates reasoning only when the request turns thinking on.
TEST(ReasoningParser, DeepseekV3NeedsThinking) {
  EXPECT_TRUE(reasoning_applies("deepseek-r1", false));
  EXPECT_FALSE(reasoning_applies("deepseek-v3", false));
  EXPECT_TRUE(reasoning_applies("deepseek-v3", true));
  EXPECT_FALSE(reasoning_applies("", true));
  EXPECT_TRUE(reasoning_parser_known("deepseek-v3"));
  EXPECT_FALSE(reasoning_parser_known("qwen3"));
}

}  // namespace
}  // namespace dsserve::text
