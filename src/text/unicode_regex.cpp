// PCRE2 wrapper for the pre-tokenizer (see unicode_regex.h).
#define PCRE2_CODE_UNIT_WIDTH 8
#include "text/unicode_regex.h"

#include <pcre2.h>

#include <mutex>

#include "core/error.h"

namespace dsserve::text {
namespace {

// Oniguruma's \s is the White_Space property; PCRE2's UCP \s also takes U+180E. Rewrite so the two
// engines agree. Escaped backslashes are copied through untouched.
std::string onig_to_pcre2(const std::string& p) {
  std::string out;
  out.reserve(p.size() + 16);
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i] == '\\' && i + 1 < p.size()) {
      const char c = p[i + 1];
      if (c == 's') out += "\\p{White_Space}";
      else if (c == 'S') out += "\\P{White_Space}";
      else { out += p[i]; out += c; }
      ++i;
    } else {
      out += p[i];
    }
  }
  return out;
}

}  // namespace

struct UnicodeRegex::Impl {
  pcre2_code* code = nullptr;
  bool jit = false;
  // match data is per call site; a small pool avoids allocation on every find_all
  mutable std::mutex pool_mutex;
  mutable std::vector<pcre2_match_data*> pool;

  ~Impl() {
    for (auto* md : pool) pcre2_match_data_free(md);
    if (code) pcre2_code_free(code);
  }
  pcre2_match_data* take() const {
    {
      std::lock_guard lock(pool_mutex);
      if (!pool.empty()) {
        auto* md = pool.back();
        pool.pop_back();
        return md;
      }
    }
    return pcre2_match_data_create_from_pattern(code, nullptr);
  }
  void give(pcre2_match_data* md) const {
    std::lock_guard lock(pool_mutex);
    pool.push_back(md);
  }
};

UnicodeRegex::UnicodeRegex(const std::string& pattern, bool literal, const std::string& where)
    : impl_(std::make_unique<Impl>()) {
  const std::string p = literal ? pattern : onig_to_pcre2(pattern);
  uint32_t options = PCRE2_UTF | PCRE2_UCP | (literal ? PCRE2_LITERAL : 0);
  int err = 0;
  PCRE2_SIZE err_offset = 0;
  impl_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(p.data()), p.size(), options, &err, &err_offset, nullptr);
  if (!impl_->code) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    fail("{}: cannot compile regex '{}' at offset {}: {}", where, pattern, err_offset, reinterpret_cast<char*>(msg));
  }
  impl_->jit = pcre2_jit_compile(impl_->code, PCRE2_JIT_COMPLETE) == 0;
}

UnicodeRegex::~UnicodeRegex() = default;
UnicodeRegex::UnicodeRegex(UnicodeRegex&&) noexcept = default;
UnicodeRegex& UnicodeRegex::operator=(UnicodeRegex&&) noexcept = default;

void UnicodeRegex::find_all(std::string_view subject, std::vector<std::pair<size_t, size_t>>& matches) const {
  matches.clear();
  pcre2_match_data* md = impl_->take();
  const auto* s = reinterpret_cast<PCRE2_SPTR>(subject.data());
  size_t start = 0;
  while (start <= subject.size()) {
    const int rc = impl_->jit ? pcre2_jit_match(impl_->code, s, subject.size(), start, 0, md, nullptr)
                              : pcre2_match(impl_->code, s, subject.size(), start, PCRE2_NO_UTF_CHECK, md, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      impl_->give(md);
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(rc, msg, sizeof msg);
      fail("pre-tokenizer regex failed at byte {}: {}", start, reinterpret_cast<char*>(msg));
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    const size_t b = ov[0], e = ov[1];
    if (e > b) {
      matches.emplace_back(b, e);
      start = e;
    } else {  // empty match: dropped later anyway; step over one character
      if (b >= subject.size()) break;
      size_t step = 1;
      while (b + step < subject.size() && (static_cast<unsigned char>(subject[b + step]) & 0xC0) == 0x80) ++step;
      start = b + step;
    }
  }
  impl_->give(md);
}

}  // namespace dsserve::text
