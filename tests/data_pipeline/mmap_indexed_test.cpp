// The mmap-indexed plugin, loaded through core's PluginRegistry the way the host loads it:
// exact .idx/.bin bytes against the FORMATS.md §1 table, round trips for every dtype, shard
// merging, atomic publication, and clear errors for truncated or corrupt files.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "megahost/core/config.h"
#include "megahost/core/data/gpt_dataset.h"
#include "megahost/core/error.h"
#include "megahost/core/host_services.h"
#include "megahost/core/plugins.h"

namespace fs = std::filesystem;
namespace core = megahost::core;
namespace data = megahost::core::data;

namespace {

const core::PluginRegistry& registry() {
  static const core::PluginRegistry reg(core::PluginRegistry::default_search_path());
  return reg;
}

std::unique_ptr<core::DatasetFormat> format() {
  return registry().create_dataset("mmap-indexed", core::parse_config_section("", "test.toml", "data"));
}

// A fresh folder per test under one folder per run, removed when the run ends.
const fs::path& run_dir() {
  static const fs::path dir = fs::temp_directory_path() / ("mh_mmidx_test_" + std::to_string(::getpid()));
  return dir;
}

class RemoveRunDir : public ::testing::Environment {
 public:
  void TearDown() override { fs::remove_all(run_dir()); }
};
const auto* const kCleanup = ::testing::AddGlobalTestEnvironment(new RemoveRunDir);

fs::path scratch() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  const fs::path dir = run_dir() / (std::string(info->test_suite_name()) + "." + info->name());
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::string read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

template <typename T>
void put(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof(T));  // little-endian host
}

// The .idx exactly as FORMATS.md §1 lays it out, built independently of the plugin.
std::string expected_idx(uint8_t dtype, int itemsize, const std::vector<int32_t>& lengths,
                         const std::vector<int64_t>& doc_indices) {
  std::string out("MMIDIDX\0\0", 9);
  put<uint64_t>(out, 1);
  put<uint8_t>(out, dtype);
  put<uint64_t>(out, lengths.size());
  put<uint64_t>(out, doc_indices.size());
  for (int32_t n : lengths) put<int32_t>(out, n);
  int64_t pointer = 0;
  for (int32_t n : lengths) {
    put<int64_t>(out, pointer);
    pointer += static_cast<int64_t>(n) * itemsize;
  }
  for (int64_t d : doc_indices) put<int64_t>(out, d);
  return out;
}

// A corpus: documents of sequences of tokens.
using Doc = std::vector<std::vector<int32_t>>;

void write_docs(core::DatasetFormat& fmt, const std::string& prefix, mh_token_dtype dtype,
                const std::vector<Doc>& docs) {
  auto w = fmt.open_writer(prefix, dtype);
  for (const Doc& doc : docs) {
    for (const auto& seq : doc) w->add_sequence(seq.data(), seq.size());
    w->end_document();
  }
  w->finalize();
}

std::vector<Doc> random_docs(std::mt19937& rng, int n, int32_t lo, int32_t hi) {
  std::uniform_int_distribution<int> nseq(0, 3), len(0, 40);
  std::uniform_int_distribution<int32_t> tok(lo, hi);
  std::vector<Doc> docs(static_cast<size_t>(n));
  for (Doc& d : docs) {
    d.resize(static_cast<size_t>(nseq(rng)));
    for (auto& s : d) {
      s.resize(static_cast<size_t>(len(rng)));
      for (auto& t : s) t = tok(rng);
    }
  }
  return docs;
}

void flatten(const std::vector<Doc>& docs, std::vector<int32_t>* lengths, std::vector<int64_t>* doc_indices,
             std::vector<std::vector<int32_t>>* seqs) {
  doc_indices->assign(1, 0);
  for (const Doc& d : docs) {
    for (const auto& s : d) {
      lengths->push_back(static_cast<int32_t>(s.size()));
      seqs->push_back(s);
    }
    doc_indices->push_back(static_cast<int64_t>(lengths->size()));
  }
}

