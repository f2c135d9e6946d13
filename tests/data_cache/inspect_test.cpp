// `megahost data inspect` as a user runs it: text and --json summaries of a tiny dataset,
// sequence / document / GPT sample decoding, and exit code 1 with a clear message for broken files.
// Each run of the binary costs about a second (libtorch loading): few runs, several checks each.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <nlohmann/json.hpp>

#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "megahost/core/data/gpt_dataset.h"
#include "megahost/core/plugins.h"
#include "scratch.h"

namespace core = megahost::core;
namespace data = megahost::core::data;
using namespace data_cache_test;

namespace {

const std::string kMegahost = std::string(MEGAHOST_BINARY_DIR) + "/bin/megahost";

struct Result {
  int code = -1;
  std::string out;  // stdout, plus stderr when asked
};

Result run_megahost(const std::string& args, bool with_stderr = true) {
  const std::string cmd = kMegahost + " " + args + (with_stderr ? " 2>&1" : " 2>/dev/null");
  Result r;
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int status = pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// Five sequences of 1, 2, 3, 9 and 20 tokens (token = 100 * sequence + position) in three
// documents {0, 1}, {2}, {3, 4}: 35 tokens, uint16.
const std::vector<int> kLengths = {1, 2, 3, 9, 20};

std::vector<int64_t> tokens_of(int seq) {
  std::vector<int64_t> t(static_cast<size_t>(kLengths[static_cast<size_t>(seq)]));
  for (size_t i = 0; i < t.size(); ++i) t[i] = 100 * seq + static_cast<int64_t>(i);
  return t;
}

std::string write_tiny(const fs::path& dir) {
  static const core::PluginRegistry reg(core::PluginRegistry::default_search_path());
  auto fmt = reg.create_dataset("mmap-indexed", core::parse_config_section("", "test.toml", "data"));
  const std::string prefix = (dir / "tiny_text_document").string();
  auto w = fmt->open_writer(prefix, MH_DTYPE_UINT16);
  for (int s = 0; s < 5; ++s) {
    std::vector<int32_t> t;
    for (int64_t v : tokens_of(s)) t.push_back(static_cast<int32_t>(v));
    w->add_sequence(t.data(), t.size());
    if (s == 1 || s == 2 || s == 4) w->end_document();
  }
  w->finalize();
  return prefix;
}

}  // namespace

TEST(DataInspect, TextSummary) {
  const std::string prefix = write_tiny(scratch());
  const Result r = run_megahost("data inspect " + prefix, false);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("dtype      uint16"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("sequences  5\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("documents  3\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("tokens     35\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(prefix + ".bin  70 bytes"), std::string::npos) << r.out;           // 35 x 2 bytes
  EXPECT_NE(r.out.find(prefix + ".idx  126 bytes"), std::string::npos) << r.out;          // 34 + 12 x 5 + 8 x 4
  EXPECT_NE(r.out.find("min 1  mean 7.0  max 20 tokens"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("       2 - 3                 2  #"), std::string::npos) << r.out;  // lengths 2 and 3
}

TEST(DataInspect, JsonWithDecodedSequenceDocumentAndSample) {
  const std::string prefix = write_tiny(scratch());
  const Result r = run_megahost("data inspect " + prefix +
                                " --json --tokenizer-type NullTokenizer --vocab-size 5000 --sequence 3 --document 2 "
                                "--sample 1 --seq-length 4 --split 1,0,0 --seed 5 --num-samples 20",
                            false);
  ASSERT_EQ(r.code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["dtype"], "uint16");
  EXPECT_EQ(j["sequences"], 5);
  EXPECT_EQ(j["documents"], 3);
  EXPECT_EQ(j["tokens"], 35);
  EXPECT_EQ(j["sequence_length"]["max"], 20);
  int64_t counted = 0;
  for (const auto& b : j["length_histogram"]) counted += b["sequences"].get<int64_t>();
  EXPECT_EQ(counted, 5);
  EXPECT_EQ(j["length_histogram"].size(), 4u);  // [1,1] [2,3] [8,15] [16,31]

  EXPECT_EQ(j["sequence"]["tokens"].get<std::vector<int64_t>>(), tokens_of(3));
  EXPECT_EQ(j["sequence"]["text"], "300 301 302 303 304 305 306 307 308");
  std::vector<int64_t> doc = tokens_of(3), last = tokens_of(4);
  doc.insert(doc.end(), last.begin(), last.end());
  EXPECT_EQ(j["document"]["tokens"].get<std::vector<int64_t>>(), doc);

  // The CLI's sample 1 is the library's GPTDataset sample 1 for the same split, length and seed.
  data::InMemoryTokenSource source;
  for (int s = 0; s < 5; ++s) source.add(tokens_of(s));
  data::GPTIndexConfig cfg;
  cfg.seq_length = 4;
  cfg.seed = 5;
  cfg.num_samples = 20;  // 3 epochs of 8 samples
  data::GPTDataset ds(source, {0, 5}, cfg, "tiny");
  std::vector<int64_t> want(5);
  ds.sample(1, want.data());
  EXPECT_EQ(j["sample"]["tokens"].get<std::vector<int64_t>>(), want);
  EXPECT_EQ(j["sample"]["seq_length"], 4);
  EXPECT_EQ(j["sample"]["epochs"], 3);
}

TEST(DataInspect, BrokenFilesExitOneWithTheFileNamed) {
  const fs::path dir = scratch();
  const std::string prefix = write_tiny(dir);
  const std::string idx = read_bytes(prefix + ".idx"), bin = read_bytes(prefix + ".bin");
  struct Case {
    const char* name;
    std::function<void()> damage;
    const char* says;
  };
  const Case cases[] = {
      {"bin truncated", [&] { write_bytes(prefix + ".bin", bin.substr(0, 50)); }, ".bin"},
      {"wrong magic", [&] { write_bytes(prefix + ".idx", "XXIDIDX" + idx.substr(7)); }, ".idx"},
      {"wrong version",
       [&] {
         std::string v = idx;
         v[9] = 7;
         write_bytes(prefix + ".idx", v);
       },
       "version"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    write_bytes(prefix + ".idx", idx);
    write_bytes(prefix + ".bin", bin);
    c.damage();
    const Result r = run_megahost("data inspect " + prefix);
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_NE(r.out.find("megahost data: error:"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find(c.says), std::string::npos) << r.out;
  }
  write_bytes(prefix + ".idx", idx);
  write_bytes(prefix + ".bin", bin);
  const Result range = run_megahost("data inspect " + prefix + " --sequence 5");
  EXPECT_EQ(range.code, 1) << range.out;
  EXPECT_NE(range.out.find("--sequence 5 is out of range"), std::string::npos) << range.out;
}
