// The deepseek-r1 reasoning parser (SGLang --reasoning-parser deepseek-r1): everything up to the
// first </think> is reasoning, whether or not <think> was emitted (the R1 chat template opens it in
// the prompt); without </think> the whole text is reasoning. Non-streaming parse() follows SGLang's
// detect_and_parse exactly. The streaming parser gives the same deltas for every chunking of the
// same text: a tag split across chunks is recognised (a possible tag prefix is held back), the
// reasoning's trailing whitespace before </think> is dropped (held until non-space follows), and
// with stream_reasoning=false the reasoning is sent in one piece at </think> or at finish().
#pragma once
#include <string>
#include <string_view>

namespace dsserve::text {

struct ReasoningResult {
  std::string reasoning;
  std::string content;
};

// The --reasoning-parser names: deepseek-r1 (every output opens in reasoning), deepseek-v3
// (DeepSeek-V3.1: reasoning only when the request turns thinking on, chat_template_kwargs
// {"thinking": true}, and then as deepseek-r1).
bool reasoning_parser_known(const std::string& parser);
// Whether a request's output is separated into reasoning and content under `parser`.
bool reasoning_applies(const std::string& parser, bool thinking_requested);

// Whole-output parse (separate_reasoning=true, non-streaming).
ReasoningResult parse_reasoning(std::string_view text);

class ReasoningStreamParser {
 public:
  explicit ReasoningStreamParser(bool stream_reasoning = true) : stream_reasoning_(stream_reasoning) {}

  // Adds a chunk of generated text; returns the reasoning and content deltas now final.
  ReasoningResult push(std::string_view chunk);
  // End of stream: returns everything still held back.
  ReasoningResult finish();
  bool in_reasoning() const { return in_reasoning_; }

 private:
  ReasoningResult drain(bool at_end);

  bool stream_reasoning_;
  bool in_reasoning_ = true;
  bool start_stripped_ = false;
  std::string buffer_;            // text not yet classified
  std::string reasoning_held_;    // reasoning not yet sent (whitespace tail, or all when !stream_reasoning)
};

}  // namespace dsserve::text