// Raw ABI access, for error codes and struct_size behaviour.
struct RawFormat {
  mh_dataset_format* fmt = nullptr;
  const mh_dataset_api* api = nullptr;
  RawFormat() {
    const auto& info = registry().find(core::PluginKind::Dataset, "mmap-indexed");
    const auto* f = static_cast<const mh_dataset_factory*>(info.factory);
    mh_dataset_create_args args{sizeof(mh_dataset_create_args), nullptr, "data"};
    core::throw_if_error(f->create("mmap-indexed", core::host_table(), &args, &fmt, &api), "create");
  }
  ~RawFormat() { api->destroy(fmt); }
  // Opens `prefix`; returns the error code and fills *message (MH_OK and a reader otherwise).
  mh_status_code open(const std::string& prefix, std::string* message, mh_dataset_reader** out = nullptr) {
    mh_dataset_reader* r = nullptr;
    mh_error* err = api->open_reader(fmt, prefix.c_str(), &r);
    const mh_status_code code = core::error_code(err);
    *message = err != nullptr ? core::error_message(err) : "";
    core::free_error(err);
    if (out != nullptr) *out = r;
    else api->reader_close(r);
    return code;
  }
};

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// The tiny hand-computed dataset (uint16): documents {[1,2,3]}, {[4], [5,6]}, {} (empty),
// {[65535]}: S = 4, lengths 3 1 2 1, pointers 0 6 8 12, document indices 0 1 3 3 4 (the empty
// document repeats 3, as Megatron's builder writes it), .bin = 7 tokens = 14 bytes.
const std::vector<Doc> kTiny = {{{1, 2, 3}}, {{4}, {5, 6}}, {}, {{65535}}};

}  // namespace

TEST(MMapIndexedPlugin, FoundByIdAndAliases) {
  for (const auto& r : registry().refused())
    EXPECT_NE(r.path.filename(), "libmegahost_dataset_mmap_indexed.so") << r.reason;
  const auto& p = registry().find(core::PluginKind::Dataset, "mmap-indexed");
  EXPECT_EQ(&registry().find(core::PluginKind::Dataset, "mmap"), &p);
  EXPECT_EQ(&registry().find(core::PluginKind::Dataset, "MMapIndexedDataset"), &p);
  EXPECT_EQ(p.config_schema, "{}");
}

TEST(MMapIndexedPlugin, ExactBytesOfATinyDataset) {
  const fs::path dir = scratch();
  const std::string prefix = (dir / "tiny_text_document").string();
  write_docs(*format(), prefix, MH_DTYPE_UINT16, kTiny);

  std::string idx("MMIDIDX\0\0", 9);
  put<uint64_t>(idx, 1);                                       // version
  put<uint8_t>(idx, 8);                                        // uint16
  put<uint64_t>(idx, 4);                                       // S
  put<uint64_t>(idx, 5);                                       // D
  for (int32_t n : {3, 1, 2, 1}) put<int32_t>(idx, n);         // lengths
  for (int64_t p : {0, 6, 8, 12}) put<int64_t>(idx, p);        // byte pointers
  for (int64_t d : {0, 1, 3, 3, 4}) put<int64_t>(idx, d);      // document indices
  ASSERT_EQ(idx.size(), 34u + 12u * 4u + 8u * 5u);
  const std::string got = read_bytes(prefix + ".idx");
  ASSERT_EQ(got.size(), idx.size());
  for (size_t i = 0; i < idx.size(); ++i) EXPECT_EQ(got[i], idx[i]) << "byte " << i;

  std::string bin;
  for (uint16_t t : {1, 2, 3, 4, 5, 6, 65535}) put<uint16_t>(bin, t);
  EXPECT_EQ(read_bytes(prefix + ".bin"), bin);
  // Nothing temporary left behind.
  for (const auto& e : fs::directory_iterator(dir)) EXPECT_NE(e.path().extension(), ".tmp") << e.path();
}

