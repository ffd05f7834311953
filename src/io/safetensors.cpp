// Safetensors reading (mmap, header validation, zero-copy views), sharded checkpoints and writing
// (see safetensors.h). It does not convert dtypes or copy tensor data when reading.
#include "io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace dsserve {

namespace {

constexpr const char* kIndexName = "model.safetensors.index.json";
constexpr const char* kReferenceName = "reference.safetensors";  // golden outputs, not weights

uint64_t read_u64_le(const unsigned char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// A short rendering of a JSON value for error messages.
std::string brief(const json& v) {
  std::string s = v.dump();
  return s.size() > 60 ? s.substr(0, 57) + "..." : s;
}

bool is_uint(const json& v) { return v.is_number_unsigned() || (v.is_number_integer() && v.get<int64_t>() >= 0); }

// Parses `shape` of tensor `name`: an array of at most kMaxDims non-negative integers.
Shape parse_shape(const json& v, const std::string& file, const std::string& name) {
  DS_CHECK(v.is_array(), "{}: tensor '{}': shape must be an array of integers, found {}", file, name, brief(v));
  DS_CHECK(v.size() <= size_t(kMaxDims), "{}: tensor '{}': rank {} exceeds the supported maximum {} (shape {})",
           file, name, v.size(), kMaxDims, brief(v));
  Shape s;
  for (const json& d : v) {
    DS_CHECK(is_uint(d) && d.get<uint64_t>() <= uint64_t(INT64_MAX),
             "{}: tensor '{}': shape entries must be non-negative integers, found {}", file, name, brief(v));
    s.d[s.ndim++] = d.get<int64_t>();
  }
  return s;
}

// Bytes the tensor must occupy: dtype size x product of shape, checked for overflow.
uint64_t expected_bytes(DType dtype, const Shape& s, const std::string& file, const std::string& name) {
  uint64_t n = dtype_size(dtype);
  for (int i = 0; i < s.ndim; ++i)
    DS_CHECK(!__builtin_mul_overflow(n, uint64_t(s.d[i]), &n), "{}: tensor '{}': shape {} is too large", file,
             name, s.str());
  return n;
}

const json& require(const json& entry, const char* key, const std::string& file, const std::string& name) {
  auto it = entry.find(key);
  DS_CHECK(it != entry.end(), "{}: tensor '{}': header entry has no '{}' field", file, name, key);
  return *it;
}

// Validates one header entry and returns its TensorInfo; data_start is the file offset of the data.
TensorInfo parse_entry(const std::string& file, const std::string& name, const json& entry, uint64_t data_start,
                       uint64_t data_bytes) {
  DS_CHECK(entry.is_object(), "{}: tensor '{}': header entry must be an object, found {}", file, name,
           brief(entry));
  TensorInfo info{name, file, DType::F32, {}, 0, 0};
  const json& dt = require(entry, "dtype", file, name);
  DS_CHECK(dt.is_string(), "{}: tensor '{}': dtype must be a string, found {}", file, name, brief(dt));
  DS_CHECK(parse_dtype(dt.get<std::string>(), &info.dtype),
           "{}: tensor '{}': unknown dtype '{}' (expected BF16, F16, F32, F8_E4M3, F8_E5M2, I8, I32, I64, U8 or BOOL)",
           file, name, dt.get<std::string>());
  info.shape = parse_shape(require(entry, "shape", file, name), file, name);
  const json& off = require(entry, "data_offsets", file, name);
  DS_CHECK(off.is_array() && off.size() == 2 && is_uint(off[0]) && is_uint(off[1]),
           "{}: tensor '{}': data_offsets must be [begin, end] non-negative integers, found {}", file, name,
           brief(off));
  uint64_t begin = off[0].get<uint64_t>(), end = off[1].get<uint64_t>();
  DS_CHECK(begin <= end, "{}: tensor '{}': data_offsets [{}, {}] have begin > end", file, name, begin, end);
  DS_CHECK(end <= data_bytes, "{}: tensor '{}': data_offsets [{}, {}] outside the data section of {} bytes", file,
           name, begin, end, data_bytes);
  uint64_t want = expected_bytes(info.dtype, info.shape, file, name);
  DS_CHECK(end - begin == want, "{}: tensor '{}': data_offsets span {} bytes but {} {} needs {} bytes", file, name,
           end - begin, dtype_name(info.dtype), info.shape.str(), want);
  info.data_offset = size_t(data_start + begin);
  info.nbytes = size_t(want);
  return info;
}

std::map<std::string, std::string> parse_metadata(const json& v, const std::string& file) {
  DS_CHECK(v.is_object(), "{}: __metadata__ must be an object of strings, found {}", file, brief(v));
  std::map<std::string, std::string> out;
  for (auto& [k, s] : v.items()) {
    DS_CHECK(s.is_string(), "{}: __metadata__ value of '{}' must be a string, found {}", file, k, brief(s));
    out[k] = s.get<std::string>();
  }
  return out;
}

// Maps `path` read-only; returns the mapping (released when the last holder drops it) and its size.
std::shared_ptr<void> map_file(const std::string& path, size_t* bytes) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  DS_CHECK(fd >= 0, "{}: cannot open: {}", path, std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail("{}: not a regular file", path);
  }
  *bytes = size_t(st.st_size);
  if (*bytes == 0) {
    ::close(fd);
    fail("{}: empty file (0 bytes): not a safetensors file", path);
  }
  void* p = ::mmap(nullptr, *bytes, PROT_READ, MAP_PRIVATE, fd, 0);
  int err = errno;
  ::close(fd);
  DS_CHECK(p != MAP_FAILED, "{}: mmap of {} bytes failed: {}", path, *bytes, std::strerror(err));
  size_t n = *bytes;
  return std::shared_ptr<void>(p, [n](void* q) { ::munmap(q, n); });
}

json parse_json_text(const char* begin, const char* end, const std::string& what) {
  json j = json::parse(begin, end, nullptr, /*allow_exceptions=*/false);
  DS_CHECK(!j.is_discarded(), "{}: not valid JSON", what);
  DS_CHECK(j.is_object(), "{}: must be a JSON object, found {}", what, j.type_name());
  return j;
}

}  // namespace

