// The megahost-tensors checkpoint format through its C ABI: bit-exact round trips of several
// dtypes and blobs, and the failures a checkpoint must report clearly (corruption, truncation,
// missing or damaged index, shape/dtype mismatch, abort).
#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/crc.hpp>
#include <nlohmann/json.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "megahost/core/host_services.h"
#include "megahost/core/plugins.h"
#include "megahost/megahost.h"
#include "../optimizers/load_only.h"

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using megahost::core::PluginKind;
using megahost::core::PluginRegistry;

const PluginRegistry& registry() {
  static const auto reg = megahost::test::load_only({MH_TEST_PLUGIN_FILE});
  return *reg;
}

// An mh_error* held for a test: code and message, freed on scope exit.
struct Result {
  mh_status_code code = MH_OK;
  std::string message;
  explicit Result(mh_error* e) : code(megahost::core::error_code(e)), message(megahost::core::error_message(e)) {
    megahost::core::free_error(e);
  }
  bool ok() const { return code == MH_OK; }
  bool says(const std::string& s) const { return message.find(s) != std::string::npos; }
};

// A host-memory tensor with its own bytes.
struct HostTensor {
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
  DLTensor dl{};
  HostTensor(DLDataType dtype, std::vector<int64_t> s, uint32_t seed) : shape(std::move(s)) {
    uint64_t n = (uint64_t(dtype.bits) * dtype.lanes + 7) / 8;
    for (int64_t d : shape) n *= uint64_t(d);
    bytes.resize(n);
    std::mt19937 rng(seed);
    for (auto& b : bytes) b = uint8_t(rng());
    if (dtype.bits == 1) for (auto& b : bytes) b &= 1;  // bool: 0 or 1
    dl.data = bytes.data();
    dl.device = {kDLCPU, 0};
    dl.ndim = int32_t(shape.size());
    dl.dtype = dtype;
    dl.shape = shape.data();
  }
  HostTensor(const HostTensor&) = delete;
};