TEST(MMapIndexedPlugin, RoundTripEveryDtype) {
  const fs::path dir = scratch();
  auto fmt = format();
  struct Case { mh_token_dtype dtype; int itemsize; int32_t lo, hi; };
  const Case cases[] = {{MH_DTYPE_UINT8, 1, 0, 255},          {MH_DTYPE_INT8, 1, -128, 127},
                        {MH_DTYPE_INT16, 2, -32768, 32767},   {MH_DTYPE_INT32, 4, -2000000000, 2000000000},
                        {MH_DTYPE_INT64, 8, -2000000000, 2000000000}, {MH_DTYPE_FLOAT64, 8, -100000, 100000},
                        {MH_DTYPE_FLOAT32, 4, -16777216, 16777216},   {MH_DTYPE_UINT16, 2, 0, 65535}};
  std::mt19937 rng(42);
  for (const Case& c : cases) {
    SCOPED_TRACE(c.dtype);
    const std::string prefix = (dir / ("ds" + std::to_string(c.dtype))).string();
    const auto docs = random_docs(rng, 60, c.lo, c.hi);
    write_docs(*fmt, prefix, c.dtype, docs);
    std::vector<int32_t> lengths;
    std::vector<int64_t> doc_indices;
    std::vector<std::vector<int32_t>> seqs;
    flatten(docs, &lengths, &doc_indices, &seqs);
    EXPECT_EQ(read_bytes(prefix + ".idx"), expected_idx(static_cast<uint8_t>(c.dtype), c.itemsize, lengths, doc_indices));

    auto r = fmt->open_reader(prefix);
    EXPECT_EQ(r->dtype(), c.dtype);
    EXPECT_EQ(r->num_sequences(), lengths.size());
    EXPECT_EQ(r->num_documents(), docs.size());
    uint64_t tokens = 0;
    for (int32_t n : lengths) tokens += static_cast<uint64_t>(n);
    EXPECT_EQ(r->num_tokens(), tokens);
    EXPECT_EQ(read_bytes(prefix + ".bin").size(), tokens * static_cast<uint64_t>(c.itemsize));
    EXPECT_EQ(r->sequence_lengths(), lengths);
    EXPECT_EQ(r->document_indices(), doc_indices);
    for (size_t s = 0; s < seqs.size(); ++s) {
      std::vector<int64_t> got(seqs[s].size());
      r->read(s, 0, got.size(), got.data());
      ASSERT_EQ(got, std::vector<int64_t>(seqs[s].begin(), seqs[s].end())) << "sequence " << s;
      if (seqs[s].size() >= 3) {  // a slice from an offset
        std::vector<int64_t> part(2);
        r->read(s, 1, 2, part.data());
        EXPECT_EQ(part, (std::vector<int64_t>{seqs[s][1], seqs[s][2]}));
      }
    }
  }
}

