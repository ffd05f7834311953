// Fuzzes the chat-template renderer: the DeepSeek-V3 template over messages, tools and extra
// variables read from the input as JSON (first byte 0), and the Jinja parser and interpreter over
// a template read from the input (first byte 1) with a fixed conversation. Errors are
// dsserve::Error; crashes and hangs are findings.
#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>

#include "common/test_paths.h"
#include "core/error.h"
#include "text/chat_template.h"
#include "text/tokenizer.h"

using namespace dsserve;
using ojson = nlohmann::ordered_json;

namespace {
// Small bounds, so that a template that loops to the bound fails well inside the fuzzer's timeout
// under the sanitizers (the bounds' errors are tested in tests/text/jinja_test.cpp).
constexpr text::jinja::RenderLimits kLimits{.max_iterations = 20'000, .max_output = size_t{1} << 20};
std::unique_ptr<text::Tokenizer> tok;
std::unique_ptr<text::ChatTemplate> deepseek;
}  // namespace

// The tokenizer loads once, before fuzzing (its seconds under the sanitizers count against no input).
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const std::string dir = test::npm_tokenizer_dir();
  if (dir.empty()) {
    fprintf(stderr, "fuzz_chat_template: the DeepSeek-V3 tokenizer is absent: run scripts/setup.sh\n");
    abort();
  }
  tok = std::make_unique<text::Tokenizer>(text::Tokenizer::load(dir));
  deepseek = std::make_unique<text::ChatTemplate>(text::ChatTemplate::from_tokenizer(*tok));
  deepseek->set_render_limits(kLimits);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  try {
    if (data[0] % 2 == 0) {
      ojson j = ojson::parse(rest, nullptr, /*allow_exceptions=*/false);
      if (j.is_discarded() || !j.is_object()) return 0;
      const ojson messages = j.value("messages", ojson::array());
      if (!messages.is_array()) return 0;
      deepseek->render(messages, j.value("add_generation_prompt", true) == true, j.value("tools", ojson(nullptr)),
                      j.value("extra", ojson(nullptr)));
    } else {
      text::ChatTemplate t(rest, "<s>", "</s>", "fuzz");
      t.set_render_limits(kLimits);
      const ojson messages = ojson::parse(R"([{"role": "system", "content": "s"}, {"role": "user", "content": "hi"},
                                              {"role": "assistant", "content": "a", "tool_calls": [{"type": "function",
                                              "function": {"name": "f", "arguments": "{}"}}]}])");
      t.render(messages, true);
    }
  } catch (const Error&) {
  } catch (const nlohmann::json::exception&) {  // the harness's own reads of the input JSON
  }
  return 0;
}
