// megahost preprocess end to end through core::preprocess / core::merge_datasets (and bin/megahost
// for exit codes): several inputs, globs, gzip/zstd, merge, sentence splitting, errors.
#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "megahost/core/plugins.h"
#include "megahost/core/preprocess.h"

namespace core = megahost::core;
namespace fs = std::filesystem;

namespace {

const core::PluginRegistry& registry() {
  static const core::PluginRegistry reg(core::PluginRegistry::default_search_path());
  return reg;
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

std::string gzip(const std::string& data, int members = 1) {
  std::string out;
  const size_t per = data.size() / static_cast<size_t>(members) + 1;
  for (size_t off = 0; off < data.size(); off += per) {  // concatenated members, as `cat a.gz b.gz`
    const std::string part = data.substr(off, per);
    z_stream z{};
    deflateInit2(&z, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
    std::string buf(deflateBound(&z, part.size()) + 64, '\0');
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(part.data()));
    z.avail_in = static_cast<uInt>(part.size());
    z.next_out = reinterpret_cast<Bytef*>(buf.data());
    z.avail_out = static_cast<uInt>(buf.size());
    EXPECT_EQ(deflate(&z, Z_FINISH), Z_STREAM_END);
    buf.resize(z.total_out);
    deflateEnd(&z);
    out += buf;
  }
  return out;
}

std::string zstd(const std::string& data, int frames = 1) {
  std::string out;
  const size_t per = data.size() / static_cast<size_t>(frames) + 1;
  for (size_t off = 0; off < data.size(); off += per) {
    const std::string part = data.substr(off, per);
    std::string buf(ZSTD_compressBound(part.size()), '\0');
    const size_t n = ZSTD_compress(buf.data(), buf.size(), part.data(), part.size(), 3);
    EXPECT_FALSE(ZSTD_isError(n));
    buf.resize(n);
    out += buf;
  }
  return out;
}

// A corpus of `docs` JSON lines with escapes, unicode, blank-free; about `docs` * 100 bytes.
std::string corpus(int docs, int seed) {
  std::string s;
  for (int i = 0; i < docs; ++i) {
    s += "{\"id\": " + std::to_string(i) + ", \"text\": \"Doc " + std::to_string(seed) + "-" + std::to_string(i) +
         ". Caf\\u00e9 \\\"quoted\\\"\\nnew line \xE4\xB8\xAD " + std::string(static_cast<size_t>(i % 97), 'x') +
         (i % 13 == 0 ? "" : " The end.") + "\"}\n";
    if (i % 50 == 7) s += "{\"text\": \"\"}\n";  // empty document
  }
  return s;
}

class Preprocess : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("megahost_preprocess_test_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::vector<fs::path> all;  // file by file (remove_all misbehaves with some libtorch builds)
    for (const auto& e : fs::recursive_directory_iterator(dir_)) all.push_back(e.path());
    for (auto it = all.rbegin(); it != all.rend(); ++it) fs::remove(*it);
    fs::remove(dir_);
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  core::PreprocessOptions options(std::vector<std::string> inputs, const std::string& out) const {
    core::PreprocessOptions o;
    o.inputs = std::move(inputs);
    o.output_prefix = path(out);
    o.tokenizer_type = "ByteLevelTokenizer";
    o.append_eod = true;
    o.workers = 2;
    o.log_interval = 0;
    return o;
  }
  // The .bin and .idx bytes of <out>_text_document.
  std::string run(std::vector<std::string> inputs, const std::string& out, int workers = 2) {
    auto o = options(std::move(inputs), out);
    o.workers = workers;
    core::preprocess(o, registry());
    return read_bytes(path(out) + "_text_document.bin") + "|" + read_bytes(path(out) + "_text_document.idx");
  }
  std::string error_of(const core::PreprocessOptions& o) {
    try {
      core::preprocess(o, registry());
    } catch (const std::exception& e) {
      return e.what();
    }
    return "";
  }

  fs::path dir_;
};

TEST_F(Preprocess, SeveralInputsEqualTheirConcatenation) {
  const std::string a = corpus(300, 1), b = corpus(200, 2), c = corpus(5, 3);
  write_bytes(path("a.jsonl"), a);
  write_bytes(path("b.jsonl"), b);
  write_bytes(path("c.jsonl"), c);
  write_bytes(path("all.jsonl"), a + b + c);
  const std::string whole = run({path("all.jsonl")}, "whole");
  EXPECT_EQ(run({path("a.jsonl"), path("b.jsonl"), path("c.jsonl")}, "parts"), whole);
  EXPECT_NE(run({path("b.jsonl"), path("a.jsonl"), path("c.jsonl")}, "swapped"), whole);  // order matters
  // A last line without '\n' still ends at its file's end.
  write_bytes(path("a_no_newline.jsonl"), a.substr(0, a.size() - 1));
  EXPECT_EQ(run({path("a_no_newline.jsonl"), path("b.jsonl"), path("c.jsonl")}, "no_newline"), whole);
}

TEST_F(Preprocess, OutputDoesNotDependOnWorkers) {
  write_bytes(path("big.jsonl"), corpus(20000, 4));  // ~2.5 MB: several 512 KB blocks
  const std::string one = run({path("big.jsonl")}, "w1", 1);
  EXPECT_EQ(run({path("big.jsonl")}, "w3", 3), one);
}

TEST_F(Preprocess, GzipAndZstdEqualPlain) {
  const std::string text = corpus(20000, 5);  // larger than the 1 MB read buffer when compressed? no: many reads anyway
  write_bytes(path("plain.jsonl"), text);
  write_bytes(path("one.jsonl.gz"), gzip(text));
  write_bytes(path("members.jsonl.gz"), gzip(text, 3));
  write_bytes(path("one.jsonl.zst"), zstd(text));
  write_bytes(path("frames.jsonl.zst"), zstd(text, 3));
  write_bytes(path("gzip_named.jsonl"), gzip(text));  // detected by magic bytes, not by name
  const std::string plain = run({path("plain.jsonl")}, "plain");
  for (const char* f : {"one.jsonl.gz", "members.jsonl.gz", "one.jsonl.zst", "frames.jsonl.zst", "gzip_named.jsonl"}) {
    SCOPED_TRACE(f);
    EXPECT_EQ(run({path(f)}, std::string("out_") + f), plain);
  }
  // Mixed in one list: one stream.
  const std::string half = corpus(100, 6);
  write_bytes(path("h.jsonl"), half);
  write_bytes(path("h.jsonl.zst"), zstd(half));
  write_bytes(path("h.jsonl.gz"), gzip(half));
  EXPECT_EQ(run({path("h.jsonl.gz"), path("h.jsonl.zst"), path("h.jsonl")}, "mixed"),
            run({path("h.jsonl"), path("h.jsonl"), path("h.jsonl")}, "mixed_plain"));
}

TEST_F(Preprocess, GlobsAreSortedByName) {
  fs::create_directories(path("shards"));
  write_bytes(path("shards/part_b.jsonl"), corpus(30, 7));
  write_bytes(path("shards/part_a.jsonl"), corpus(40, 8));
  write_bytes(path("shards/part_c.jsonl.gz"), gzip(corpus(50, 9)));
  write_bytes(path("shards/other.jsonl"), corpus(60, 10));
  const std::string explicit_order =
      run({path("shards/part_a.jsonl"), path("shards/part_b.jsonl"), path("shards/part_c.jsonl.gz"),
           path("shards/other.jsonl")},
          "explicit");
  EXPECT_EQ(run({path("shards/part_*"), path("shards/other.jsonl")}, "globbed"), explicit_order);
  const std::string err = error_of(options({path("shards/none_*.jsonl")}, "none"));
  EXPECT_NE(err.find("none_*.jsonl: no file matches"), std::string::npos) << err;
}

TEST_F(Preprocess, MergeEqualsOneWrite) {
  const std::string a = corpus(120, 11), b = corpus(80, 12), c = corpus(1, 13);
  write_bytes(path("a.jsonl"), a);
  write_bytes(path("b.jsonl"), b);
  write_bytes(path("c.jsonl"), c);
  const std::string whole = run({path("a.jsonl"), path("b.jsonl"), path("c.jsonl")}, "whole");
  fs::create_directories(path("shards"));
  run({path("a.jsonl")}, "shards/s0");
  run({path("b.jsonl")}, "shards/s1");
  run({path("c.jsonl")}, "shards/s2");
  // Megatron's form: a folder, shards sorted by name.
  core::MergeStats s = core::merge_datasets({path("shards")}, path("merged"), registry());
  EXPECT_EQ(s.shards.size(), 3u);
  EXPECT_EQ(read_bytes(path("merged.bin")) + "|" + read_bytes(path("merged.idx")), whole);
  // Prefixes in a given order.
  core::merge_datasets({path("shards/s0_text_document"), path("shards/s1_text_document.idx"),
                        path("shards/s2_text_document")},
                       path("merged2"), registry());
  EXPECT_EQ(read_bytes(path("merged2.bin")) + "|" + read_bytes(path("merged2.idx")), whole);
  // A shard without its .idx is named.
  write_bytes(path("shards/lonely.bin"), "xx");
  try {
    core::merge_datasets({path("shards")}, path("merged3"), registry());
    ADD_FAILURE() << "no error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("lonely.bin has no .idx"), std::string::npos) << e.what();
  }
}

TEST_F(Preprocess, SplitSentencesLayout) {
  write_bytes(path("s.jsonl"),
              "{\"text\": \"Hello there. How are you? Fine!\"}\n"
              "{\"text\": \"\"}\n"
              "{\"text\": \"Mr. Smith went to Washington.\\nHe left.\"}\n"
              "{\"text\": \"one sentence only\"}\n");
  auto o = options({path("s.jsonl")}, "split");
  o.split_sentences = true;
  const core::PreprocessStats st = core::preprocess(o, registry());
  ASSERT_EQ(st.outputs, std::vector<std::string>{path("split") + "_text_sentence"});
  auto format = registry().create_dataset("mmap-indexed", core::ConfigSection{});
  {
    auto r = format->open_reader(path("split_text_sentence"));
    // Byte-level: one token per byte, EOD (256) appended to each non-empty document's last sentence.
    EXPECT_EQ(r->sequence_lengths(), (std::vector<int32_t>{12, 12, 5 + 1, 29, 8 + 1, 17 + 1}));
    EXPECT_EQ(r->document_indices(), (std::vector<int64_t>{0, 3, 3, 5, 6}));
    std::vector<int64_t> last(9);
    r->read(4, 0, 9, last.data());
    EXPECT_EQ(last, (std::vector<int64_t>{'H', 'e', ' ', 'l', 'e', 'f', 't', '.', 256}));
  }
  o.keep_newlines = true;
  o.output_prefix = path("keep");
  core::preprocess(o, registry());
  auto r = format->open_reader(path("keep_text_sentence"));
  // "Hello there. " and "How are you? " keep their space; "Washington.\n" its newline.
  EXPECT_EQ(r->sequence_lengths(), (std::vector<int32_t>{13, 13, 5 + 1, 30, 8 + 1, 17 + 1}));
  EXPECT_EQ(r->document_indices(), (std::vector<int64_t>{0, 3, 3, 5, 6}));
}

TEST_F(Preprocess, SeveralKeysGiveSeveralOutputs) {
  write_bytes(path("k.jsonl"), "{\"title\": \"T\", \"text\": \"body\"}\n{\"title\": \"\", \"text\": \"xy\"}\n");
  auto o = options({path("k.jsonl")}, "keys");
  o.json_keys = {"text", "title"};
  core::preprocess(o, registry());
  auto format = registry().create_dataset("mmap-indexed", core::ConfigSection{});
  EXPECT_EQ(format->open_reader(path("keys_text_document"))->sequence_lengths(), (std::vector<int32_t>{5, 3}));
  EXPECT_EQ(format->open_reader(path("keys_title_document"))->sequence_lengths(), (std::vector<int32_t>{2}));
  EXPECT_EQ(format->open_reader(path("keys_title_document"))->document_indices(), (std::vector<int64_t>{0, 1, 1}));
}

TEST_F(Preprocess, ErrorsNameTheFileAndLine) {
  const std::string good = corpus(10, 14);
  write_bytes(path("good.jsonl"), good);
  write_bytes(path("bad.jsonl"), good + "{\"text\": \"ok\"}\n{\"text\": \"bad \\q escape\"}\n");
  std::string err = error_of(options({path("good.jsonl"), path("bad.jsonl")}, "bad"));
  EXPECT_NE(err.find(path("bad.jsonl") + ":" + std::to_string(10 + 1 + 2) + ": not valid JSON"), std::string::npos)
      << err;
  EXPECT_FALSE(fs::exists(path("bad_text_document.bin")));

  err = error_of(options({path("good.jsonl"), path("missing.jsonl")}, "missing"));
  EXPECT_NE(err.find(path("missing.jsonl") + ": cannot open input"), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(path("missing_text_document.bin")));

  std::string gz = gzip(good + good + good);
  write_bytes(path("truncated.jsonl.gz"), gz.substr(0, gz.size() / 2));
  err = error_of(options({path("truncated.jsonl.gz")}, "truncated"));
  EXPECT_NE(err.find(path("truncated.jsonl.gz") + ": truncated gzip stream"), std::string::npos) << err;

  gz[gz.size() / 2] = static_cast<char>(gz[gz.size() / 2] ^ 0x55);
  gz[gz.size() / 2 + 1] = static_cast<char>(gz[gz.size() / 2 + 1] ^ 0xAA);
  write_bytes(path("corrupt.jsonl.gz"), std::string("\x1f\x8b\x08\x00garbage garbage garbage", 28));
  err = error_of(options({path("corrupt.jsonl.gz")}, "corrupt"));
  EXPECT_NE(err.find(path("corrupt.jsonl.gz") + ": not valid gzip data"), std::string::npos) << err;

  const std::string zs = zstd(good);
  write_bytes(path("truncated.jsonl.zst"), zs.substr(0, zs.size() - 3));
  err = error_of(options({path("truncated.jsonl.zst")}, "truncated_zst"));
  EXPECT_NE(err.find(path("truncated.jsonl.zst")), std::string::npos) << err;

  auto o = options({path("good.jsonl")}, "split_array");
  write_bytes(path("array.jsonl"), "{\"text\": [\"a.\", \"b.\"]}\n");
  o.inputs = {path("array.jsonl")};
  o.split_sentences = true;
  err = error_of(o);
  EXPECT_NE(err.find(path("array.jsonl") + ":1: field 'text' is already split"), std::string::npos) << err;
}

TEST_F(Preprocess, CommandLineExitsNonZeroNamingTheFile) {
  write_bytes(path("ok.jsonl"), corpus(3, 15));
  const std::string out = path("cli.txt");
  const std::string cmd = std::string(MEGAHOST_BINARY_DIR) + "/bin/megahost preprocess --input " + path("ok.jsonl") +
                          " --input " + path("gone.jsonl") + " --output-prefix " + path("cli") +
                          " --tokenizer-type ByteLevelTokenizer > " + out + " 2>&1";
  const int rc = std::system(cmd.c_str());
  EXPECT_NE(rc, 0);
  EXPECT_NE(read_bytes(out).find("gone.jsonl: cannot open input"), std::string::npos) << read_bytes(out);
  // And the happy path with a glob and --merge.
  ASSERT_EQ(std::system((std::string(MEGAHOST_BINARY_DIR) + "/bin/megahost preprocess --input '" + path("ok.js*") +
                         "' --output-prefix " + path("cli") + " --tokenizer-type ByteLevelTokenizer --log-interval 1 > " +
                         out + " 2>&1")
                            .c_str()),
            0)
      << read_bytes(out);
  EXPECT_NE(read_bytes(out).find("documents"), std::string::npos);
  ASSERT_EQ(std::system((std::string(MEGAHOST_BINARY_DIR) + "/bin/megahost preprocess --merge --input " +
                         path("cli_text_document") + " --input " + path("cli_text_document") + " --output-prefix " +
                         path("twice") + " > " + out + " 2>&1")
                            .c_str()),
            0)
      << read_bytes(out);
  EXPECT_EQ(fs::file_size(path("twice.bin")), 2 * fs::file_size(path("cli_text_document.bin")));
}

TEST_F(Preprocess, Gpt2MatchesTheCheckedInMegatronOutput) {
  // .data/brown_text_document.* is written by scripts/demo.sh; compare when both exist.
  const std::string data = MEGAHOST_FETCHED_DATA_DIR;
  if (!fs::exists(data + "/npm/gpt2/package/encoder.json") || !fs::exists(data + "/brown.jsonl"))
    GTEST_SKIP() << "run scripts/fetch_data.sh for the GPT-2 files and the Brown corpus";
  // Brown split in two gzip + zstd files == Brown in one plain file, with GPT-2.
  const std::string brown = read_bytes(data + "/brown.jsonl");
  const size_t cut = brown.find('\n', brown.size() / 2) + 1;
  write_bytes(path("b1.jsonl.gz"), gzip(brown.substr(0, cut)));
  write_bytes(path("b2.jsonl.zst"), zstd(brown.substr(cut)));
  auto o = options({path("b1.jsonl.gz"), path("b2.jsonl.zst")}, "brown");
  o.tokenizer_type = "GPT2BPETokenizer";
  o.vocab_file = data + "/npm/gpt2/package/encoder.json";
  o.merge_file = data + "/npm/gpt2/package/vocab.bpe";
  core::preprocess(o, registry());
  o.inputs = {data + "/brown.jsonl"};
  o.output_prefix = path("brown_plain");
  core::preprocess(o, registry());
  EXPECT_TRUE(read_bytes(path("brown_text_document.bin")) == read_bytes(path("brown_plain_text_document.bin")));
  EXPECT_TRUE(read_bytes(path("brown_text_document.idx")) == read_bytes(path("brown_plain_text_document.idx")));
}

}  // namespace