TEST(MMapIndexedPlugin, MergingShardsEqualsWritingEverythingAtOnce) {
  const fs::path dir = scratch();
  auto fmt = format();
  std::mt19937 rng(7);
  const auto a = random_docs(rng, 40, 0, 50000);
  const auto b = random_docs(rng, 25, 0, 50000);
  const auto c = random_docs(rng, 30, 0, 50000);
  const std::string pa = (dir / "a").string(), pb = (dir / "b").string(), pc = (dir / "c").string();
  const std::string pe = (dir / "empty").string();
  write_docs(*fmt, pa, MH_DTYPE_UINT16, a);
  write_docs(*fmt, pb, MH_DTYPE_UINT16, b);
  write_docs(*fmt, pc, MH_DTYPE_UINT16, c);
  write_docs(*fmt, pe, MH_DTYPE_UINT16, {});  // S = 0, D = 1, empty .bin

  // Shards merged, with documents written directly in between.
  const std::string merged = (dir / "merged").string();
  {
    auto w = fmt->open_writer(merged, MH_DTYPE_UINT16);
    w->add_dataset(pa);
    w->add_dataset(pe);
    for (const auto& seq : b[0]) w->add_sequence(seq.data(), seq.size());
    w->end_document();
    w->add_dataset(pc);
    w->finalize();
  }
  std::vector<Doc> all(a);
  all.push_back(b[0]);
  all.insert(all.end(), c.begin(), c.end());
  const std::string direct = (dir / "direct").string();
  write_docs(*fmt, direct, MH_DTYPE_UINT16, all);
  EXPECT_EQ(read_bytes(merged + ".bin"), read_bytes(direct + ".bin"));
  EXPECT_EQ(read_bytes(merged + ".idx"), read_bytes(direct + ".idx"));

  // Merging shards only.
  const std::string merged2 = (dir / "merged2").string();
  {
    auto w = fmt->open_writer(merged2, MH_DTYPE_UINT16);
    for (const auto& p : {pa, pb, pc}) w->add_dataset(p);
    w->finalize();
  }
  std::vector<Doc> abc(a);
  abc.insert(abc.end(), b.begin(), b.end());
  abc.insert(abc.end(), c.begin(), c.end());
  write_docs(*fmt, direct, MH_DTYPE_UINT16, abc);
  EXPECT_EQ(read_bytes(merged2 + ".bin"), read_bytes(direct + ".bin"));
  EXPECT_EQ(read_bytes(merged2 + ".idx"), read_bytes(direct + ".idx"));
}

TEST(MMapIndexedPlugin, MergingAnotherDtypeIsRefused) {
  const fs::path dir = scratch();
  auto fmt = format();
  write_docs(*fmt, (dir / "wide").string(), MH_DTYPE_INT32, kTiny);
  auto w = fmt->open_writer((dir / "out").string(), MH_DTYPE_UINT16);
  try {
    w->add_dataset((dir / "wide").string());
    FAIL();
  } catch (const core::Error& e) {
    EXPECT_TRUE(contains(e.what(), "dtype int32 differs from this dataset's uint16")) << e.what();
    EXPECT_TRUE(contains(e.what(), "HINT")) << e.what();
  }
}

TEST(MMapIndexedPlugin, TokensMustFitTheDtype) {
  const fs::path dir = scratch();
  auto fmt = format();
  auto w = fmt->open_writer((dir / "x").string(), MH_DTYPE_UINT16);
  const int32_t big[] = {1, 70000};
  try {
    w->add_sequence(big, 2);
    FAIL();
  } catch (const core::Error& e) {
    EXPECT_TRUE(contains(e.what(), "token 70000 does not fit the dataset dtype uint16")) << e.what();
    EXPECT_TRUE(contains(e.what(), "HINT")) << e.what();
  }
  auto w8 = fmt->open_writer((dir / "y").string(), MH_DTYPE_INT8);
  const int32_t small[] = {-129};
  EXPECT_THROW(w8->add_sequence(small, 1), core::Error);
}

TEST(MMapIndexedPlugin, NothingVisibleUntilFinalizeAndAbortCleansUp) {
  const fs::path dir = scratch();
  auto fmt = format();
  const std::string prefix = (dir / "p").string();
  {
    auto w = fmt->open_writer(prefix, MH_DTYPE_UINT16);
    const int32_t t[] = {1, 2, 3};
    w->add_sequence(t, 3);
    w->end_document();
    EXPECT_FALSE(fs::exists(prefix + ".bin"));
    EXPECT_FALSE(fs::exists(prefix + ".idx"));
    EXPECT_TRUE(fs::exists(prefix + ".bin.tmp"));
  }  // destroyed without finalize: writer_abort
  EXPECT_TRUE(fs::is_empty(dir));
}