SafetensorsHeader parse_safetensors_header(const unsigned char* bytes, size_t size, const std::string& path) {
  DS_CHECK(size >= 8, "{}: truncated: {} bytes, shorter than the 8-byte header length", path, size);
  uint64_t n = read_u64_le(bytes);
  DS_CHECK(n <= size - 8, "{}: header length {} exceeds the {} bytes after it (truncated file?)", path, n, size - 8);
  const char* h = reinterpret_cast<const char*>(bytes + 8);
  json header = parse_json_text(h, h + n, path + ": header");
  uint64_t data_start = 8 + n, data_bytes = size - data_start;
  SafetensorsHeader out;
  for (auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      out.metadata = parse_metadata(entry, path);
      continue;
    }
    out.tensors.emplace(name, parse_entry(path, name, entry, data_start, data_bytes));
  }
  return out;
}

std::shared_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  std::shared_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  f->keepalive_ = map_file(path, &f->map_bytes_);
  f->map_ = f->keepalive_.get();
  SafetensorsHeader h = parse_safetensors_header(static_cast<const unsigned char*>(f->map_), f->map_bytes_, path);
  f->tensors_ = std::move(h.tensors);
  f->metadata_ = std::move(h.metadata);
  return f;
}

SafetensorsFile::~SafetensorsFile() = default;  // views may still hold the mapping through keepalive_

const TensorInfo* SafetensorsFile::find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

Tensor SafetensorsFile::view(const std::string& name) const {
  const TensorInfo* info = find(name);
  DS_CHECK(info != nullptr, "{}: no tensor named '{}'", path_, name);
  char* data = static_cast<char*>(map_) + info->data_offset;
  return Tensor(data, info->dtype, info->shape, Device::CPU, keepalive_);
}

