// Safetensors checkpoints: a memory-mapped reader for one file or a sharded directory
// (model.safetensors.index.json), giving zero-copy host views of tensors, and a writer.
// Every malformed input is an Error naming the file and tensor, and what was expected vs found.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace dsserve {

struct TensorInfo {
  std::string name;
  std::string file;      // path of the file holding it
  DType dtype;
  Shape shape;
  size_t data_offset;    // byte offset of the first element in the file
  size_t nbytes;
};

// The header of a .safetensors file held in memory (bytes: the whole file), validated: every
// tensor's dtype, shape and data offsets inside the data section. Error naming `path` and the tensor.
struct SafetensorsHeader {
  std::map<std::string, TensorInfo> tensors;
  std::map<std::string, std::string> metadata;
};
SafetensorsHeader parse_safetensors_header(const unsigned char* bytes, size_t size, const std::string& path);
// weight_map of a model.safetensors.index.json text: tensor name -> shard file name (a plain file
// name in the checkpoint directory).
std::map<std::string, std::string> parse_weight_map(std::string_view text, const std::string& index_path);

// One mapped .safetensors file. Views it returns keep the mapping alive.
class SafetensorsFile {
 public:
  static std::shared_ptr<SafetensorsFile> open(const std::string& path);
  ~SafetensorsFile();

  const std::string& path() const { return path_; }
  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const TensorInfo* find(const std::string& name) const;
  Tensor view(const std::string& name) const;  // throws naming file and tensor if absent

 private:
  SafetensorsFile() = default;
  std::string path_;
  void* map_ = nullptr;
  size_t map_bytes_ = 0;
  std::shared_ptr<void> keepalive_;
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

// A checkpoint directory: either model.safetensors.index.json plus shards, or the *.safetensors
// files in it (or a single file path). Shards are opened when the checkpoint is opened, so every
// header error surfaces at once; a tensor named in the index but absent from its shard is an error.
class Checkpoint {
 public:
  static Checkpoint open(const std::string& path);

  bool has(const std::string& name) const { return index_.count(name) != 0; }
  const TensorInfo& info(const std::string& name) const;  // throws if absent
  Tensor view(const std::string& name) const;             // zero-copy host view
  std::vector<std::string> names() const;                 // sorted
  const std::vector<std::string>& files() const { return files_; }
  const std::string& path() const { return path_; }

 private:
  void add_shard(const std::string& file);               // opens it and appends to files_/shards_
  void index_all_tensors();                              // every tensor of every shard; no duplicates
  void open_indexed(const std::string& index_path);      // shards and tensors named by the index
  std::string path_;
  std::vector<std::string> files_;
  std::vector<std::shared_ptr<SafetensorsFile>> shards_;
  std::map<std::string, std::pair<int, const TensorInfo*>> index_;  // name -> (shard, info)
};

// Writes tensors (host, any layout: they are copied contiguously) to a .safetensors file.
void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace dsserve
