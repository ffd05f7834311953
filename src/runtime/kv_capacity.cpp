// KV pool sizing from --mem-fraction-static (see kv_capacity.h).
#include "runtime/kv_capacity.h"

#include <cmath>

#include "core/error.h"

namespace dsserve {

KvCapacity kv_capacity_from_fraction(const KvCapacityInput& in) {
  DS_CHECK(in.mem_fraction_static > 0 && in.mem_fraction_static <= 1, "--mem-fraction-static must be in (0, 1], found {}",
           in.mem_fraction_static);
  DS_CHECK(in.bytes_per_token > 0 && in.page_size >= 1, "kv capacity: bytes per token and page size must be positive");
  KvCapacity c;
  c.budget_bytes = in.free_bytes - std::llround(double(in.total_bytes) * (1.0 - in.mem_fraction_static));
  const int64_t page_bytes = in.bytes_per_token * in.page_size;
  const int64_t pages = c.budget_bytes / page_bytes - in.reserved_pages;
  c.tokens = pages > 0 ? pages * in.page_size : 0;
  return c;
}

}  // namespace dsserve
