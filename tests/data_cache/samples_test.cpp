// build_gpt_samples over real .bin/.idx files: per-split data paths, the exclusive-keys error,
// and the same samples (blends included) on a restart that maps the cached indices.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "megahost/core/engine/samples.h"
#include "megahost/core/error.h"
#include "megahost/core/plugins.h"
#include "megahost/core/recipe.h"
#include "scratch.h"

namespace core = megahost::core;
using namespace data_cache_test;

namespace {

const core::PluginRegistry& registry() {
  static const core::PluginRegistry reg(core::PluginRegistry::default_search_path());
  return reg;
}

std::unique_ptr<core::DatasetFormat> format() {
  return registry().create_dataset("mmap-indexed", core::parse_config_section("", "test.toml", "data"));
}

// `n` sequences of 3..12 tokens, token values base + sequence * 16 + position (tells the source).
void write_dataset(const std::string& prefix, int n, int32_t base) {
  auto w = format()->open_writer(prefix, MH_DTYPE_INT32);
  for (int s = 0; s < n; ++s) {
    std::vector<int32_t> tokens(static_cast<size_t>(3 + s % 10));
    for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = base + s * 16 + static_cast<int32_t>(i);
    w->add_sequence(tokens.data(), tokens.size());
    w->end_document();
  }
  w->finalize();
}

core::Recipe recipe(const std::string& data_lines) {
  return core::parse_recipe("[data]\n" + data_lines + "\n[optimizer]\nlr = 1.0\n[training]\ntrain_iters = 1\n",
                            "test.toml");
}

std::vector<std::vector<int64_t>> all_samples(const core::SampleSource& s, int64_t seq_length) {
  std::vector<std::vector<int64_t>> out(s.size(), std::vector<int64_t>(static_cast<size_t>(seq_length + 1)));
  for (uint64_t i = 0; i < s.size(); ++i) s.sample(i, out[i].data());
  return out;
}

std::map<std::string, fs::file_time_type> mtimes(const fs::path& dir) {
  std::map<std::string, fs::file_time_type> out;
  for (const auto& e : fs::directory_iterator(dir)) out[e.path().string()] = fs::last_write_time(e.path());
  return out;
}

}  // namespace

TEST(GPTSamples, PerSplitPathsUseEachDatasetWhole) {
  const fs::path dir = scratch();
  const std::string a = (dir / "a").string(), b = (dir / "b").string();
  write_dataset(a, 40, 0);
  write_dataset(b, 30, 100000);
  auto fmt = format();
  const auto r = recipe("train_data_path = '" + a + "'\nvalid_data_path = ['1', '" + b + "']\nsplit = '1,1,1'\n" +
                        "data_cache_path = '" + (dir / "cache").string() + "'");
  core::SampleCounts counts;
  counts.train = 5;
  counts.valid = 3;
  counts.test = 2;
  const auto s = core::build_gpt_samples(r, *fmt, 4, counts, 1234);
  ASSERT_TRUE(s.train && s.valid);
  EXPECT_EQ(s.test, nullptr);  // no test_data_path: no test dataset, as Megatron
  // The split string is not applied: one epoch of all of a (40 sequences, 300 tokens) is
  // (300 - 1) / 4 = 74 samples; of all of b (30 sequences, 225 tokens) 56.
  EXPECT_EQ(s.train->size(), 74u);
  EXPECT_EQ(s.valid->size(), 56u);
  // Split "1,1,1" would give train only sequences [0, 13): samples reach far beyond.
  std::vector<bool> seen(40, false);
  for (const auto& x : all_samples(*s.train, 4))
    for (int64_t t : x) {
      ASSERT_LT(t, 100000);
      seen[static_cast<size_t>(t / 16)] = true;
    }
  EXPECT_GE(std::count(seen.begin(), seen.end(), true), 38);
  for (const auto& x : all_samples(*s.valid, 4))
    for (int64_t t : x) ASSERT_GE(t, 100000);
  // The cache holds one set per split, named as Megatron does.
  int train_files = 0, valid_files = 0;
  for (const auto& e : fs::directory_iterator(dir / "cache")) {
    const std::string name = e.path().filename().string();
    train_files += name.find("-GPTDataset-train-") != std::string::npos;
    valid_files += name.find("-GPTDataset-valid-") != std::string::npos;
  }
  EXPECT_EQ(train_files, 4);
  EXPECT_EQ(valid_files, 4);
}

