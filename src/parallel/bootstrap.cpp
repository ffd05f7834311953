// TCP rendezvous and framed channels (see bootstrap.h). Plain POSIX sockets with poll() deadlines.
#include "parallel/bootstrap.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/error.h"

namespace dsserve {

namespace {
using Clock = std::chrono::steady_clock;

double seconds_left(Clock::time_point deadline) {
  return std::chrono::duration<double>(deadline - Clock::now()).count();
}

// Waits until fd is readable (or writable); false on timeout.
bool wait_fd(int fd, short events, double timeout_s) {
  pollfd p{fd, events, 0};
  int ms = timeout_s <= 0 ? 0 : int(std::min(timeout_s, 1e6) * 1000) + 1;  // poll() waits at most ~11 days
  int r;
  do r = ::poll(&p, 1, ms);
  while (r < 0 && errno == EINTR);
  return r > 0;
}

void write_all(int fd, const char* p, size_t n, const std::string& peer) {
  while (n > 0) {
    ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    DS_CHECK(w > 0 || (errno != EAGAIN && errno != EWOULDBLOCK), "sending to {} failed: it read nothing within the "
             "time allowed", peer);
    DS_CHECK(w > 0, "sending to {} failed: {}", peer, std::strerror(errno));
    p += w;
    n -= size_t(w);
  }
}

void read_all(int fd, char* p, size_t n, Clock::time_point deadline, const std::string& peer) {
  while (n > 0) {
    DS_CHECK(wait_fd(fd, POLLIN, seconds_left(deadline)), "no message from {} within the time allowed", peer);
    ssize_t r = ::recv(fd, p, n, 0);
    if (r < 0 && errno == EINTR) continue;
    DS_CHECK(r > 0, "{} closed the connection{}", peer, r < 0 ? std::string(": ") + std::strerror(errno) : "");
    p += r;
    n -= size_t(r);
  }
}

int connect_once(const std::string& host, int port) {
  addrinfo hints{}, *res = nullptr;
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  if (::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res) != 0 || !res) return -1;
  int fd = -1;
  for (addrinfo* a = res; a && fd < 0; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype, a->ai_protocol);
    if (fd < 0) continue;
    if (::connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
      ::close(fd);
      fd = -1;
    }
  }
  ::freeaddrinfo(res);
  if (fd >= 0) {
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  return fd;
}

std::string ranks_list(const std::vector<int>& ranks) {
  std::string s;
  for (size_t i = 0; i < ranks.size(); ++i) s += (i ? ", " : "") + std::to_string(ranks[i]);
  return s;
}
}  // namespace

std::pair<std::string, int> parse_host_port(const std::string& addr) {
  size_t colon = addr.rfind(':');
  DS_CHECK(colon != std::string::npos && colon > 0 && colon + 1 < addr.size(),
           "--dist-init-addr: expected HOST:PORT, found '{}'", addr);
  std::string host = addr.substr(0, colon), port = addr.substr(colon + 1);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  int p = 0;
  try {
    size_t used = 0;
    p = std::stoi(port, &used);
    DS_CHECK(used == port.size(), "");
  } catch (...) {
    p = -1;
  }
  DS_CHECK(p >= 0 && p <= 65535, "--dist-init-addr: port '{}' is not a number in [0, 65535]", port);
  return {host, p};
}

Channel::~Channel() {
  if (fd_ >= 0) ::close(fd_);
}

void Channel::send(const std::string& bytes) {
  uint64_t n = bytes.size();
  char header[8];
  std::memcpy(header, &n, 8);
  write_all(fd_, header, 8, peer_);
  write_all(fd_, bytes.data(), bytes.size(), peer_);
}

void Channel::set_send_timeout(double timeout_s) {
  timeval tv{};
  tv.tv_sec = time_t(std::min(timeout_s, 1e6));
  tv.tv_usec = suseconds_t((timeout_s - double(tv.tv_sec)) * 1e6);
  ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

bool Channel::hung_up() {
  pollfd p{fd_, POLLRDHUP, 0};
  return ::poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

bool Channel::readable(double timeout_s) { return wait_fd(fd_, POLLIN, timeout_s); }

std::string Channel::receive(double timeout_s) {
  auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_s));
  char header[8];
  read_all(fd_, header, 8, deadline, peer_);
  uint64_t n;
  std::memcpy(&n, header, 8);
  DS_CHECK(n <= (uint64_t(1) << 32), "message of {} bytes from {} is beyond any batch description", n, peer_);
  std::string out(size_t(n), '\0');
  read_all(fd_, out.data(), out.size(), deadline, peer_);
  return out;
}