class MhTensors : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto& info = registry().find(PluginKind::Checkpoint, "megahost-tensors");
    const auto* f = static_cast<const mh_checkpoint_factory*>(info.factory);
    mh_checkpoint_create_args args{sizeof(args), nullptr, "checkpoint"};
    ASSERT_TRUE(Result(f->create("megahost-tensors", megahost::core::host_table(), &args, &ck_, &api_)).ok());
    root_ = fs::temp_directory_path() /
            ("mh-ckpt-test-" + std::to_string(::getpid()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override {
    if (api_ != nullptr) api_->destroy(ck_);
    fs::remove_all(root_);
  }

  // Writes tensors a (float32 [2, 3]), b (int64 [5]) and blob c into dir, committed.
  void write_small(const fs::path& dir) {
    mh_checkpoint_writer* w = nullptr;
    ASSERT_TRUE(Result(api_->writer_open(ck_, dir.c_str(), &w)).ok());
    ASSERT_TRUE(Result(api_->writer_tensor(w, "a", &a_.dl)).ok());
    ASSERT_TRUE(Result(api_->writer_tensor(w, "b", &b_.dl)).ok());
    ASSERT_TRUE(Result(api_->writer_blob(w, "c", "hello", 5)).ok());
    ASSERT_TRUE(Result(api_->writer_commit(w)).ok());
  }
  Result open(const fs::path& dir, mh_checkpoint_reader** r) { return Result(api_->reader_open(ck_, dir.c_str(), r)); }
  json index_of(const fs::path& dir) { return json::parse(std::ifstream(dir / "index.json")); }
  void write_index(const fs::path& dir, const std::string& text) { std::ofstream(dir / "index.json") << text; }

  mh_checkpoint_format* ck_ = nullptr;
  const mh_checkpoint_api* api_ = nullptr;
  fs::path root_;
  HostTensor a_{{kDLFloat, 32, 1}, {2, 3}, 1};
  HostTensor b_{{kDLInt, 64, 1}, {5}, 2};
};

TEST_F(MhTensors, AliasFindsTheFormat) {
  EXPECT_EQ(registry().find(PluginKind::Checkpoint, "mh-tensors").id, "megahost-tensors");
}

TEST_F(MhTensors, RoundTripIsBitExactForEveryDtypeAndBlob) {
  struct Spec {
    std::string name;
    DLDataType dtype;
    std::vector<int64_t> shape;
    const char* dtype_name;
  };
  const std::vector<Spec> specs = {
      {"f32", {kDLFloat, 32, 1}, {3, 4}, "float32"},     {"f64", {kDLFloat, 64, 1}, {7}, "float64"},
      {"f16", {kDLFloat, 16, 1}, {2, 2, 3}, "float16"},  {"bf16", {kDLBfloat, 16, 1}, {9}, "bfloat16"},
      {"i8", {kDLInt, 8, 1}, {13}, "int8"},               {"i32", {kDLInt, 32, 1}, {1, 5}, "int32"},
      {"i64", {kDLInt, 64, 1}, {3}, "int64"},             {"u8", {kDLUInt, 8, 1}, {31}, "uint8"},
      {"bool", {kDLUInt, 1, 1}, {6}, "bool"},             {"scalar", {kDLInt, 64, 1}, {}, "int64"},
      {"empty", {kDLFloat, 32, 1}, {0, 3}, "float32"}};
  std::vector<std::unique_ptr<HostTensor>> tensors;
  const std::string blob(1000, '\0');
  const std::string binary("rng\0state\xff\0", 11), empty;

  const fs::path dir = root_ / "iter_0000010";
  mh_checkpoint_writer* w = nullptr;
  ASSERT_TRUE(Result(api_->writer_open(ck_, dir.c_str(), &w)).ok());
  uint32_t seed = 10;
  for (const auto& s : specs) {
    tensors.push_back(std::make_unique<HostTensor>(s.dtype, s.shape, seed++));
    ASSERT_TRUE(Result(api_->writer_tensor(w, s.name.c_str(), &tensors.back()->dl)).ok()) << s.name;
  }
  ASSERT_TRUE(Result(api_->writer_blob(w, "zeros", blob.data(), blob.size())).ok());
  ASSERT_TRUE(Result(api_->writer_blob(w, "binary", binary.data(), binary.size())).ok());
  ASSERT_TRUE(Result(api_->writer_blob(w, "nothing", empty.data(), 0)).ok());
  ASSERT_TRUE(Result(api_->writer_commit(w)).ok());
  EXPECT_FALSE(fs::exists(dir / "index.json.tmp"));

  // The index says what FORMAT.md promises: order, dtypes, 64-byte aligned offsets, CRC-32.
  const json index = index_of(dir);
  EXPECT_EQ(index["format"], "megahost-tensors");
  EXPECT_EQ(index["version"], 1);
  ASSERT_EQ(index["entries"].size(), specs.size() + 3);
  std::ifstream bin(dir / "tensors.bin", std::ios::binary);
  const std::string data((std::istreambuf_iterator<char>(bin)), std::istreambuf_iterator<char>());
  EXPECT_EQ(index["data_file_size"].get<uint64_t>(), data.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    const json& e = index["entries"][i];
    EXPECT_EQ(e["name"], specs[i].name);
    EXPECT_EQ(e["kind"], "tensor");
    EXPECT_EQ(e["dtype"], specs[i].dtype_name);
    EXPECT_EQ(e["dlpack_dtype"]["code"], specs[i].dtype.code);
    EXPECT_EQ(e["shape"].get<std::vector<int64_t>>(), specs[i].shape);
  }
  for (const json& e : index["entries"]) {
    const uint64_t off = e["offset"], n = e["nbytes"];
    EXPECT_EQ(off % 64, 0u) << e["name"];
    boost::crc_32_type crc;
    crc.process_bytes(data.data() + off, n);
    EXPECT_EQ(e["crc32"].get<uint32_t>(), crc.checksum()) << e["name"];
  }

  // Listing gives the entries in write order with their metadata.
  mh_checkpoint_reader* r = nullptr;
  ASSERT_TRUE(open(dir, &r).ok());
  struct Seen {
    std::vector<std::string> names;
    std::vector<std::vector<int64_t>> shapes;
  } seen;
  ASSERT_TRUE(Result(api_->reader_list(r, [](void* ctx, const mh_checkpoint_entry* e) -> mh_error* {
                auto* s = static_cast<Seen*>(ctx);
                s->names.push_back(e->name);
                s->shapes.emplace_back(e->is_blob ? std::vector<int64_t>{-1}
                                                  : std::vector<int64_t>(e->shape, e->shape + e->ndim));
                return nullptr;
              }, &seen)).ok());
  ASSERT_EQ(seen.names.size(), specs.size() + 3);
  for (size_t i = 0; i < specs.size(); ++i) {
    EXPECT_EQ(seen.names[i], specs[i].name);
    EXPECT_EQ(seen.shapes[i], specs[i].shape);
  }
  EXPECT_EQ(seen.names.back(), "nothing");

  // Every payload comes back bit for bit.
  for (size_t i = 0; i < specs.size(); ++i) {
    HostTensor dst(specs[i].dtype, specs[i].shape, 999);
    std::fill(dst.bytes.begin(), dst.bytes.end(), 0xAB);
    ASSERT_TRUE(Result(api_->reader_tensor(r, specs[i].name.c_str(), &dst.dl)).ok()) << specs[i].name;
    EXPECT_EQ(dst.bytes, tensors[i]->bytes) << specs[i].name;
  }
  const std::vector<std::pair<const char*, std::string>> blobs = {{"zeros", blob}, {"binary", binary}, {"nothing", empty}};
  for (const auto& [name, expected] : blobs) {
    std::string out(expected.size() + 8, 'x');
    size_t len = 0;
    ASSERT_TRUE(Result(api_->reader_blob(r, name, out.data(), out.size(), &len)).ok()) << name;
    EXPECT_EQ(len, expected.size());
    EXPECT_EQ(out.substr(0, len), expected) << name;
  }
  api_->reader_close(r);
}

TEST_F(MhTensors, BlobReadsReportTheSizeAndCopyAtMostCap) {
  write_small(root_ / "ck");
  mh_checkpoint_reader* r = nullptr;
  ASSERT_TRUE(open(root_ / "ck", &r).ok());
  size_t len = 0;
  ASSERT_TRUE(Result(api_->reader_blob(r, "c", nullptr, 0, &len)).ok());
  EXPECT_EQ(len, 5u);
  char buf[3] = {};
  ASSERT_TRUE(Result(api_->reader_blob(r, "c", buf, sizeof buf, &len)).ok());
  EXPECT_EQ(len, 5u);
  EXPECT_EQ(std::string(buf, 3), "hel");
  api_->reader_close(r);
}

TEST_F(MhTensors, OneCorruptByteIsDataLossNamingTheEntry) {
  const fs::path dir = root_ / "ck";
  write_small(dir);
  const uint64_t off = index_of(dir)["entries"][1]["offset"];  // inside b
  {
    std::fstream f(dir / "tensors.bin", std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(std::streamoff(off + 3));
    char c = 0;
    f.read(&c, 1);
    c = char(c ^ 0x10);
    f.seekp(std::streamoff(off + 3));
    f.write(&c, 1);
  }
  mh_checkpoint_reader* r = nullptr;
  ASSERT_TRUE(open(dir, &r).ok());
  HostTensor a(a_.dl.dtype, a_.shape, 0), b(b_.dl.dtype, b_.shape, 0);
  EXPECT_TRUE(Result(api_->reader_tensor(r, "a", &a.dl)).ok()) << "an intact entry still reads";
  const Result bad(api_->reader_tensor(r, "b", &b.dl));
  EXPECT_EQ(bad.code, MH_ERR_DATA_LOSS) << bad.message;
  EXPECT_TRUE(bad.says("'b'")) << bad.message;
  EXPECT_TRUE(bad.says("tensors.bin")) << bad.message;
  EXPECT_TRUE(bad.says("HINT: ")) << bad.message;
  EXPECT_TRUE(bad.says("older checkpoint")) << bad.message;
  api_->reader_close(r);
}

TEST_F(MhTensors, CorruptBlobIsDataLoss) {
  const fs::path dir = root_ / "ck";
  write_small(dir);
  const uint64_t off = index_of(dir)["entries"][2]["offset"];
  {
    std::fstream f(dir / "tensors.bin", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(std::streamoff(off));
    f.write("J", 1);
  }
  mh_checkpoint_reader* r = nullptr;
  ASSERT_TRUE(open(dir, &r).ok());
  char buf[16];
  size_t len = 0;
  const Result bad(api_->reader_blob(r, "c", buf, sizeof buf, &len));
  EXPECT_EQ(bad.code, MH_ERR_DATA_LOSS) << bad.message;
  EXPECT_TRUE(bad.says("'c'")) << bad.message;
  api_->reader_close(r);
}

TEST_F(MhTensors, TruncatedDataFileFailsAtOpenNamingTheEntry) {
  const fs::path dir = root_ / "ck";
  write_small(dir);
  const uint64_t b_off = index_of(dir)["entries"][1]["offset"];
  fs::resize_file(dir / "tensors.bin", b_off + 8);  // cuts into b (40 bytes)
  mh_checkpoint_reader* r = nullptr;
  const Result res = open(dir, &r);
  EXPECT_EQ(res.code, MH_ERR_DATA_LOSS) << res.message;
  EXPECT_TRUE(res.says("truncated")) << res.message;
  EXPECT_TRUE(res.says("'b'")) << res.message;
  EXPECT_EQ(r, nullptr) << "out-param untouched on error";
}

TEST_F(MhTensors, MissingIndexIsNotFound) {
  const fs::path dir = root_ / "ck";
  write_small(dir);
  fs::remove(dir / "index.json");
  mh_checkpoint_reader* r = nullptr;
  const Result res = open(dir, &r);
  EXPECT_EQ(res.code, MH_ERR_NOT_FOUND) << res.message;
  EXPECT_TRUE(res.says("index.json")) << res.message;
  EXPECT_TRUE(res.says("HINT")) << res.message;
}

TEST_F(MhTensors, MissingDataFileIsNotFound) {
  const fs::path dir = root_ / "ck";
  write_small(dir);
  fs::remove(dir / "tensors.bin");
  mh_checkpoint_reader* r = nullptr;
  const Result res = open(dir, &r);
  EXPECT_EQ(res.code, MH_ERR_NOT_FOUND) << res.message;
  EXPECT_TRUE(res.says("tensors.bin")) << res.message;
}

TEST_F(MhTensors, DamagedIndexNamesTheFileAndTheProblem) {
  const fs::path dir = root_ / "ck";
  write_small(dir);
  const json good = index_of(dir);
  mh_checkpoint_reader* r = nullptr;

  write_index(dir, "{\"format\": \"megahost-tensors\", ");  // cut short
  Result res = open(dir, &r);
  EXPECT_EQ(res.code, MH_ERR_DATA_LOSS) << res.message;
  EXPECT_TRUE(res.says("index.json")) << res.message;
  EXPECT_TRUE(res.says("not valid JSON")) << res.message;

  json no_crc = good;
  no_crc["entries"][1].erase("crc32");
  write_index(dir, no_crc.dump());
  res = open(dir, &r);
  EXPECT_EQ(res.code, MH_ERR_DATA_LOSS) << res.message;
  EXPECT_TRUE(res.says("entry 'b'")) << res.message;
  EXPECT_TRUE(res.says("crc32")) << res.message;

  json bad_size = good;
  bad_size["entries"][0]["nbytes"] = 4;
  write_index(dir, bad_size.dump());
  res = open(dir, &r);
  EXPECT_EQ(res.code, MH_ERR_DATA_LOSS) << res.message;
  EXPECT_TRUE(res.says("entry 'a'")) << res.message;

  json other = good;
  other["format"] = "torch_dist";
  write_index(dir, other.dump());
  res = open(dir, &r);
  EXPECT_EQ(res.code, MH_ERR_INVALID_ARG) << res.message;
  EXPECT_TRUE(res.says("torch_dist")) << res.message;

  json newer = good;
  newer["version"] = 2;
  write_index(dir, newer.dump());
  res = open(dir, &r);
  EXPECT_EQ(res.code, MH_ERR_UNSUPPORTED) << res.message;
  EXPECT_EQ(r, nullptr);
}

TEST_F(MhTensors, ReservedAndUnknownFieldsAreIgnored) {
  const fs::path dir = root_ / "ck";
  write_small(dir);
  json j = index_of(dir);
  j["entries"][0]["global_shape"] = {4, 3};
  j["entries"][0]["slice"] = {{0, 2}, {0, 3}};
  j["written_by"] = "a future megahost";
  write_index(dir, j.dump());
  mh_checkpoint_reader* r = nullptr;
  ASSERT_TRUE(open(dir, &r).ok());
  HostTensor a(a_.dl.dtype, a_.shape, 0);
  ASSERT_TRUE(Result(api_->reader_tensor(r, "a", &a.dl)).ok());
  EXPECT_EQ(a.bytes, a_.bytes);
  api_->reader_close(r);
}

TEST_F(MhTensors, ShapeAndDtypeMismatchesNameBoth) {
  write_small(root_ / "ck");
  mh_checkpoint_reader* r = nullptr;
  ASSERT_TRUE(open(root_ / "ck", &r).ok());
  HostTensor wrong_shape(a_.dl.dtype, {3, 2}, 0);
  Result res(api_->reader_tensor(r, "a", &wrong_shape.dl));
  EXPECT_EQ(res.code, MH_ERR_INVALID_ARG) << res.message;
  EXPECT_TRUE(res.says("[2, 3]") && res.says("[3, 2]")) << res.message;
  EXPECT_TRUE(res.says("'a'")) << res.message;

  HostTensor wrong_dtype({kDLFloat, 64, 1}, {2, 3}, 0);
  res = Result(api_->reader_tensor(r, "a", &wrong_dtype.dl));
  EXPECT_EQ(res.code, MH_ERR_INVALID_ARG) << res.message;
  EXPECT_TRUE(res.says("float32") && res.says("float64")) << res.message;

  res = Result(api_->reader_tensor(r, "no_such_entry", &wrong_dtype.dl));
  EXPECT_EQ(res.code, MH_ERR_NOT_FOUND) << res.message;
  EXPECT_TRUE(res.says("no_such_entry")) << res.message;

  char buf[8];
  size_t len = 0;
  res = Result(api_->reader_blob(r, "a", buf, sizeof buf, &len));
  EXPECT_EQ(res.code, MH_ERR_INVALID_ARG) << "a tensor is not a blob: " << res.message;
  api_->reader_close(r);
}

TEST_F(MhTensors, AbortLeavesNothing) {
  const fs::path dir = root_ / "staging" / "iter_0000020";
  mh_checkpoint_writer* w = nullptr;
  ASSERT_TRUE(Result(api_->writer_open(ck_, dir.c_str(), &w)).ok());
  ASSERT_TRUE(Result(api_->writer_tensor(w, "a", &a_.dl)).ok());
  ASSERT_TRUE(Result(api_->writer_blob(w, "c", "x", 1)).ok());
  api_->writer_abort(w);
  EXPECT_FALSE(fs::exists(root_ / "staging")) << "folders the writer created are gone";

  // A folder that existed before stays, empty.
  const fs::path existing = root_ / "existing";
  fs::create_directories(existing);
  ASSERT_TRUE(Result(api_->writer_open(ck_, existing.c_str(), &w)).ok());
  ASSERT_TRUE(Result(api_->writer_tensor(w, "a", &a_.dl)).ok());
  api_->writer_abort(w);
  EXPECT_TRUE(fs::is_empty(existing));
  api_->writer_abort(nullptr);  // accepts NULL
}

TEST_F(MhTensors, WriterRefusesDuplicatesDeviceMemoryAndCommittedFolders) {
  const fs::path dir = root_ / "ck";
  mh_checkpoint_writer* w = nullptr;
  ASSERT_TRUE(Result(api_->writer_open(ck_, dir.c_str(), &w)).ok());
  ASSERT_TRUE(Result(api_->writer_tensor(w, "a", &a_.dl)).ok());
  Result res(api_->writer_tensor(w, "a", &b_.dl));
  EXPECT_EQ(res.code, MH_ERR_INVALID_ARG);
  EXPECT_TRUE(res.says("'a'")) << res.message;

  DLTensor on_gpu = b_.dl;
  on_gpu.device = {kDLCUDA, 0};
  res = Result(api_->writer_tensor(w, "gpu", &on_gpu));
  EXPECT_EQ(res.code, MH_ERR_INVALID_ARG) << res.message;

  int64_t strides[2] = {1, 2};  // column-major: not contiguous
  DLTensor strided = a_.dl;
  strided.strides = strides;
  res = Result(api_->writer_tensor(w, "strided", &strided));
  EXPECT_EQ(res.code, MH_ERR_INVALID_ARG) << res.message;

  ASSERT_TRUE(Result(api_->writer_commit(w)).ok()) << "failed writes do not spoil the checkpoint";
  mh_checkpoint_writer* again = nullptr;
  res = Result(api_->writer_open(ck_, dir.c_str(), &again));
  EXPECT_EQ(res.code, MH_ERR_INVALID_ARG) << res.message;
  EXPECT_TRUE(res.says("already holds")) << res.message;
  EXPECT_EQ(again, nullptr);
}

}  // namespace
