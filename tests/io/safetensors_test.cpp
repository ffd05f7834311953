// Tests of the safetensors reader/writer and sharded checkpoints: round trips of every dtype, strided
// writes, one test per malformed-header case (the error must name file, tensor and the problem),
// index handling, and the golden fixture checkpoints.
#include "io/safetensors.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>

#include "common/test_paths.h"
#include "core/error.h"

namespace dsserve {
namespace {

namespace fs = std::filesystem;
using testing::HasSubstr;

// The message of the dsserve::Error `f` throws; a test failure (and "") when it throws nothing.
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a dsserve::Error";
  return "";
}

// Writes a raw safetensors file: 8-byte length, `header` verbatim, then `data_bytes` zero bytes.
std::string write_raw(const std::string& dir, const std::string& name, const std::string& header,
                      size_t data_bytes = 0) {
  std::string path = dir + "/" + name;
  std::ofstream out(path, std::ios::binary);
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out.put(char(n >> (8 * i)));
  out << header << std::string(data_bytes, '\0');
  return path;
}

std::string write_bytes(const std::string& dir, const std::string& name, const std::string& bytes) {
  std::string path = dir + "/" + name;
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

// A host tensor whose bytes are 0, 1, 2, ... (mod 251).
Tensor pattern(DType dtype, Shape shape, int seed = 0) {
  Tensor t = Tensor::zeros_host(dtype, shape);
  auto* p = t.ptr<uint8_t>();
  for (size_t i = 0; i < t.nbytes(); ++i) p[i] = uint8_t((i + seed) % 251);
  return t;
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.nbytes() == b.nbytes() && std::memcmp(a.data(), b.data(), a.nbytes()) == 0;
}

class SafetensorsTest : public testing::Test {
 protected:
  std::string dir_ = test::temp_dir("safetensors");
  void TearDown() override { fs::remove_all(dir_); }
  // Opens a file holding one tensor entry `entry` (JSON) named "w" with data_bytes of data.
  std::string open_error(const std::string& entry, size_t data_bytes = 16) {
    std::string path = write_raw(dir_, "bad.safetensors", "{\"w\": " + entry + "}", data_bytes);
    return error_of([&] { SafetensorsFile::open(path); });
  }
};

TEST_F(SafetensorsTest, RoundTripsEveryDtype) {
  const DType all[] = {DType::BF16, DType::F16, DType::F32, DType::F8_E4M3, DType::F8_E5M2,
                       DType::I32,  DType::I64, DType::U8,  DType::BOOL};
  std::vector<std::pair<std::string, Tensor>> ts;
  int k = 0;
  for (DType d : all) ts.emplace_back(std::string(dtype_name(d)) + ".t", pattern(d, {2, 3, 5}, k++));
  std::string path = dir_ + "/all.safetensors";
  write_safetensors(path, ts, {{"format", "pt"}});
  auto f = SafetensorsFile::open(path);
  EXPECT_EQ(f->tensors().size(), ts.size());
  EXPECT_EQ(f->metadata().at("format"), "pt");
  for (const auto& [name, t] : ts) {
    Tensor v = f->view(name);
    EXPECT_EQ(v.dtype(), t.dtype()) << name;
    EXPECT_EQ(v.shape(), t.shape()) << name;
    EXPECT_TRUE(same_bytes(v, t)) << name;
    EXPECT_EQ(f->find(name)->nbytes, t.nbytes());
    EXPECT_EQ(f->find(name)->file, path);
  }
}

TEST_F(SafetensorsTest, RoundTripsScalarEmptyAndRank4) {
  std::string path = dir_ + "/shapes.safetensors";
  write_safetensors(path, {{"scalar", pattern(DType::F32, {})},
                           {"empty", pattern(DType::BF16, {0, 7})},
                           {"rank4", pattern(DType::F16, {2, 1, 3, 4})}});
  auto f = SafetensorsFile::open(path);
  EXPECT_EQ(f->view("scalar").ndim(), 0);
  EXPECT_EQ(f->view("scalar").nbytes(), 4u);
  EXPECT_EQ(f->view("empty").shape(), Shape({0, 7}));
  EXPECT_TRUE(same_bytes(f->view("rank4"), pattern(DType::F16, {2, 1, 3, 4})));
  EXPECT_TRUE(f->metadata().empty());
}

TEST_F(SafetensorsTest, HeaderIsPaddedToEightBytesWithSpaces) {
  std::string path = dir_ + "/pad.safetensors";
  write_safetensors(path, {{"x", pattern(DType::U8, {3})}});
  std::ifstream in(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), {});
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | uint8_t(bytes[i]);
  EXPECT_EQ(n % 8, 0u);
  EXPECT_EQ(bytes.size(), 8 + n + 3);
  EXPECT_EQ(bytes[8 + n - 1] == ' ' || bytes[8 + n - 1] == '}', true);
}

TEST_F(SafetensorsTest, WritesStridedViewsContiguously) {
  Tensor base = pattern(DType::F32, {4, 6});
  Tensor cols = base.slice(1, 2, 5);    // [4, 3], row stride 6
  Tensor row = base.select(2);          // [6]
  Tensor block = base.reshape({2, 2, 6}).slice(2, 1, 3).slice(0, 1, 2);  // [1, 2, 2]
  ASSERT_FALSE(cols.is_contiguous());
  std::string path = dir_ + "/strided.safetensors";
  write_safetensors(path, {{"cols", cols}, {"row", row}, {"block", block}});
  auto f = SafetensorsFile::open(path);
  const float* b = base.ptr<float>();
  Tensor c = f->view("cols");
  ASSERT_EQ(c.shape(), Shape({4, 3}));
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 3; ++j) EXPECT_EQ(std::memcmp(&c.ptr<float>()[i * 3 + j], &b[i * 6 + j + 2], 4), 0);
  EXPECT_EQ(std::memcmp(f->view("row").data(), b + 12, 24), 0);
  Tensor k = f->view("block");
  ASSERT_EQ(k.shape(), Shape({1, 2, 2}));
  const int want[] = {13, 14, 19, 20};  // rows 2..3 of the [4, 6] base, columns 1..2
  for (int i = 0; i < 4; ++i) EXPECT_EQ(std::memcmp(&k.ptr<float>()[i], &b[want[i]], 4), 0) << i;
}