TEST(MMapIndexedPlugin, FinalizeWithAnOpenDocumentFails) {
  const fs::path dir = scratch();
  auto fmt = format();
  auto w = fmt->open_writer((dir / "p").string(), MH_DTYPE_UINT16);
  const int32_t t[] = {1, 2, 3};
  w->add_sequence(t, 3);
  w->end_document();
  w->add_sequence(t, 2);
  try {
    w->finalize();
    FAIL();
  } catch (const core::Error& e) {
    EXPECT_TRUE(contains(e.what(), "1 sequence(s) after the last end_document")) << e.what();
  }
  EXPECT_TRUE(fs::is_empty(dir));  // finalize freed the writer and removed its temporaries
}

TEST(MMapIndexedPlugin, WriterIntoAMissingFolderSaysSo) {
  try {
    format()->open_writer("/nonexistent-folder-for-mh-test/p", MH_DTYPE_UINT16);
    FAIL();
  } catch (const core::Error& e) {
    EXPECT_TRUE(contains(e.what(), "/nonexistent-folder-for-mh-test/p.bin.tmp")) << e.what();
    EXPECT_TRUE(contains(e.what(), "HINT: create the output folder first")) << e.what();
  }
}

// ---- corrupt and truncated files ----

class CorruptFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = scratch();
    good_ = (dir_ / "good").string();
    write_docs(*format(), good_, MH_DTYPE_UINT16, kTiny);
    idx_ = read_bytes(good_ + ".idx");
    bin_ = read_bytes(good_ + ".bin");
  }
  // Writes a variant next to the good files; returns its prefix.
  std::string variant(const std::string& name, const std::string& idx, const std::string& bin) {
    const std::string p = (dir_ / name).string();
    write_bytes(p + ".idx", idx);
    write_bytes(p + ".bin", bin);
    return p;
  }
  // Expects open to fail with `code` and a message holding the path, every part, and a HINT.
  void expect_error(const std::string& prefix, mh_status_code code, const std::vector<std::string>& parts,
                    const std::string& file = ".idx") {
    std::string msg;
    EXPECT_EQ(raw_.open(prefix, &msg), code) << msg;
    RecordProperty("message_" + fs::path(prefix).filename().string(), msg);  // --gtest_output=xml
    EXPECT_TRUE(contains(msg, prefix + file)) << msg;
    EXPECT_TRUE(contains(msg, "HINT")) << msg;
    for (const auto& p : parts) EXPECT_TRUE(contains(msg, p)) << "missing \"" << p << "\" in: " << msg;
  }
  std::string patched(size_t offset, const std::string& bytes) const {
    std::string s = idx_;
    s.replace(offset, bytes.size(), bytes);
    return s;
  }
  fs::path dir_;
  std::string good_, idx_, bin_;
  RawFormat raw_;
};

TEST_F(CorruptFiles, GoodFilesOpen) {
  std::string msg;
  EXPECT_EQ(raw_.open(good_, &msg), MH_OK) << msg;
}

TEST_F(CorruptFiles, TruncatedIdx) {
  expect_error(variant("t1", idx_.substr(0, idx_.size() - 1), bin_), MH_ERR_DATA_LOSS,
               {"truncated .idx: expected 122 bytes", "found 121", "interrupted"});
  expect_error(variant("t2", idx_.substr(0, 20), bin_), MH_ERR_DATA_LOSS,
               {"truncated .idx: expected at least 34 bytes", "found 20"});
  expect_error(variant("t3", "", bin_), MH_ERR_DATA_LOSS, {"found 0"});
}

TEST_F(CorruptFiles, TruncatedOrForeignBin) {
  expect_error(variant("b1", idx_, bin_.substr(0, 12)), MH_ERR_DATA_LOSS,
               {"truncated .bin: expected 14 bytes", "7 uint16 tokens", "found 12"}, ".bin");
  expect_error(variant("b2", idx_, bin_ + "xx"), MH_ERR_DATA_LOSS, {".bin is 16 bytes", "different runs"}, ".bin");
}

