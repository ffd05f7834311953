// A request's grammar constraint with the reasoning phase (see grammar_constraint.h).
#include "server/grammar_constraint.h"

#include <map>
#include <mutex>
#include <string_view>

namespace dsserve::server {

namespace {

constexpr std::string_view kThinkEnd = "</think>";

const std::vector<int32_t>& closing_tokens(const grammar::Vocabulary& v) {
  static std::mutex mu;
  static std::map<uint64_t, std::vector<int32_t>> by_vocab;
  std::lock_guard lk(mu);
  auto [it, fresh] = by_vocab.try_emplace(v.fingerprint());
  if (fresh)
    for (int32_t t = 0; t < v.size(); ++t)
      if (v.bytes(t).find('>') != std::string::npos) it->second.push_back(t);
  return it->second;
}

std::string_view after_space(std::string_view s) {
  while (!s.empty() && (s[0] == ' ' || s[0] == '\n' || s[0] == '\t' || s[0] == '\r')) s.remove_prefix(1);
  return s;
}

}  // namespace

GrammarConstraint::GrammarConstraint(std::shared_ptr<const grammar::CompiledGrammar> g, bool after_think)
    : m_(std::move(g)), thinking_(after_think) {
  if (thinking_) closers_ = &closing_tokens(*m_.grammar().vocab);
}

size_t GrammarConstraint::scan_tag(std::string_view bytes, int& matched) {
  for (size_t i = 0; i < bytes.size(); ++i) {
    if (bytes[i] == kThinkEnd[size_t(matched)]) ++matched;
    else matched = bytes[i] == kThinkEnd[0] ? 1 : 0;
    if (matched == int(kThinkEnd.size())) return i + 1;
  }
  return std::string_view::npos;
}

bool GrammarConstraint::fill_next_tokens(std::span<uint32_t> allowed) {
  if (!thinking_) {
    m_.fill_next_token_bitmask(allowed);
    return true;
  }
  // Free, except tokens that would close the reasoning with bytes the grammar cannot start with.
  const grammar::Vocabulary& v = *m_.grammar().vocab;
  std::vector<int32_t> refused;
  for (int32_t t : *closers_) {
    int matched = matched_;
    const std::string& b = v.bytes(t);
    const size_t end = scan_tag(b, matched);
    if (end == std::string_view::npos) continue;
    const std::string_view rest = after_space(std::string_view(b).substr(end));
    if (rest.empty()) continue;
    if (m_.accept_bytes(rest)) m_.rollback(1);
    else refused.push_back(t);
  }
  if (refused.empty()) return false;
  std::fill(allowed.begin(), allowed.end(), ~uint32_t(0));
  for (int32_t t : refused) allowed[size_t(t) >> 5] &= ~(1u << (t & 31));
  return true;
}

bool GrammarConstraint::accept(int32_t token) {
  const Before before{thinking_, matched_, m_.accepted_count()};
  if (!thinking_) {
    if (!m_.accept_token(token)) return false;
    history_.push_back(before);
    return true;
  }
  if (token >= 0 && token < m_.grammar().vocab->size()) {
    const std::string& b = m_.grammar().vocab->bytes(token);
    const size_t end = scan_tag(b, matched_);
    if (end != std::string_view::npos) {
      thinking_ = false;
      const std::string_view rest = after_space(std::string_view(b).substr(end));
      if (!rest.empty() && !m_.accept_bytes(rest)) {
        thinking_ = before.thinking, matched_ = before.matched;
        return false;
      }
    }
  }
  history_.push_back(before);
  return true;
}

void GrammarConstraint::rollback(int tokens) {
  for (int i = 0; i < tokens && !history_.empty(); ++i) {
    const Before b = history_.back();
    history_.pop_back();
    thinking_ = b.thinking;
    matched_ = b.matched;
    m_.rollback(m_.accepted_count() - b.matcher_steps);
  }
}

}  // namespace dsserve::server