TEST_F(SafetensorsTest, ViewsOutliveTheFileObject) {
  std::string path = dir_ + "/keep.safetensors";
  write_safetensors(path, {{"x", pattern(DType::I64, {8})}});
  Tensor v = SafetensorsFile::open(path)->view("x");
  EXPECT_TRUE(same_bytes(v, pattern(DType::I64, {8})));
  EXPECT_NE(v.storage(), nullptr);
}

TEST_F(SafetensorsTest, WriterRejectsDuplicateNames) {
  std::string path = dir_ + "/dup.safetensors";
  std::string msg = error_of([&] {
    write_safetensors(path, {{"x", pattern(DType::U8, {1})}, {"x", pattern(DType::U8, {1})}});
  });
  EXPECT_THAT(msg, HasSubstr("'x'"));
  EXPECT_THAT(msg, HasSubstr("twice"));
}

// ---- malformed files: each error names the file, the tensor where there is one, and the problem ----

TEST_F(SafetensorsTest, EmptyFile) {
  std::string path = write_bytes(dir_, "empty.safetensors", "");
  std::string msg = error_of([&] { SafetensorsFile::open(path); });
  EXPECT_THAT(msg, HasSubstr("empty.safetensors"));
  EXPECT_THAT(msg, HasSubstr("empty file"));
}

TEST_F(SafetensorsTest, ShorterThanEightBytesIsTruncated) {
  std::string path = write_bytes(dir_, "short.safetensors", std::string("\x10\0\0", 3));
  std::string msg = error_of([&] { SafetensorsFile::open(path); });
  EXPECT_THAT(msg, HasSubstr("short.safetensors"));
  EXPECT_THAT(msg, HasSubstr("truncated"));
}

TEST_F(SafetensorsTest, HeaderLengthBeyondFile) {
  std::string path = write_raw(dir_, "long.safetensors", "{}");
  std::fstream(path, std::ios::binary | std::ios::in | std::ios::out).put(char(100));  // claims 100 bytes
  std::string msg = error_of([&] { SafetensorsFile::open(path); });
  EXPECT_THAT(msg, HasSubstr("long.safetensors"));
  EXPECT_THAT(msg, HasSubstr("header length 100"));
}

TEST_F(SafetensorsTest, HeaderLengthHugeDoesNotOverflow) {
  std::string path = write_bytes(dir_, "huge.safetensors", std::string(8, '\xff') + "{}");
  EXPECT_THAT(error_of([&] { SafetensorsFile::open(path); }), HasSubstr("header length"));
}