TEST(GPTSamples, DataPathAndPerSplitPathsAreExclusive) {
  const fs::path dir = scratch();
  auto fmt = format();
  const auto r = recipe("data_path = 'x'\ntrain_data_path = 'y'");
  try {
    core::build_gpt_samples(r, *fmt, 4, {}, 1234);
    FAIL() << "no error";
  } catch (const core::Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("data.data_path and data.train_data_path are exclusive"), std::string::npos) << m;
    EXPECT_NE(m.find("test.toml:"), std::string::npos) << m;
  }
  try {
    core::build_gpt_samples(recipe("split = '1,0,0'"), *fmt, 4, {}, 1234);
    FAIL() << "no error";
  } catch (const core::Error& e) {
    EXPECT_NE(std::string(e.what()).find("needs data_path, or train_data_path"), std::string::npos) << e.what();
  }
  try {
    core::build_gpt_samples(recipe("valid_data_path = 'y'"), *fmt, 4, {1, 1, 0}, 1234);
    FAIL() << "no error";
  } catch (const core::Error& e) {
    EXPECT_NE(std::string(e.what()).find("no train_data_path"), std::string::npos) << e.what();
  }
}

TEST(GPTSamples, RestartMapsTheCacheAndGivesTheSameSamples) {
  const fs::path dir = scratch();
  const std::string a = (dir / "a").string(), b = (dir / "b").string();
  write_dataset(a, 40, 0);
  write_dataset(b, 30, 100000);
  auto fmt = format();
  const std::string cache = (dir / "cache").string();
  const auto r = recipe("data_path = ['0.3', '" + a + "', '0.7', '" + b + "']\nsplit = '90,10,0'\n" +
                        "data_cache_path = '" + cache + "'");
  core::SampleCounts counts;
  counts.train = 200;  // several epochs of each source
  counts.valid = 7;
  std::vector<std::vector<int64_t>> train, valid;
  {
    const auto s = core::build_gpt_samples(r, *fmt, 8, counts, 77);
    train = all_samples(*s.train, 8);
    valid = all_samples(*s.valid, 8);
  }
  const auto written = mtimes(cache);
  EXPECT_EQ(written.size(), 16u);  // 2 sources x 2 splits x 4 files
  const auto s = core::build_gpt_samples(r, *fmt, 8, counts, 77);
  EXPECT_EQ(all_samples(*s.train, 8), train);
  EXPECT_EQ(all_samples(*s.valid, 8), valid);
  EXPECT_EQ(mtimes(cache), written);  // nothing rebuilt or rewritten

  // Without data_cache_path: Megatron's default folder beside each prefix.
  const auto defaulted = core::build_gpt_samples(recipe("data_path = '" + a + "'\nsplit = '1,0,0'"), *fmt, 8, {10, 0, 0}, 1);
  EXPECT_EQ(defaulted.train->size(), 37u);  // (300 - 1) / 8
  EXPECT_TRUE(fs::is_directory(a + "/cache/GPTDataset_indices"));
}

// [data] mock_data = true (Megatron's --mock-data): every split from the mock documents, split
// by `split` over their 100,000 documents, no corpus, no cache folder, the same samples each time.
TEST(GPTSamples, MockDataBuildsEverySplitWithoutACorpus) {
  const auto r = recipe("mock_data = true\nsplit = '969,30,1'");
  core::SampleCounts counts;
  counts.train = 5;
  counts.valid = 3;
  counts.test = 2;
  constexpr int64_t kSeq = 1024;  // one epoch of the train split: ~193,000 samples
  auto first = [](const core::SampleSource& src, size_t n) {
    std::vector<std::vector<int64_t>> out(n, std::vector<int64_t>(kSeq + 1));
    for (size_t i = 0; i < n; ++i) src.sample(i, out[i].data());
    return out;
  };
  const auto s = core::build_mock_gpt_samples(r, kSeq, counts, 1234, 50257, 50256);
  ASSERT_TRUE(s.train && s.valid && s.test);
  EXPECT_TRUE(s.readers.empty());
  EXPECT_GE(s.train->size(), 5u);
  EXPECT_GE(s.test->size(), 2u);
  const auto again = core::build_mock_gpt_samples(r, kSeq, counts, 1234, 50257, 50256);
  EXPECT_EQ(first(*s.train, 20), first(*again.train, 20));
  // Every token is a mock token: runs of consecutive ids, each document ended by eod.
  for (const auto& sample : first(*s.valid, 3))
    for (size_t t = 1; t < sample.size(); ++t)
      EXPECT_TRUE(sample[t] == sample[t - 1] + 1 || sample[t] == 50256 || sample[t] == 1) << sample[t];
  // A different seed shuffles differently.
  const auto other = core::build_mock_gpt_samples(r, kSeq, counts, 99, 50257, 50256);
  EXPECT_NE(first(*s.train, 20), first(*other.train, 20));
}

TEST(GPTSamples, MockDataRefusesBertSamples) {
  try {
    core::build_mock_gpt_samples(recipe("mock_data = true\ndataset = 'bert'"), 16, {5, 0, 0}, 1, 50257, 50256);
    FAIL() << "expected an error";
  } catch (const core::Error& e) {
    EXPECT_NE(std::string(e.what()).find("mock_data"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("HINT"), std::string::npos) << e.what();
  }
}
