// Request ids (see server_context.h).
#include "server/server_context.h"

#include <fmt/format.h>

#include <chrono>
#include <random>

namespace dsserve::server {

std::string ServerContext::new_id(const std::string& prefix) {
  static const uint64_t salt = [] {
    std::random_device rd;
    return (uint64_t(rd()) << 32) ^ rd() ^ uint64_t(std::chrono::steady_clock::now().time_since_epoch().count());
  }();
  uint64_t n = next_id.fetch_add(1);
  uint64_t h = (n + salt) * 0x9E3779B97F4A7C15ull;
  return fmt::format("{}{:016x}{:08x}", prefix, h ^ (h >> 29), uint32_t(n));
}

}  // namespace dsserve::server