// ---- Checkpoint ----

namespace {

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  DS_CHECK(in.good(), "{}: cannot open", path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

std::map<std::string, std::string> parse_weight_map(std::string_view text, const std::string& index_path) {
  json j = parse_json_text(text.data(), text.data() + text.size(), index_path);
  auto it = j.find("weight_map");
  DS_CHECK(it != j.end() && it->is_object(), "{}: 'weight_map' must be an object of tensor name -> shard file",
           index_path);
  std::map<std::string, std::string> out;
  for (auto& [name, shard] : it->items()) {
    DS_CHECK(shard.is_string() && !shard.get<std::string>().empty(),
             "{}: weight_map entry for tensor '{}' must be a shard file name, found {}", index_path, name,
             brief(shard));
    const std::string file = shard.get<std::string>();
    DS_CHECK(file.find('/') == std::string::npos && file.find('\\') == std::string::npos && file != "." && file != "..",
             "{}: weight_map entry for tensor '{}' names '{}': expected a file name in the checkpoint directory",
             index_path, name, file);
    out[name] = file;
  }
  return out;
}

namespace {

// weight_map of an index file: tensor name -> shard file name.
std::map<std::string, std::string> read_weight_map(const std::string& index_path) {
  return parse_weight_map(read_text(index_path), index_path);
}

std::vector<std::string> safetensors_in(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  DS_CHECK(!ec, "{}: cannot list the directory: {}", dir, ec.message());
  for (const auto& e : it) {
    std::string fname = e.path().filename().string();
    if (e.is_regular_file(ec) && e.path().extension() == ".safetensors" && fname != kReferenceName)
      out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  DS_CHECK(!out.empty(), "{}: no .safetensors files in the directory (and no {})", dir, kIndexName);
  return out;
}

}  // namespace

Checkpoint Checkpoint::open(const std::string& path) {
  Checkpoint c;
  c.path_ = path;
  std::error_code ec;
  if (fs::is_regular_file(path, ec)) {
    c.add_shard(path);
    c.index_all_tensors();
  } else if (fs::is_directory(path, ec)) {
    std::string index = (fs::path(path) / kIndexName).string();
    if (fs::exists(index, ec)) {
      c.open_indexed(index);
    } else {
      for (const std::string& f : safetensors_in(path)) c.add_shard(f);
      c.index_all_tensors();
    }
  } else {
    fail("{}: checkpoint path does not exist (expected a .safetensors file or a directory)", path);
  }
  return c;
}

void Checkpoint::add_shard(const std::string& file) {
  files_.push_back(file);
  shards_.push_back(SafetensorsFile::open(file));
}

void Checkpoint::index_all_tensors() {
  for (int s = 0; s < int(shards_.size()); ++s) {
    for (const auto& [name, info] : shards_[s]->tensors()) {
      auto [it, fresh] = index_.emplace(name, std::make_pair(s, &info));
      DS_CHECK(fresh, "{}: tensor '{}' appears in two shards: {} and {}", path_, name, files_[it->second.first],
               files_[s]);
    }
  }
}

// The index is authoritative: tensors a shard holds but the index does not list are not exposed.
void Checkpoint::open_indexed(const std::string& index_path) {
  std::map<std::string, std::string> weight_map = read_weight_map(index_path);
  std::map<std::string, int> shard_ids;
  for (const auto& [name, shard] : weight_map) {
    if (shard_ids.count(shard)) continue;
    std::string file = (fs::path(path_) / shard).string();
    std::error_code ec;
    DS_CHECK(fs::is_regular_file(file, ec), "{}: shard file {} (listed for tensor '{}') is missing: {} not found",
             index_path, shard, name, file);
    shard_ids[shard] = int(shards_.size());
    add_shard(file);
  }
  for (const auto& [name, shard] : weight_map) {
    int s = shard_ids[shard];
    const TensorInfo* info = shards_[s]->find(name);
    DS_CHECK(info != nullptr, "{}: tensor '{}' listed in index for shard {} but absent from it ({})", index_path,
             name, shard, files_[s]);
    index_.emplace(name, std::make_pair(s, info));
  }
}

const TensorInfo& Checkpoint::info(const std::string& name) const {
  auto it = index_.find(name);
  DS_CHECK(it != index_.end(), "{}: checkpoint has no tensor named '{}'", path_, name);
  return *it->second.second;
}

Tensor Checkpoint::view(const std::string& name) const {
  auto it = index_.find(name);
  DS_CHECK(it != index_.end(), "{}: checkpoint has no tensor named '{}'", path_, name);
  return shards_[it->second.first]->view(name);
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  out.reserve(index_.size());
  for (const auto& kv : index_) out.push_back(kv.first);
  return out;
}

// ---- writer ----

namespace {

// Copies a host tensor of any strides into dst contiguously (row-major).
void copy_contiguous(const Tensor& t, char* dst) {
  size_t es = dtype_size(t.dtype());
  if (t.numel() == 0) return;
  if (t.is_contiguous()) {
    std::memcpy(dst, t.data(), t.nbytes());
    return;
  }
  int64_t n[kMaxDims], st[kMaxDims];  // shape and byte strides padded to 4 dims with leading 1s
  int pad = kMaxDims - t.ndim();
  for (int i = 0; i < kMaxDims; ++i) {
    n[i] = i < pad ? 1 : t.size(i - pad);
    st[i] = i < pad ? 0 : t.stride(i - pad) * int64_t(es);
  }
  const char* src = static_cast<const char*>(t.data());
  for (int64_t a = 0; a < n[0]; ++a)
    for (int64_t b = 0; b < n[1]; ++b)
      for (int64_t c = 0; c < n[2]; ++c)
        for (int64_t d = 0; d < n[3]; ++d, dst += es)
          std::memcpy(dst, src + a * st[0] + b * st[1] + c * st[2] + d * st[3], es);
}

std::string header_text(const std::vector<std::pair<std::string, Tensor>>& tensors,
                        const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  if (!metadata.empty()) h["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    std::vector<int64_t> shape(t.shape().d.begin(), t.shape().d.begin() + t.ndim());
    h[name] = {{"dtype", std::string(dtype_name(t.dtype()))},
               {"shape", shape},
               {"data_offsets", {offset, offset + t.nbytes()}}};
    offset += t.nbytes();
  }
  std::string s = h.dump();
  s.append((8 - s.size() % 8) % 8, ' ');
  return s;
}

void check_writable(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors) {
  std::set<std::string> seen;
  for (const auto& [name, t] : tensors) {
    DS_CHECK(name != "__metadata__" && !name.empty(), "{}: invalid tensor name '{}'", path, name);
    DS_CHECK(seen.insert(name).second, "{}: tensor '{}' given twice", path, name);
    DS_CHECK(t.device() == Device::CPU, "{}: tensor '{}' is not in host memory", path, name);
    DS_CHECK(t.numel() == 0 || t.data() != nullptr, "{}: tensor '{}' has no data", path, name);
  }
}

}  // namespace

void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  check_writable(path, tensors);
  std::string header = header_text(tensors, metadata);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  DS_CHECK(out.good(), "{}: cannot open for writing: {}", path, std::strerror(errno));
  unsigned char len[8];
  for (int i = 0; i < 8; ++i) len[i] = uint8_t(uint64_t(header.size()) >> (8 * i));
  out.write(reinterpret_cast<const char*>(len), 8);
  out.write(header.data(), std::streamsize(header.size()));
  std::vector<char> buf;
  for (const auto& [name, t] : tensors) {
    buf.resize(t.nbytes());
    copy_contiguous(t, buf.data());
    out.write(buf.data(), std::streamsize(buf.size()));
  }
  out.close();
  DS_CHECK(!out.fail(), "{}: write failed: {}", path, std::strerror(errno));
}

}  // namespace dsserve
