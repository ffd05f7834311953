// Multi-node rendezvous over TCP (--nnodes, --node-rank, --dist-init-addr, --dist-timeout), before
// any device is touched: node 0 listens, every other node connects (retrying until node 0 is up),
// introduces itself, and node 0 answers all of them with one payload (for example NCCL's unique id)
// once everyone has joined. A node that never joins is named after --dist-timeout; mismatched
// commands (another nnodes, another model) are refused with the reason. The connections stay open
// as the control channel over which node 0 sends each step's batch description.
#pragma once
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace dsserve {

struct BootstrapOptions {
  int nnodes = 1;
  int node_rank = 0;
  std::string dist_init_addr;    // HOST:PORT of node 0
  double dist_timeout_s = 600;   // bounds the whole rendezvous (SGLang's --dist-timeout)
  std::string fingerprint;       // what every node must agree on (model, layout); mismatch is refused
};

// A framed, bidirectional channel to one peer: messages are length-prefixed byte strings.
class Channel {
 public:
  explicit Channel(int fd, std::string peer) : fd_(fd), peer_(std::move(peer)) {}
  ~Channel();
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;
  void send(const std::string& bytes);
  // Throws naming the peer when nothing arrives within timeout_s or the peer went away.
  std::string receive(double timeout_s);
  // True when a message (or the peer's hang-up) is waiting; false after timeout_s of silence.
  bool readable(double timeout_s);
  // True once the peer has closed its end (its process ended); never consumes a message.
  bool hung_up();
  // Bounds each send: a peer that stops reading for timeout_s makes send throw naming it.
  void set_send_timeout(double timeout_s);
  const std::string& peer() const { return peer_; }
  void set_peer(std::string name) { peer_ = std::move(name); }

 private:
  int fd_;
  std::string peer_;
};

struct Rendezvous {
  std::string payload;                          // node 0's payload, as every node received it
  std::vector<std::unique_ptr<Channel>> peers;  // node 0: one per other node, by rank (index rank - 1)
  std::unique_ptr<Channel> to_node0;            // other nodes: the channel to node 0
  int listen_port = 0;                          // node 0: the port it listened on
};

// Runs the rendezvous. On node 0, `payload` is sent to everyone; other nodes pass "".
// `on_listening(port)` is called on node 0 once it listens (tests bind port 0 and learn the port).
Rendezvous rendezvous(const BootstrapOptions& opt, const std::string& payload,
                      const std::function<void(int)>& on_listening = {});

// "HOST:PORT" -> (host, port); throws naming --dist-init-addr.
std::pair<std::string, int> parse_host_port(const std::string& addr);

}  // namespace dsserve
