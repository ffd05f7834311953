// Benchmark: single-threaded encode throughput (MB/s) of the C++ tokenizer on English prose and on
// code, next to the JS implementation @lenml/tokenizers on the same text in the same run, and the
// time to render a 20-turn conversation with the checkpoint's chat template.
// Usage: encode_bench TOKENIZER_DIR PROSE_FILE CODE_FILE [NODE_MODULES]
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "text/chat_template.h"
#include "text/tokenizer.h"

using dsserve::text::Tokenizer;
using Clock = std::chrono::steady_clock;

namespace {

std::string read_file(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    nl = nl == std::string::npos ? text.size() : nl + 1;
    lines.push_back(text.substr(pos, nl - pos));
    pos = nl;
  }
  return lines;
}

double cpp_mb_per_s(const Tokenizer& tok, const std::string& text, int reps, size_t& tokens) {
  const auto lines = split_lines(text);
  for (const auto& l : lines) tok.encode(l);  // warm-up, as the JS side does
  const auto t0 = Clock::now();
  tokens = 0;
  for (int r = 0; r < reps; ++r)
    for (const auto& l : lines) tokens += tok.encode(l).size();
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  tokens /= reps;
  return text.size() * static_cast<double>(reps) / 1e6 / s;
}

double js_mb_per_s(const std::string& node_modules, const std::string& file, int reps) {
  const std::string script = std::string(DSSERVE_SOURCE_DIR) + "/tests/text/js/lenml_encode.js";
  const std::string cmd = "node " + script + " " + node_modules + " --bench " + file + " " + std::to_string(reps) + " 2>/dev/null";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return -1;
  char buf[4096] = {};
  const size_t n = fread(buf, 1, sizeof buf - 1, p);
  const bool ok = pclose(p) == 0;
  const std::string out(buf, n);
  const size_t at = out.find("\"mb_per_s\":");
  return ok && at != std::string::npos ? std::stod(out.substr(at + 11)) : -1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s TOKENIZER_DIR PROSE_FILE CODE_FILE [NODE_MODULES]\n", argv[0]);
    return 2;
  }
  const Tokenizer tok = Tokenizer::load(argv[1]);
  const std::string node_modules = argc > 4 ? argv[4] : std::string(DSSERVE_SOURCE_DIR) + "/third_party/npm/node_modules";
  std::printf("%-8s %10s %10s %12s %12s %8s\n", "corpus", "MB", "tokens", "C++ MB/s", "JS MB/s", "ratio");
  for (int c = 2; c <= 3; ++c) {
    const std::string text = read_file(argv[c]);
    size_t tokens = 0;
    const int reps = 5;
    const double cpp = cpp_mb_per_s(tok, text, reps, tokens);
    const double js = js_mb_per_s(node_modules, argv[c], reps);
    std::printf("%-8s %10.2f %10zu %12.1f %12.2f %8s\n", c == 2 ? "prose" : "code", text.size() / 1e6, tokens, cpp, js,
                js > 0 ? (std::to_string(cpp / js).substr(0, 5) + "x").c_str() : "n/a");
  }

  // Chat template: a 20-turn conversation.
  const auto tmpl = dsserve::text::ChatTemplate::from_tokenizer(tok);
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  messages.push_back({{"role", "system"}, {"content", "You are a helpful assistant."}});
  for (int i = 0; i < 20; ++i)
    messages.push_back({{"role", i % 2 ? "assistant" : "user"}, {"content", "Turn " + std::to_string(i) + ": tell me more about byte-level BPE."}});
  const int reps = 2000;
  tmpl.render(messages, true);
  const auto t0 = Clock::now();
  for (int i = 0; i < reps; ++i) tmpl.render(messages, true);
  const double us = std::chrono::duration<double, std::micro>(Clock::now() - t0).count() / reps;
  std::printf("chat template, 20-turn conversation: %.1f us per render (target < 100 us)\n", us);
  return 0;
}
