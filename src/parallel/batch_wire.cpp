// ForwardBatch wire format (see batch_wire.h).
#include "parallel/batch_wire.h"

#include <cstring>

#include "core/error.h"

namespace dsserve {

namespace {
constexpr char kMagic[4] = {'D', 'S', 'F', 'B'};
constexpr int32_t kVersion = 1;

void put(std::string& out, int32_t v) { out.append(reinterpret_cast<const char*>(&v), 4); }

template <typename T>
void put_array(std::string& out, const std::vector<T>& v) {
  put(out, int32_t(v.size()));
  for (T x : v) put(out, int32_t(x));
}

struct Reader {
  const std::string& s;
  size_t pos = 0;
  int32_t get(const char* field) {
    DS_CHECK(pos + 4 <= s.size(), "batch description truncated in field {} (at byte {} of {})", field, pos, s.size());
    int32_t v;
    std::memcpy(&v, s.data() + pos, 4);
    pos += 4;
    return v;
  }
  template <typename T>
  std::vector<T> array(const char* field) {
    int32_t n = get(field);
    DS_CHECK(n >= 0 && size_t(n) <= (s.size() - pos) / 4, "batch description: field {} claims {} values, {} bytes remain",
             field, n, s.size() - pos);
    std::vector<T> v(static_cast<size_t>(n));
    for (auto& x : v) x = T(get(field));
    return v;
  }
};
}  // namespace

std::string encode_batch(const ForwardBatch& b) {
  std::string out(kMagic, 4);
  put(out, kVersion);
  put(out, int32_t(b.attention));
  put(out, b.max_pages);
  put(out, b.key_shift);
  put_array(out, b.input_ids);
  put_array(out, b.positions);
  put_array(out, b.query_start);
  put_array(out, b.prefix_lens);
  put_array(out, b.page_table);
  put_array(out, b.out_cache_slots);
  put_array(out, b.logit_rows);
  put_array(out, b.tree_mask);
  put_array(out, b.mask_cols);
  return out;
}

ForwardBatch decode_batch(const std::string& bytes) {
  DS_CHECK(bytes.size() >= 8 && std::memcmp(bytes.data(), kMagic, 4) == 0,
           "batch description: missing the DSFB magic ({} bytes)", bytes.size());
  Reader r{bytes, 4};
  int32_t version = r.get("version");
  DS_CHECK(version == kVersion, "batch description version {} (this build reads {})", version, kVersion);
  ForwardBatch b;
  int32_t mode = r.get("attention");
  DS_CHECK(mode == 0 || mode == 1, "batch description: attention mode {}", mode);
  b.attention = AttentionMode(mode);
  b.max_pages = r.get("max_pages");
  b.key_shift = r.get("key_shift");
  b.input_ids = r.array<int32_t>("input_ids");
  b.positions = r.array<int32_t>("positions");
  b.query_start = r.array<int32_t>("query_start");
  b.prefix_lens = r.array<int32_t>("prefix_lens");
  b.page_table = r.array<int32_t>("page_table");
  b.out_cache_slots = r.array<int32_t>("out_cache_slots");
  b.logit_rows = r.array<int32_t>("logit_rows");
  b.tree_mask = r.array<uint8_t>("tree_mask");
  b.mask_cols = r.array<int32_t>("mask_cols");
  DS_CHECK(r.pos == bytes.size(), "batch description: {} bytes after the last field", bytes.size() - r.pos);
  const size_t T = b.input_ids.size();
  DS_CHECK(!b.query_start.empty() && b.query_start.front() == 0 && size_t(b.query_start.back()) == T,
           "batch description: query_start does not span the {} tokens", T);
  const size_t B = b.query_start.size() - 1;
  DS_CHECK(b.positions.size() == T && b.out_cache_slots.size() == T, "batch description: {} tokens but {} positions "
           "and {} cache slots", T, b.positions.size(), b.out_cache_slots.size());
  DS_CHECK(b.prefix_lens.size() == B && b.page_table.size() == B * size_t(std::max(0, b.max_pages)),
           "batch description: {} sequences but {} prefix lengths and {} page-table entries ({} pages each)", B,
           b.prefix_lens.size(), b.page_table.size(), b.max_pages);
  for (int32_t row : b.logit_rows)
    DS_CHECK(row >= 0 && size_t(row) < T, "batch description: logit row {} of {} tokens", row, T);
  DS_CHECK(b.tree_mask.empty() == b.mask_cols.empty(), "batch description: tree_mask and mask_cols come together");
  return b;
}

}  // namespace dsserve
