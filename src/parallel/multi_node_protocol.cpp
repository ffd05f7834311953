// Command and reply wire format between nodes (see multi_node_protocol.h).
#include "parallel/multi_node_protocol.h"

#include <cstring>

#include "core/error.h"
#include "parallel/batch_wire.h"

namespace dsserve {

namespace {
constexpr char kCommandMagic[4] = {'D', 'S', 'N', 'C'};
constexpr char kReplyMagic[4] = {'D', 'S', 'N', 'R'};
constexpr int32_t kVersion = 2;

template <typename T>
void put(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof v);
}

struct Reader {
  const std::string& s;
  size_t pos;
  template <typename T>
  T get(const char* field) {
    DS_CHECK(pos + sizeof(T) <= s.size(), "node command truncated in field {} (at byte {} of {})", field, pos, s.size());
    T v;
    std::memcpy(&v, s.data() + pos, sizeof v);
    pos += sizeof v;
    return v;
  }
};

void check_magic(const std::string& bytes, const char* magic, const char* what) {
  DS_CHECK(bytes.size() >= 8 && std::memcmp(bytes.data(), magic, 4) == 0, "{}: missing the {} magic ({} bytes)",
           what, std::string(magic, 4), bytes.size());
  int32_t version;
  std::memcpy(&version, bytes.data() + 4, 4);
  DS_CHECK(version == kVersion, "{} version {} (this build reads {}): run the same dsserve on every node", what,
           version, kVersion);
}
}  // namespace

const char* command_name(NodeCommandKind k) {
  switch (k) {
    case NodeCommandKind::AllocateCache: return "allocate-cache";
    case NodeCommandKind::CaptureDecodeGraphs: return "capture-decode-graphs";
    case NodeCommandKind::Forward: return "forward";
    case NodeCommandKind::Shutdown: return "shutdown";
  }
  return "unknown";
}

NodeCommand command_of(NodeCommandKind k) {
  NodeCommand c;
  c.kind = k;
  return c;
}

std::string encode_command(const NodeCommand& c) {
  std::string out(kCommandMagic, 4);
  put(out, kVersion);
  put(out, int32_t(c.kind));
  switch (c.kind) {
    case NodeCommandKind::AllocateCache:
      put(out, c.num_pages);
      put(out, c.page_size);
      put(out, c.cache_dtype ? int32_t(*c.cache_dtype) : int32_t(-1));
      break;
    case NodeCommandKind::CaptureDecodeGraphs:
      put(out, c.trash_slot);
      put(out, int32_t(c.batch_sizes.size()));
      for (int32_t b : c.batch_sizes) put(out, b);
      break;
    case NodeCommandKind::Forward: out += encode_batch(c.batch); break;
    case NodeCommandKind::Shutdown: break;
  }
  return out;
}

NodeCommand decode_command(const std::string& bytes) {
  check_magic(bytes, kCommandMagic, "node command");
  Reader r{bytes, 8};
  NodeCommand c;
  const int32_t kind = r.get<int32_t>("kind");
  DS_CHECK(kind >= 1 && kind <= 4, "node command: unknown kind {} (expected 1..4)", kind);
  c.kind = NodeCommandKind(kind);
  switch (c.kind) {
    case NodeCommandKind::AllocateCache:
      c.num_pages = r.get<int64_t>("num_pages");
      c.page_size = r.get<int32_t>("page_size");
      DS_CHECK(c.num_pages >= 1 && c.page_size >= 1, "node command allocate-cache: {} pages of {} tokens", c.num_pages,
               c.page_size);
      if (const int32_t d = r.get<int32_t>("cache_dtype"); d >= 0) {
        DS_CHECK(d <= int32_t(DType::BOOL), "node command allocate-cache: field cache_dtype {} is not a dtype", d);
        c.cache_dtype = DType(d);
      }
      break;
    case NodeCommandKind::CaptureDecodeGraphs: {
      c.trash_slot = r.get<int32_t>("trash_slot");
      const int32_t n = r.get<int32_t>("batch_sizes");
      DS_CHECK(n >= 0 && size_t(n) <= (bytes.size() - r.pos) / 4,
               "node command capture-decode-graphs: field batch_sizes claims {} values, {} bytes remain", n, bytes.size() - r.pos);
      for (int32_t i = 0; i < n; ++i) c.batch_sizes.push_back(r.get<int32_t>("batch_sizes"));
      break;
    }
    case NodeCommandKind::Forward:
      c.batch = decode_batch(bytes.substr(r.pos));
      r.pos = bytes.size();
      break;
    case NodeCommandKind::Shutdown: break;
  }
  DS_CHECK(r.pos == bytes.size(), "node command {}: {} bytes after the last field", command_name(c.kind),
           bytes.size() - r.pos);
  return c;
}

std::string encode_reply(const NodeReply& rep) {
  std::string out(kReplyMagic, 4);
  put(out, kVersion);
  put(out, int32_t(rep.ok ? 1 : 0));
  out += rep.error;
  return out;
}

NodeReply decode_reply(const std::string& bytes) {
  check_magic(bytes, kReplyMagic, "node reply");
  Reader r{bytes, 8};
  const int32_t ok = r.get<int32_t>("ok");
  DS_CHECK(ok == 0 || ok == 1, "node reply: ok is {} (expected 0 or 1)", ok);
  return {ok == 1, bytes.substr(r.pos)};
}

}  // namespace dsserve
