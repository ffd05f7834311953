// Request -> grammar -> compiled grammar, with an LRU cache keyed by the request's text (see
// grammar_cache.h). Compilation runs outside the lock; two threads asking for the same new grammar
// at once may both compile it (the first to finish is kept).
#include "grammar/grammar_cache.h"

#include "grammar/ebnf.h"
#include "grammar/json_schema.h"
#include "grammar/regex.h"

namespace dsserve::grammar {

std::string GrammarRequest::cache_key() const {
  std::string k = std::to_string(int(kind)) + ":" + std::to_string(max_calls) + ":";
  k += text;
  for (const ToolSpec& t : tools) k += "\x1f" + t.name + "\x1e" + t.parameters.dump();
  return k;
}

Grammar build_grammar(const GrammarRequest& r) {
  Grammar g;
  switch (r.kind) {
    case GrammarRequest::Kind::JsonSchema: build_json_schema_grammar(g, r.text); break;
    case GrammarRequest::Kind::JsonObject: build_json_object_grammar(g); break;
    case GrammarRequest::Kind::Regex:
      g.root = g.declare_rule("root");
      g.define_rule(g.root, regex_to_expr(g, r.text));
      break;
    case GrammarRequest::Kind::Ebnf: parse_ebnf(g, r.text); break;
    case GrammarRequest::Kind::ToolCalls: build_tool_call_grammar(g, r.tools, r.max_calls); break;
  }
  return g;
}

std::shared_ptr<const CompiledGrammar> GrammarCache::get(const GrammarRequest& r, bool* hit) {
  const std::string key = r.cache_key();
  {
    std::lock_guard lk(mu_);
    auto it = index_.find(key);
    if (it != index_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second);
      if (hit) *hit = true;
      return it->second->second;
    }
  }
  if (hit) *hit = false;
  std::shared_ptr<const CompiledGrammar> cg = compile_grammar(build_grammar(r), vocab_);
  std::lock_guard lk(mu_);
  auto it = index_.find(key);
  if (it != index_.end()) return it->second->second;
  lru_.emplace_front(key, cg);
  index_[key] = lru_.begin();
  while (lru_.size() > max_entries_) {
    index_.erase(lru_.back().first);
    lru_.pop_back();
  }
  return cg;
}

size_t GrammarCache::size() const {
  std::lock_guard lk(mu_);
  return lru_.size();
}

}  // namespace dsserve::grammar