TEST_F(SafetensorsTest, HeaderNotJson) {
  std::string path = write_raw(dir_, "notjson.safetensors", "{\"w\": [1, 2");
  std::string msg = error_of([&] { SafetensorsFile::open(path); });
  EXPECT_THAT(msg, HasSubstr("notjson.safetensors"));
  EXPECT_THAT(msg, HasSubstr("not valid JSON"));
}

TEST_F(SafetensorsTest, HeaderNotObject) {
  std::string path = write_raw(dir_, "array.safetensors", "[1, 2]  ");
  std::string msg = error_of([&] { SafetensorsFile::open(path); });
  EXPECT_THAT(msg, HasSubstr("array.safetensors"));
  EXPECT_THAT(msg, HasSubstr("object"));
}

TEST_F(SafetensorsTest, EntryNotObject) {
  std::string msg = open_error("[1, 2]");
  EXPECT_THAT(msg, HasSubstr("bad.safetensors"));
  EXPECT_THAT(msg, HasSubstr("'w'"));
  EXPECT_THAT(msg, HasSubstr("object"));
}

TEST_F(SafetensorsTest, MissingDtype) {
  std::string msg = open_error(R"({"shape": [4], "data_offsets": [0, 16]})");
  EXPECT_THAT(msg, HasSubstr("bad.safetensors"));
  EXPECT_THAT(msg, HasSubstr("'w'"));
  EXPECT_THAT(msg, HasSubstr("no 'dtype'"));
}

TEST_F(SafetensorsTest, MissingShape) {
  std::string msg = open_error(R"({"dtype": "F32", "data_offsets": [0, 16]})");
  EXPECT_THAT(msg, HasSubstr("'w'"));
  EXPECT_THAT(msg, HasSubstr("no 'shape'"));
}

TEST_F(SafetensorsTest, MissingDataOffsets) {
  std::string msg = open_error(R"({"dtype": "F32", "shape": [4]})");
  EXPECT_THAT(msg, HasSubstr("'w'"));
  EXPECT_THAT(msg, HasSubstr("no 'data_offsets'"));
}

TEST_F(SafetensorsTest, DtypeNotString) {
  std::string msg = open_error(R"({"dtype": 7, "shape": [4], "data_offsets": [0, 16]})");
  EXPECT_THAT(msg, HasSubstr("'w'"));
  EXPECT_THAT(msg, HasSubstr("dtype must be a string"));
}

TEST_F(SafetensorsTest, UnknownDtype) {
  std::string msg = open_error(R"({"dtype": "F64", "shape": [2], "data_offsets": [0, 16]})");
  EXPECT_THAT(msg, HasSubstr("bad.safetensors"));
  EXPECT_THAT(msg, HasSubstr("'w'"));
  EXPECT_THAT(msg, HasSubstr("unknown dtype 'F64'"));
}

TEST_F(SafetensorsTest, ShapeWrongTypes) {
  for (const char* shape : {"\"4\"", "[4.5]", "[-4]", "[\"4\"]", "{}"}) {
    std::string msg = open_error(std::string(R"({"dtype": "F32", "data_offsets": [0, 16], "shape": )") + shape + "}");
    EXPECT_THAT(msg, HasSubstr("'w'")) << shape;
    EXPECT_THAT(msg, HasSubstr("shape")) << shape;
  }
}

TEST_F(SafetensorsTest, DataOffsetsWrongTypes) {
  for (const char* off : {"[0]", "[0, 8, 16]", "\"0-16\"", "[0, -16]", "[0.0, 16]"}) {
    std::string msg = open_error(std::string(R"({"dtype": "F32", "shape": [4], "data_offsets": )") + off + "}");
    EXPECT_THAT(msg, HasSubstr("'w'")) << off;
    EXPECT_THAT(msg, HasSubstr("data_offsets")) << off;
  }
}

TEST_F(SafetensorsTest, DataOffsetsOutsideDataSection) {
  std::string msg = open_error(R"({"dtype": "F32", "shape": [4], "data_offsets": [8, 24]})", 16);
  EXPECT_THAT(msg, HasSubstr("bad.safetensors"));
  EXPECT_THAT(msg, HasSubstr("'w'"));
  EXPECT_THAT(msg, HasSubstr("data_offsets [8, 24] outside the data section of 16 bytes"));
}

TEST_F(SafetensorsTest, DataOffsetsBeginAfterEnd) {
  std::string msg = open_error(R"({"dtype": "U8", "shape": [0], "data_offsets": [12, 4]})", 16);
  EXPECT_THAT(msg, HasSubstr("'w'"));
  EXPECT_THAT(msg, HasSubstr("data_offsets [12, 4]"));
  EXPECT_THAT(msg, HasSubstr("begin > end"));
}

