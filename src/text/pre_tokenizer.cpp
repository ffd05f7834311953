// Split-step semantics of Hugging Face tokenizers' Split pre-tokenizer, on byte ranges (see
// pre_tokenizer.h).
#include "text/pre_tokenizer.h"

#include <nlohmann/json.hpp>

#include <algorithm>

#include "core/error.h"

namespace dsserve::text {
namespace {

// The GPT-2 pattern ByteLevel applies when its use_regex is true.
constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

SplitBehavior parse_behavior(const std::string& s, const std::string& where) {
  if (s == "Removed") return SplitBehavior::kRemoved;
  if (s == "Isolated") return SplitBehavior::kIsolated;
  if (s == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (s == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (s == "Contiguous") return SplitBehavior::kContiguous;
  fail("{}: Split behavior: expected Removed, Isolated, MergedWithPrevious, MergedWithNext or Contiguous, found '{}'",
       where, s);
}

void add_step(const nlohmann::json& step, const std::string& where, std::vector<SplitStep>& steps,
              bool& add_prefix_space) {
  if (!step.is_object() || !step.contains("type") || !step["type"].is_string())
    fail("{}: expected an object with a string \"type\", found {}", where, step.dump());
  const std::string type = step["type"];
  if (type == "Sequence") {
    if (!step.contains("pretokenizers") || !step["pretokenizers"].is_array())
      fail("{}: Sequence needs an array \"pretokenizers\"", where);
    for (size_t i = 0; i < step["pretokenizers"].size(); ++i)
      add_step(step["pretokenizers"][i], where + ".pretokenizers[" + std::to_string(i) + "]", steps, add_prefix_space);
  } else if (type == "Split") {
    const auto& pattern = step.at("pattern");
    bool literal;
    std::string text;
    if (pattern.contains("Regex")) {
      literal = false;
      text = pattern["Regex"].get<std::string>();
    } else if (pattern.contains("String")) {
      literal = true;
      text = pattern["String"].get<std::string>();
    } else {
      fail("{}.pattern: expected {{\"Regex\": ...}} or {{\"String\": ...}}, found {}", where, pattern.dump());
    }
    steps.push_back({UnicodeRegex(text, literal, where + ".pattern"),
                     parse_behavior(step.value("behavior", std::string("Isolated")), where + ".behavior"),
                     step.value("invert", false)});
  } else if (type == "ByteLevel") {
    if (step.value("add_prefix_space", false)) {
      if (!steps.empty()) fail("{}: ByteLevel add_prefix_space after other steps is not supported", where);
      add_prefix_space = true;
    }
    if (step.value("use_regex", true))
      steps.push_back({UnicodeRegex(kGpt2Pattern, false, where), SplitBehavior::kIsolated, false});
  } else {
    fail("{}: unsupported pre-tokenizer type '{}' (supported: Sequence, Split, ByteLevel)", where, type);
  }
}

// One Split step applied to one word: the pieces it yields, as in HF's NormalizedString::split.
void split_word(const SplitStep& step, std::string_view text, Word w, std::vector<Word>& out,
                std::vector<std::pair<size_t, size_t>>& scratch) {
  struct Piece {
    size_t b, e;
    bool is_match;
  };
  std::vector<Piece> pieces;
  step.regex.find_all(text.substr(w.begin, w.end - w.begin), scratch);
  size_t prev = 0;
  const size_t len = w.end - w.begin;
  for (auto [b, e] : scratch) {
    if (b != prev) pieces.push_back({prev, b, false});
    pieces.push_back({b, e, true});
    prev = e;
  }
  if (prev != len) pieces.push_back({prev, len, false});
  if (step.invert)
    for (auto& p : pieces) p.is_match = !p.is_match;

  std::vector<Piece> kept;
  switch (step.behavior) {
    case SplitBehavior::kIsolated:
      kept = pieces;
      break;
    case SplitBehavior::kRemoved:
      for (auto& p : pieces)
        if (!p.is_match) kept.push_back(p);
      break;
    case SplitBehavior::kMergedWithPrevious: {
      bool previous_match = false;
      for (auto& p : pieces) {
        if (p.is_match && !previous_match && !kept.empty()) kept.back().e = p.e;
        else kept.push_back(p);
        previous_match = p.is_match;
      }
      break;
    }
    case SplitBehavior::kMergedWithNext: {
      bool previous_match = false;
      for (size_t i = pieces.size(); i-- > 0;) {
        const Piece& p = pieces[i];
        if (p.is_match && !previous_match && !kept.empty()) kept.back().b = p.b;
        else kept.push_back(p);
        previous_match = p.is_match;
      }
      std::reverse(kept.begin(), kept.end());
      break;
    }
    case SplitBehavior::kContiguous: {
      bool previous_match = false;
      for (auto& p : pieces) {
        if (p.is_match == previous_match && !kept.empty()) kept.back().e = p.e;
        else kept.push_back(p);
        previous_match = p.is_match;
      }
      break;
    }
  }
  for (const auto& p : kept)
    if (p.e > p.b) out.push_back({w.begin + p.b, w.begin + p.e});
}

}  // namespace

PreTokenizer PreTokenizer::from_json(const nlohmann::json& spec, const std::string& where) {
  PreTokenizer pt;
  if (!spec.is_null()) add_step(spec, where, pt.steps_, pt.add_prefix_space_);
  return pt;
}

void PreTokenizer::split(std::string_view text, std::vector<Word>& out) const {
  const size_t first = out.size();
  out.push_back({0, text.size()});
  if (text.empty()) {
    out.pop_back();
    return;
  }
  std::vector<Word> current, next;
  std::vector<std::pair<size_t, size_t>> scratch;
  if (steps_.empty()) return;
  current.assign(out.begin() + static_cast<ptrdiff_t>(first), out.end());
  out.resize(first);
  for (size_t s = 0; s < steps_.size(); ++s) {
    next.clear();
    for (Word w : current) split_word(steps_[s], text, w, next, scratch);
    current.swap(next);
  }
  out.insert(out.end(), current.begin(), current.end());
}

}  // namespace dsserve::text
