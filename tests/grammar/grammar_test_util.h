// Shared by the grammar tests: a small byte vocabulary, the DeepSeek-V3 vocabulary when the
// tokenizer is installed, compiling a grammar from text, and random walks through a matcher.
#pragma once
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "grammar/grammar_cache.h"
#include "grammar/matcher.h"

namespace dsserve::test {

// Every single byte plus a few hundred multi-byte pieces (JSON punctuation, words, digits).
std::shared_ptr<const grammar::Vocabulary> small_vocab();
// The DeepSeek-V3 vocabulary (special tokens empty); null when the tokenizer is not installed.
std::shared_ptr<const grammar::Vocabulary> deepseek_vocab();

std::shared_ptr<const grammar::CompiledGrammar> compile(const grammar::GrammarRequest& r,
                                                        std::shared_ptr<const grammar::Vocabulary> v);

// A random text of the grammar: tokens drawn uniformly from the mask, ending (when the grammar can
// end) with probability p_end per step; "" and ok=false when it reached max_tokens without ending.
std::string random_text(const std::shared_ptr<const grammar::CompiledGrammar>& g, std::mt19937& rng, int max_tokens,
                        double p_end, bool& ok);

}  // namespace dsserve::test