namespace {
Rendezvous as_node0(const BootstrapOptions& opt, const std::string& payload, const std::function<void(int)>& cb,
                    Clock::time_point deadline) {
  auto [host, port] = parse_host_port(opt.dist_init_addr);
  int lfd = ::socket(AF_INET, SOCK_STREAM, 0);
  DS_CHECK(lfd >= 0, "cannot open a socket: {}", std::strerror(errno));
  int one = 1;
  ::setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(uint16_t(port));
  if (::inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) addr.sin_addr.s_addr = htonl(INADDR_ANY);
  if (::bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(lfd, 64) != 0) {
    std::string why = std::strerror(errno);
    ::close(lfd);
    fail("node 0 cannot listen on --dist-init-addr {}: {}", opt.dist_init_addr, why);
  }
  socklen_t len = sizeof addr;
  ::getsockname(lfd, reinterpret_cast<sockaddr*>(&addr), &len);
  Rendezvous rv;
  rv.listen_port = ntohs(addr.sin_port);
  if (cb) cb(rv.listen_port);
  rv.peers.resize(size_t(opt.nnodes - 1));
  int joined = 0;
  try {
    while (joined < opt.nnodes - 1) {
      if (!wait_fd(lfd, POLLIN, seconds_left(deadline))) {
        std::vector<int> missing;
        for (int r = 1; r < opt.nnodes; ++r)
          if (!rv.peers[r - 1]) missing.push_back(r);
        fail("--dist-timeout of {} s passed with node rank{} {} of {} missing (node 0 listened on {}:{})",
             opt.dist_timeout_s, missing.size() > 1 ? "s" : "", ranks_list(missing), opt.nnodes, host,
             rv.listen_port);
      }
      sockaddr_storage from{};
      socklen_t flen = sizeof from;
      int fd = ::accept(lfd, reinterpret_cast<sockaddr*>(&from), &flen);
      if (fd < 0) continue;
      auto ch = std::make_unique<Channel>(fd, "a node connecting to node 0");
      nlohmann::json hello;
      try {
        hello = nlohmann::json::parse(ch->receive(std::max(1.0, seconds_left(deadline))));
      } catch (const std::exception& e) {
        continue;  // not one of ours (a port scan, a stray client): ignore it
      }
      int rank = hello.value("node_rank", -1);
      std::string problem;
      if (hello.value("nnodes", -1) != opt.nnodes)
        problem = fmt::format("--nnodes {} differs from node 0's {}", hello.value("nnodes", -1), opt.nnodes);
      else if (rank < 1 || rank >= opt.nnodes)
        problem = fmt::format("--node-rank {} is outside [1, {})", rank, opt.nnodes);
      else if (rv.peers[rank - 1])
        problem = fmt::format("node rank {} joined twice", rank);
      else if (hello.value("fingerprint", "") != opt.fingerprint)
        problem = fmt::format("its command differs from node 0's ({} vs {})", hello.value("fingerprint", ""),
                              opt.fingerprint);
      if (!problem.empty()) {
        ch->send(nlohmann::json{{"ok", false}, {"error", problem}}.dump());
        fail("node rank {} was refused: {}", rank, problem);
      }
      ch->set_peer("node rank " + std::to_string(rank));
      rv.peers[rank - 1] = std::move(ch);
      ++joined;
    }
    ::close(lfd);
  } catch (...) {
    ::close(lfd);
    throw;
  }
  for (auto& p : rv.peers) p->send(nlohmann::json{{"ok", true}, {"payload", payload}}.dump());
  rv.payload = payload;
  return rv;
}

Rendezvous as_peer(const BootstrapOptions& opt, Clock::time_point deadline) {
  auto [host, port] = parse_host_port(opt.dist_init_addr);
  int fd = -1;
  while (fd < 0) {
    fd = connect_once(host, port);
    if (fd >= 0) break;
    DS_CHECK(seconds_left(deadline) > 0, "node rank {}: node 0 at --dist-init-addr {} did not answer within "
             "--dist-timeout {} s", opt.node_rank, opt.dist_init_addr, opt.dist_timeout_s);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  Rendezvous rv;
  rv.to_node0 = std::make_unique<Channel>(fd, "node 0 (" + opt.dist_init_addr + ")");
  rv.to_node0->send(nlohmann::json{{"node_rank", opt.node_rank}, {"nnodes", opt.nnodes}, {"fingerprint", opt.fingerprint}}.dump());
  nlohmann::json reply;
  try {
    reply = nlohmann::json::parse(rv.to_node0->receive(std::max(0.1, seconds_left(deadline))));
  } catch (const nlohmann::json::exception&) {
    fail("node rank {}: node 0 answered something that is not a rendezvous reply", opt.node_rank);
  } catch (const Error& e) {
    fail("node rank {}: waiting for the other nodes through node 0 failed: {} (--dist-timeout {} s)", opt.node_rank,
         e.what(), opt.dist_timeout_s);
  }
  DS_CHECK(reply.value("ok", false), "node rank {}: node 0 refused it: {}", opt.node_rank, reply.value("error", "?"));
  rv.payload = reply.value("payload", "");
  return rv;
}
}  // namespace

Rendezvous rendezvous(const BootstrapOptions& opt, const std::string& payload, const std::function<void(int)>& cb) {
  DS_CHECK(opt.nnodes >= 1, "--nnodes must be at least 1, found {}", opt.nnodes);
  DS_CHECK(opt.node_rank >= 0 && opt.node_rank < opt.nnodes, "--node-rank {} is outside [0, {})", opt.node_rank,
           opt.nnodes);
  DS_CHECK(opt.dist_timeout_s > 0, "--dist-timeout must be positive, found {}", opt.dist_timeout_s);
  Rendezvous rv;
  if (opt.nnodes == 1) {
    rv.payload = payload;
    return rv;
  }
  DS_CHECK(!opt.dist_init_addr.empty(), "--nnodes {} needs --dist-init-addr HOST:PORT (node 0's address)", opt.nnodes);
  auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(opt.dist_timeout_s));
  return opt.node_rank == 0 ? as_node0(opt, payload, cb, deadline) : as_peer(opt, deadline);
}

}  // namespace dsserve