TEST_F(CorruptFiles, BadHeader) {
  expect_error(variant("h1", patched(0, "MMIDIDY"), bin_), MH_ERR_DATA_LOSS, {"MMIDIDX"});
  expect_error(variant("h2", patched(0, std::string("TNTIDX\0\0\0", 9)), bin_), MH_ERR_DATA_LOSS, {"TNTIDX"});
  expect_error(variant("h3", patched(9, std::string("\x02", 1)), bin_), MH_ERR_DATA_LOSS, {"index version 2"});
  expect_error(variant("h4", patched(17, std::string("\x09", 1)), bin_), MH_ERR_DATA_LOSS,
               {"unknown dtype code 9"});
  // S claimed 5 instead of 4: the arrays no longer fit the file.
  expect_error(variant("h5", patched(18, std::string("\x05", 1)), bin_), MH_ERR_DATA_LOSS,
               {"truncated .idx: expected 134 bytes for 5 sequences"});
}

TEST_F(CorruptFiles, TrailingBytesOnlyAsSequenceModes) {
  // S = 4 trailing bytes are multimodal sequence modes: accepted.
  std::string msg;
  EXPECT_EQ(raw_.open(variant("m1", idx_ + std::string(4, '\0'), bin_), &msg), MH_OK) << msg;
  expect_error(variant("m2", idx_ + std::string(3, '\0'), bin_), MH_ERR_DATA_LOSS,
               {".idx is 125 bytes, expected 122", "or 126 with sequence modes"});
}

TEST_F(CorruptFiles, BadArrays) {
  std::string eight;
  put<int64_t>(eight, 9);
  // pointers start at 34 + 4*4 = 50; pointer[2] at 66 should be 8.
  expect_error(variant("a1", patched(66, eight), bin_), MH_ERR_DATA_LOSS, {"sequence pointer 2 is 9, expected 8"});
  // document indices start at 34 + 12*4 = 82; entry 3 (= 3) at 106; set it to 2.
  std::string two;
  put<int64_t>(two, 2);
  expect_error(variant("a2", patched(106, two), bin_), MH_ERR_DATA_LOSS, {"document index 3 is 2 (previous 3)"});
  std::string neg;
  put<int32_t>(neg, -1);
  expect_error(variant("a3", patched(34, neg), bin_), MH_ERR_DATA_LOSS, {"sequence 0 has negative length -1"});
  std::string five;
  put<int64_t>(five, 5);  // last document index beyond S = 4
  expect_error(variant("a4", patched(114, five), bin_), MH_ERR_DATA_LOSS, {"document index 4 is 5"});
}

TEST_F(CorruptFiles, MissingFiles) {
  const std::string p = (dir_ / "nothing_here").string();
  expect_error(p, MH_ERR_NOT_FOUND, {"file not found", "without extension"});
  write_bytes(p + ".idx", idx_);  // .idx present, .bin missing
  expect_error(p, MH_ERR_NOT_FOUND, {"file not found"}, ".bin");
}

TEST_F(CorruptFiles, ReadsOutOfRangeAreInvalidArguments) {
  mh_dataset_reader* r = nullptr;
  std::string msg;
  ASSERT_EQ(raw_.open(good_, &msg, &r), MH_OK) << msg;
  int64_t out[8];
  int32_t lengths[8];
  const auto code = [](mh_error* e) {
    const auto c = core::error_code(e);
    core::free_error(e);
    return c;
  };
  EXPECT_EQ(code(raw_.api->reader_read(r, 0, 0, 3, out)), MH_OK);
  EXPECT_EQ(out[2], 3);
  EXPECT_EQ(code(raw_.api->reader_read(r, 0, 1, 3, out)), MH_ERR_INVALID_ARG);  // past the end
  EXPECT_EQ(code(raw_.api->reader_read(r, 4, 0, 1, out)), MH_ERR_INVALID_ARG);  // no sequence 4
  EXPECT_EQ(code(raw_.api->reader_read(r, 3, 0, 1, out)), MH_OK);
  EXPECT_EQ(out[0], 65535);  // uint16 widened, not sign-extended
  EXPECT_EQ(code(raw_.api->reader_sequence_lengths(r, 2, 3, lengths)), MH_ERR_INVALID_ARG);
  EXPECT_EQ(code(raw_.api->reader_document_indices(r, 0, 6, out)), MH_ERR_INVALID_ARG);
  EXPECT_EQ(code(raw_.api->reader_document_indices(r, 1, 4, out)), MH_OK);
  EXPECT_EQ(std::vector<int64_t>(out, out + 4), (std::vector<int64_t>{1, 3, 3, 4}));

  // reader_info fills only what the caller's struct has room for.
  mh_dataset_info info;
  std::memset(&info, 0xAB, sizeof(info));
  info.struct_size = offsetof(mh_dataset_info, num_documents);
  EXPECT_EQ(code(raw_.api->reader_info(r, &info)), MH_OK);
  EXPECT_EQ(info.num_sequences, 4u);
  EXPECT_EQ(info.num_documents, 0xABABABABABABABABull);
  raw_.api->reader_close(r);
}