TEST_F(SafetensorsTest, ByteSizeMismatch) {
  std::string msg = open_error(R"({"dtype": "BF16", "shape": [4, 3], "data_offsets": [0, 16]})", 32);
  EXPECT_THAT(msg, HasSubstr("bad.safetensors"));
  EXPECT_THAT(msg, HasSubstr("'w'"));
  EXPECT_THAT(msg, HasSubstr("span 16 bytes but BF16 [4, 3] needs 24 bytes"));
}

TEST_F(SafetensorsTest, ShapeProductOverflow) {
  std::string msg = open_error(
      R"({"dtype": "F32", "shape": [4294967296, 4294967296, 4], "data_offsets": [0, 16]})");
  EXPECT_THAT(msg, HasSubstr("'w'"));
  EXPECT_THAT(msg, HasSubstr("too large"));
}

TEST_F(SafetensorsTest, RankAboveFour) {
  std::string msg = open_error(R"({"dtype": "U8", "shape": [1, 1, 1, 1, 16], "data_offsets": [0, 16]})");
  EXPECT_THAT(msg, HasSubstr("bad.safetensors"));
  EXPECT_THAT(msg, HasSubstr("'w'"));
  EXPECT_THAT(msg, HasSubstr("rank 5 exceeds"));
}

TEST_F(SafetensorsTest, MetadataMustBeStrings) {
  std::string path = write_raw(dir_, "meta.safetensors", R"({"__metadata__": {"format": 1}})");
  std::string msg = error_of([&] { SafetensorsFile::open(path); });
  EXPECT_THAT(msg, HasSubstr("meta.safetensors"));
  EXPECT_THAT(msg, HasSubstr("__metadata__"));
  EXPECT_THAT(msg, HasSubstr("'format'"));
}

TEST_F(SafetensorsTest, MissingFileAndAbsentTensor) {
  EXPECT_THAT(error_of([&] { SafetensorsFile::open(dir_ + "/nope.safetensors"); }),
              HasSubstr("nope.safetensors: cannot open"));
  std::string path = dir_ + "/one.safetensors";
  write_safetensors(path, {{"x", pattern(DType::U8, {1})}});
  auto f = SafetensorsFile::open(path);
  EXPECT_EQ(f->find("y"), nullptr);
  std::string msg = error_of([&] { f->view("y"); });
  EXPECT_THAT(msg, HasSubstr("one.safetensors"));
  EXPECT_THAT(msg, HasSubstr("'y'"));
}

// Every prefix and many single-byte corruptions of a valid file either open (views then lie inside
// the file) or throw dsserve::Error: never a crash or another exception type.
TEST_F(SafetensorsTest, TruncationsAndCorruptionsNeverCrash) {
  std::string good = dir_ + "/good.safetensors";
  write_safetensors(good, {{"a", pattern(DType::BF16, {3, 5})}, {"b", pattern(DType::I64, {2})}}, {{"k", "v"}});
  std::ifstream in(good, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), {});
  auto check = [&](const std::string& content) {
    std::string path = write_bytes(dir_, "mut.safetensors", content);
    try {
      auto f = SafetensorsFile::open(path);
      for (const auto& [name, info] : f->tensors()) EXPECT_LE(info.data_offset + info.nbytes, content.size());
    } catch (const Error&) {
    }
  };
  for (size_t n = 0; n < bytes.size(); ++n) check(bytes.substr(0, n));
  uint32_t rng = 12345;
  for (int i = 0; i < 2000; ++i) {
    std::string m = bytes;
    rng = rng * 1664525u + 1013904223u;
    size_t at = (rng >> 8) % std::min<size_t>(m.size(), 8 + 200);
    rng = rng * 1664525u + 1013904223u;
    m[at] = char(rng >> 24);
    check(m);
  }
}

// ---- checkpoints ----

class CheckpointTest : public SafetensorsTest {
 protected:
  void write_shards() {
    write_safetensors(dir_ + "/model-00001-of-00002.safetensors",
                      {{"a", pattern(DType::BF16, {2, 2})}, {"b", pattern(DType::F32, {3})}});
    write_safetensors(dir_ + "/model-00002-of-00002.safetensors", {{"c", pattern(DType::F8_E4M3, {4, 4})}});
  }
  void write_index(const std::string& weight_map) {
    std::ofstream(dir_ + "/model.safetensors.index.json")
        << R"({"metadata": {"total_size": 36}, "weight_map": )" << weight_map << "}";
  }
  std::string open_error() {
    return error_of([&] { Checkpoint::open(dir_); });
  }
};

