// The front door of the grammar module: what a request asks for (a JSON schema, any JSON object,
// a regex, an EBNF grammar, tool calls), compiled once per distinct request text and kept in a
// bounded cache shared by all requests. Thread-safe.
#pragma once
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "grammar/compiled_grammar.h"
#include "grammar/tool_calls.h"

namespace dsserve::grammar {

struct GrammarRequest {
  enum class Kind { JsonSchema, JsonObject, Regex, Ebnf, ToolCalls };
  Kind kind = Kind::JsonObject;
  std::string text;              // the schema (JSON text), regex or EBNF
  std::vector<ToolSpec> tools;   // ToolCalls
  int max_calls = 1;             // ToolCalls

  std::string cache_key() const;
};

// The grammar a request describes (throws GrammarError).
Grammar build_grammar(const GrammarRequest& r);

class GrammarCache {
 public:
  GrammarCache(std::shared_ptr<const Vocabulary> vocab, size_t max_entries = 256)
      : vocab_(std::move(vocab)), max_entries_(max_entries) {}

  // The compiled grammar, from the cache or compiled now (throws GrammarError). `hit` says which.
  std::shared_ptr<const CompiledGrammar> get(const GrammarRequest& r, bool* hit = nullptr);
  const std::shared_ptr<const Vocabulary>& vocab() const { return vocab_; }
  size_t size() const;

 private:
  std::shared_ptr<const Vocabulary> vocab_;
  size_t max_entries_;
  mutable std::mutex mu_;
  std::list<std::pair<std::string, std::shared_ptr<const CompiledGrammar>>> lru_;  // most recent first
  std::unordered_map<std::string, decltype(lru_)::iterator> index_;
};

}  // namespace dsserve::grammar