// ---- the reader feeding GPT samples ----

namespace {

// The adapter the engine uses: core::DatasetReader as a data::TokenSource.
class ReaderSource : public data::TokenSource {
 public:
  explicit ReaderSource(const core::DatasetReader& r) : r_(r), lengths_(r.sequence_lengths()) {}
  uint64_t num_sequences() const override { return lengths_.size(); }
  const std::vector<int32_t>& sequence_lengths() const override { return lengths_; }
  void read(uint64_t seq, uint64_t offset, uint64_t count, int64_t* out) const override {
    r_.read(seq, offset, count, out);
  }

 private:
  const core::DatasetReader& r_;
  std::vector<int32_t> lengths_;
};

}  // namespace

TEST(MMapIndexedPlugin, GptSamplesFromFilesEqualSamplesFromMemory) {
  const fs::path dir = scratch();
  auto fmt = format();
  std::mt19937 rng(3);
  const auto docs = random_docs(rng, 400, 0, 50000);
  const std::string prefix = (dir / "corpus_text_document").string();
  write_docs(*fmt, prefix, MH_DTYPE_UINT16, docs);

  data::InMemoryTokenSource memory;
  for (const Doc& d : docs)
    for (const auto& s : d) memory.add(std::vector<int64_t>(s.begin(), s.end()));
  auto reader = fmt->open_reader(prefix);
  const ReaderSource files(*reader);
  ASSERT_EQ(files.sequence_lengths(), memory.sequence_lengths());

  const auto splits = data::split_sequence_ranges("949,50,1", static_cast<int64_t>(files.num_sequences()));
  for (int k = 0; k < 2; ++k) {
    data::GPTIndexConfig cfg;
    cfg.seq_length = 16;
    cfg.num_samples = k == 0 ? 2000 : 40;
    cfg.seed = 1234;
    const data::GPTDataset a(files, *splits[k], cfg, "files");
    const data::GPTDataset b(memory, *splits[k], cfg, "memory");
    ASSERT_EQ(a.size(), b.size());
    std::vector<int64_t> x(17), y(17);
    for (int64_t i = 0; i < a.size(); ++i) {
      a.sample(i, x.data());
      b.sample(i, y.data());
      ASSERT_EQ(x, y) << "split " << k << " sample " << i;
    }
  }
  // The reader is thread-safe: concurrent reads see the same tokens.
  std::vector<std::thread> threads;
  std::vector<int> mismatches(4, 0);
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      std::vector<int64_t> got, want;
      for (uint64_t s = 0; s < files.num_sequences(); ++s) {
        const auto n = static_cast<uint64_t>(files.sequence_lengths()[s]);
        got.resize(n);
        want.resize(n);
        files.read(s, 0, n, got.data());
        memory.read(s, 0, n, want.data());
        mismatches[static_cast<size_t>(t)] += got != want;
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(mismatches, (std::vector<int>{0, 0, 0, 0}));
}