TEST_F(CheckpointTest, DirectoryWithoutIndexOpensEveryShardButReference) {
  write_shards();
  write_safetensors(dir_ + "/reference.safetensors", {{"a", pattern(DType::F32, {1})}});  // would duplicate "a"
  Checkpoint c = Checkpoint::open(dir_);
  EXPECT_EQ(c.names(), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(c.files().size(), 2u);
  EXPECT_TRUE(c.has("c"));
  EXPECT_FALSE(c.has("d"));
  EXPECT_EQ(c.info("c").dtype, DType::F8_E4M3);
  EXPECT_THAT(c.info("c").file, HasSubstr("model-00002-of-00002.safetensors"));
  EXPECT_TRUE(same_bytes(c.view("b"), pattern(DType::F32, {3})));
  std::string msg = error_of([&] { c.view("d"); });
  EXPECT_THAT(msg, HasSubstr("'d'"));
  EXPECT_THAT(msg, HasSubstr(dir_));
  EXPECT_THAT(error_of([&] { c.info("d"); }), HasSubstr("'d'"));
}

TEST_F(CheckpointTest, SingleFilePath) {
  write_shards();
  Checkpoint c = Checkpoint::open(dir_ + "/model-00002-of-00002.safetensors");
  EXPECT_EQ(c.names(), (std::vector<std::string>{"c"}));
}

TEST_F(CheckpointTest, IndexedDirectory) {
  write_shards();
  write_index(R"({"a": "model-00001-of-00002.safetensors", "b": "model-00001-of-00002.safetensors",
                  "c": "model-00002-of-00002.safetensors"})");
  Checkpoint c = Checkpoint::open(dir_);
  EXPECT_EQ(c.names(), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(c.files().size(), 2u);
  EXPECT_TRUE(same_bytes(c.view("c"), pattern(DType::F8_E4M3, {4, 4})));
}

TEST_F(CheckpointTest, DuplicateTensorAcrossShards) {
  write_shards();
  write_safetensors(dir_ + "/extra.safetensors", {{"b", pattern(DType::F32, {3})}});
  std::string msg = open_error();
  EXPECT_THAT(msg, HasSubstr("'b'"));
  EXPECT_THAT(msg, HasSubstr("two shards"));
  EXPECT_THAT(msg, HasSubstr("extra.safetensors"));
  EXPECT_THAT(msg, HasSubstr("model-00001-of-00002.safetensors"));
}

TEST_F(CheckpointTest, DirectoryWithoutSafetensors) {
  std::ofstream(dir_ + "/config.json") << "{}";
  std::string msg = open_error();
  EXPECT_THAT(msg, HasSubstr(dir_));
  EXPECT_THAT(msg, HasSubstr("no .safetensors files"));
}

TEST_F(CheckpointTest, MissingPath) {
  EXPECT_THAT(error_of([&] { Checkpoint::open(dir_ + "/absent"); }), HasSubstr("does not exist"));
}

TEST_F(CheckpointTest, IndexNamesMissingShardFile) {
  write_shards();
  write_index(R"({"a": "model-00001-of-00002.safetensors", "z": "model-00003-of-00003.safetensors"})");
  std::string msg = open_error();
  EXPECT_THAT(msg, HasSubstr("model.safetensors.index.json"));
  EXPECT_THAT(msg, HasSubstr("model-00003-of-00003.safetensors"));
  EXPECT_THAT(msg, HasSubstr("missing"));
}

TEST_F(CheckpointTest, TensorListedInIndexButAbsent) {
  write_shards();
  write_index(R"({"a": "model-00001-of-00002.safetensors", "c": "model-00001-of-00002.safetensors"})");
  std::string msg = open_error();
  EXPECT_THAT(msg, HasSubstr("tensor 'c' listed in index for shard model-00001-of-00002.safetensors but absent"));
}

TEST_F(CheckpointTest, MalformedIndex) {
  write_shards();
  std::ofstream(dir_ + "/model.safetensors.index.json") << "{\"weight_map\": ";
  EXPECT_THAT(open_error(), HasSubstr("model.safetensors.index.json: not valid JSON"));
  std::ofstream(dir_ + "/model.safetensors.index.json") << R"({"metadata": {}})";
  EXPECT_THAT(open_error(), HasSubstr("'weight_map' must be an object"));
  write_index(R"({"a": 3})");
  std::string msg = open_error();
  EXPECT_THAT(msg, HasSubstr("tensor 'a'"));
  EXPECT_THAT(msg, HasSubstr("shard file name"));
}

TEST_F(CheckpointTest, ShardHeaderErrorNamesTheShard) {
  write_shards();
  write_bytes(dir_, "model-00002-of-00002.safetensors", "abc");
  std::string msg = open_error();
  EXPECT_THAT(msg, HasSubstr("model-00002-of-00002.safetensors"));
  EXPECT_THAT(msg, HasSubstr("truncated"));
}

// ---- golden fixtures ----

void expect_tensor(const Checkpoint& c, const std::string& name, DType dtype, Shape shape) {
  ASSERT_TRUE(c.has(name)) << name;
  Tensor t = c.view(name);
  EXPECT_EQ(dtype_name(t.dtype()), dtype_name(dtype)) << name;
  EXPECT_EQ(t.shape(), shape) << name << " is " << t.shape().str();
}

TEST(CheckpointFixtures, TinyV3Bf16) {
  DS_REQUIRE_FIXTURES();
  Checkpoint c = Checkpoint::open(test::fixtures_dir() + "/tiny-v3-bf16");
  EXPECT_EQ(c.files().size(), 2u);
  EXPECT_FALSE(c.has("prompt.0.ids"));  // reference.safetensors is not part of the checkpoint
  expect_tensor(c, "model.embed_tokens.weight", DType::BF16, {2048, 256});
  expect_tensor(c, "lm_head.weight", DType::BF16, {2048, 256});
  expect_tensor(c, "model.layers.0.self_attn.q_a_proj.weight", DType::BF16, {192, 256});
  expect_tensor(c, "model.layers.0.self_attn.kv_a_proj_with_mqa.weight", DType::BF16, {160, 256});
  expect_tensor(c, "model.layers.1.mlp.experts.3.gate_proj.weight", DType::BF16, {128, 256});
  expect_tensor(c, "model.layers.1.mlp.gate.e_score_correction_bias", DType::F32, {16});
  expect_tensor(c, "model.layers.3.eh_proj.weight", DType::BF16, {256, 512});
  EXPECT_FALSE(c.has("model.layers.0.self_attn.q_a_proj.weight_scale_inv"));
}

TEST(CheckpointFixtures, TinyV3Fp8) {
  DS_REQUIRE_FIXTURES();
  Checkpoint c = Checkpoint::open(test::fixtures_dir() + "/tiny-v3-fp8");
  expect_tensor(c, "model.layers.0.self_attn.q_a_proj.weight", DType::F8_E4M3, {192, 256});
  expect_tensor(c, "model.layers.0.self_attn.q_a_proj.weight_scale_inv", DType::F32, {2, 2});
  expect_tensor(c, "model.layers.0.self_attn.kv_b_proj.weight_scale_inv", DType::F32, {4, 1});
  expect_tensor(c, "model.layers.1.mlp.experts.3.gate_proj.weight", DType::F8_E4M3, {128, 256});
  expect_tensor(c, "model.layers.3.mlp.shared_experts.down_proj.weight_scale_inv", DType::F32, {2, 1});
  expect_tensor(c, "model.layers.3.mlp.gate.weight", DType::BF16, {16, 256});
  expect_tensor(c, "model.layers.3.shared_head.head.weight", DType::BF16, {2048, 256});
  expect_tensor(c, "model.embed_tokens.weight", DType::BF16, {2048, 256});
  // Scales are finite positive floats: the view points at the right bytes.
  Tensor s = c.view("model.layers.0.self_attn.q_a_proj.weight_scale_inv");
  for (int i = 0; i < 4; ++i) EXPECT_GT(s.ptr<float>()[i], 0.0f);
}

TEST(CheckpointFixtures, ReferenceFileOpensDirectly) {
  DS_REQUIRE_FIXTURES();
  auto f = SafetensorsFile::open(test::fixtures_dir() + "/tiny-v3-bf16/reference.safetensors");
  const TensorInfo* ids = f->find("prompt.1.ids");
  ASSERT_NE(ids, nullptr);
  EXPECT_EQ(ids->dtype, DType::I32);
  EXPECT_EQ(ids->shape, Shape({6}));
}

}  // namespace
}  // namespace dsserve
