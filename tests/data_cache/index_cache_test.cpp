// The GPT index cache at the data layer: written once, then mapped; corrupt files rebuilt;
// Megatron's caches used when their description matches; rank != 0 waits for rank 0.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "megahost/core/data/index_cache.h"
#include "megahost/core/data/npy.h"
#include "megahost/core/error.h"
#include "scratch.h"

namespace data = megahost::core::data;
using namespace data_cache_test;

namespace {

std::vector<int32_t> corpus_lengths() {
  std::mt19937 gen(7);
  std::vector<int32_t> lengths(300);
  for (auto& n : lengths) n = 1 + static_cast<int32_t>(gen() % 60);
  return lengths;
}

data::GPTIndexConfig config(uint32_t seed = 1234) {
  data::GPTIndexConfig c;
  c.seq_length = 16;
  c.num_samples = 2000;  // several epochs of the train range
  c.seed = seed;
  return c;
}

struct Logged {
  std::vector<std::string> warnings;
  data::IndexCacheOptions options(const fs::path& folder) {
    data::IndexCacheOptions o;
    o.folder = folder.string();
    o.dataset_path = "/data/corpus_text_document";
    o.split = data::Split::Train;
    o.split_string = "969,30,1";
    o.log = [this](data::LogLevel l, const std::string& m) {
      if (l == data::LogLevel::Warn) warnings.push_back(m);
    };
    return o;
  }
};

const data::SequenceRange kTrain{0, 291};  // round(0.969 * 300) = 291

void expect_same(const data::GPTIndices& a, const data::GPTIndices& b) {
  EXPECT_EQ(a.document_index, b.document_index);
  EXPECT_EQ(a.sample_index.to_vector(), b.sample_index.to_vector());
  EXPECT_EQ(a.shuffle_index.to_vector(), b.shuffle_index.to_vector());
  EXPECT_EQ(a.sample_index.dtype(), b.sample_index.dtype());
  EXPECT_EQ(a.shuffle_index.dtype(), b.shuffle_index.dtype());
}

std::vector<fs::path> files_in(const fs::path& dir) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

TEST(IndexCache, WrittenOnceThenMapped) {
  const fs::path dir = scratch() / "cache";
  const auto lengths = corpus_lengths();
  Logged log;
  const auto ref = data::build_gpt_indices(lengths, kTrain, config(), "ref");

  auto first = data::load_or_build_gpt_indices(lengths, kTrain, config(), "corpus (train)", log.options(dir));
  EXPECT_EQ(first.origin, data::IndexOrigin::Built);
  expect_same(first.indices, ref);
  // Megatron's names: <md5>-GPTDataset-train-{description.txt,document_index,sample_index,shuffle_index}.npy
  const auto files = files_in(dir);
  ASSERT_EQ(files.size(), 4u);
  const std::string base = first.files;
  EXPECT_EQ(fs::path(base).filename().string().size(), 32u + std::string("-GPTDataset-train-").size());
  for (const char* s : {"description.txt", "document_index.npy", "sample_index.npy", "shuffle_index.npy"})
    EXPECT_TRUE(fs::is_regular_file(base + s)) << base << s;
  const auto desc = nlohmann::json::parse(read_bytes(base + "description.txt"));
  EXPECT_EQ(desc["class"], "GPTDataset");
  EXPECT_EQ(desc["index_split"], "train");
  EXPECT_EQ(desc["random_seed"], 1234);
  EXPECT_EQ(desc["sequence_length"], 16);
  EXPECT_EQ(desc["num_samples"], 2000);
  EXPECT_EQ(desc["dataset_path"], "/data/corpus_text_document");
  EXPECT_EQ(desc["split"], "969,30,1");
  // Megatron's dtypes for a small corpus.
  EXPECT_EQ(data::NpyFile::map(base + "document_index.npy")->header().dtype, data::NpyDType::Int32);
  EXPECT_EQ(data::NpyFile::map(base + "sample_index.npy")->header().shape,
            (std::vector<int64_t>{ref.plan.num_samples + 1, 2}));
  EXPECT_EQ(data::NpyFile::map(base + "shuffle_index.npy")->header().dtype, data::NpyDType::UInt32);

  std::vector<fs::file_time_type> mtimes;
  for (const auto& f : files) mtimes.push_back(fs::last_write_time(f));
  auto second = data::load_or_build_gpt_indices(lengths, kTrain, config(), "corpus (train)", log.options(dir));
  EXPECT_EQ(second.origin, data::IndexOrigin::Loaded);
  EXPECT_TRUE(second.indices.sample_index.is_mapped());
  EXPECT_TRUE(second.indices.shuffle_index.is_mapped());
  expect_same(second.indices, ref);
  EXPECT_EQ(files_in(dir), files);
  for (size_t i = 0; i < files.size(); ++i) EXPECT_EQ(fs::last_write_time(files[i]), mtimes[i]) << files[i];
  EXPECT_TRUE(log.warnings.empty());

  // Another seed is another configuration: its own files.
  auto other = data::load_or_build_gpt_indices(lengths, kTrain, config(99), "corpus (train)", log.options(dir));
  EXPECT_EQ(other.origin, data::IndexOrigin::Built);
  EXPECT_NE(other.files, first.files);
  EXPECT_EQ(files_in(dir).size(), 8u);
  // Changed data (one sequence longer) must not reuse the old arrays either.
  auto changed = lengths;
  changed[5] += 1;
  EXPECT_EQ(data::load_or_build_gpt_indices(changed, kTrain, config(), "x", log.options(dir)).origin,
            data::IndexOrigin::Built);
}

TEST(IndexCache, CorruptFilesAreRebuiltNeverUsed) {
  const auto lengths = corpus_lengths();
  const auto ref = data::build_gpt_indices(lengths, kTrain, config(), "ref");
  struct Damage {
    const char* name;
    const char* file;
    std::function<std::string(const std::string&)> change;
  };
  const Damage damages[] = {
      {"truncated", "sample_index.npy", [](const std::string& b) { return b.substr(0, b.size() - 12); }},
      {"garbage", "shuffle_index.npy", [](const std::string& b) { return std::string(b.size(), 'x'); }},
      {"value out of range", "shuffle_index.npy",
       [](const std::string& b) {
         std::string c = b;
         c[c.size() - 1] = '\x7f';  // last uint32 entry becomes huge
         return c;
       }},
      {"document outside the split", "document_index.npy",
       [](const std::string& b) {
         std::string c = b;
         c[c.size() - 2] = '\x7f';
         return c;
       }},
      {"wrong dtype", "document_index.npy",
       [](const std::string& b) {
         std::string c = b;
         c.replace(c.find("<i4"), 3, "<i8");
         return c;
       }},
  };
  for (const Damage& d : damages) {
    SCOPED_TRACE(d.name);
    const fs::path dir = scratch() / d.name;
    Logged log;
    const auto built = data::load_or_build_gpt_indices(lengths, kTrain, config(), "corpus (train)", log.options(dir));
    const std::string path = built.files + d.file;
    write_bytes(path, d.change(read_bytes(path)));
    const auto again = data::load_or_build_gpt_indices(lengths, kTrain, config(), "corpus (train)", log.options(dir));
    EXPECT_EQ(again.origin, data::IndexOrigin::Built);
    expect_same(again.indices, ref);
    ASSERT_EQ(log.warnings.size(), 1u);
    EXPECT_NE(log.warnings[0].find("unusable and are rebuilt"), std::string::npos) << log.warnings[0];
    EXPECT_NE(log.warnings[0].find(d.file), std::string::npos) << log.warnings[0];
    // The rebuilt files are good again.
    EXPECT_EQ(data::load_or_build_gpt_indices(lengths, kTrain, config(), "x", log.options(dir)).origin,
              data::IndexOrigin::Loaded);
  }
}

TEST(IndexCache, UsesMegatronsCacheWhenItsDescriptionMatches) {
  const fs::path dir = scratch();
  const auto lengths = corpus_lengths();
  const auto ref = data::build_gpt_indices(lengths, kTrain, config(), "ref");
  // What Megatron-Core writes: its own hash, its description keys, relative or other absolute path.
  const std::string base = (dir / "0123456789abcdef0123456789abcdef-GPTDataset-train-").string();
  data::write_npy_atomic(base + "document_index.npy", data::NpyDType::Int32,
                         {static_cast<int64_t>(ref.document_index.size())}, ref.document_index.data());
  data::write_npy_atomic(base + "sample_index.npy", data::NpyDType::Int32,
                         {static_cast<int64_t>(ref.sample_index.size() / 2), 2}, ref.sample_index.data());
  data::write_npy_atomic(base + "shuffle_index.npy", data::NpyDType::UInt32,
                         {static_cast<int64_t>(ref.shuffle_index.size())}, ref.shuffle_index.data());
  nlohmann::ordered_json d;
  d["class"] = "GPTDataset";
  d["dataset_path"] = "/megatron/data/corpus_text_document";
  d["num_samples"] = 2000;
  d["index_split"] = "train";
  d["random_seed"] = 1234;
  d["sequence_length"] = 16;
  d["split"] = "969,30,1";
  d["split_matrix"] = {{0.0, 0.969}, {0.969, 0.999}, {0.999, 1.0}};
  d["tokenizer"] = {{"class", "_GPT2BPETokenizer"}};
  data::write_file_atomic(base + "description.txt", d.dump(4));

  Logged log;
  auto got = data::load_or_build_gpt_indices(lengths, kTrain, config(), "corpus (train)", log.options(dir));
  EXPECT_EQ(got.origin, data::IndexOrigin::LoadedMegatron);
  EXPECT_EQ(got.files, base);
  expect_same(got.indices, ref);

  // A description for another configuration is not used: another seed builds its own.
  auto other = data::load_or_build_gpt_indices(lengths, kTrain, config(5), "corpus (train)", log.options(dir));
  EXPECT_EQ(other.origin, data::IndexOrigin::Built);
  // Nor for another split range of the same dataset.
  auto valid_opts = log.options(dir);
  valid_opts.split = data::Split::Valid;
  EXPECT_EQ(data::load_or_build_gpt_indices(lengths, {291, 300}, config(), "v", valid_opts).origin,
            data::IndexOrigin::Built);
}

TEST(IndexCache, OtherRanksWaitForRankZero) {
  const fs::path dir = scratch();
  const auto lengths = corpus_lengths();
  Logged log;
  auto rank1 = log.options(dir);
  rank1.rank = 1;
  rank1.world_size = 2;
  rank1.wait_seconds = 0.3;
  try {
    data::load_or_build_gpt_indices(lengths, kTrain, config(), "corpus (train)", rank1);
    FAIL() << "rank 1 did not time out";
  } catch (const megahost::core::Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("rank 1 waited"), std::string::npos) << m;
    EXPECT_NE(m.find("document_index"), std::string::npos) << m;
    EXPECT_NE(m.find(dir.string()), std::string::npos) << m;
  }
  EXPECT_TRUE(files_in(dir).empty());  // rank 1 never builds
  auto rank0 = log.options(dir);
  rank0.world_size = 2;
  EXPECT_EQ(data::load_or_build_gpt_indices(lengths, kTrain, config(), "x", rank0).origin, data::IndexOrigin::Built);
  const auto got = data::load_or_build_gpt_indices(lengths, kTrain, config(), "x", rank1);
  EXPECT_EQ(got.origin, data::IndexOrigin::Loaded);
  expect_same(got.indices, data::build_gpt_indices(lengths, kTrain, config(), "ref"));
}

TEST(IndexCache, UnwritableFolderWarnsAndBuildsInMemory) {
  const fs::path dir = scratch();
  write_bytes(dir / "a_file", "x");
  Logged log;
  const auto lengths = corpus_lengths();
  auto got = data::load_or_build_gpt_indices(lengths, kTrain, config(), "corpus (train)",
                                             log.options(dir / "a_file" / "cache"));
  EXPECT_EQ(got.origin, data::IndexOrigin::BuiltUncached);
  ASSERT_EQ(log.warnings.size(), 1u);
  EXPECT_NE(log.warnings[0].find("data_cache_path"), std::string::npos) << log.warnings[0];
  expect_same(got.indices, data::build_gpt_indices(lengths, kTrain, config(), "ref"));
}

TEST(IndexCache, DefaultFolderIsMegatrons) {
  EXPECT_EQ(data::default_cache_folder("/data/corpus_text_document"),
            "/data/corpus_text_document/cache/GPTDataset_indices");
}

TEST(IndexCache, ReadsACacheWrittenByNumpyAsMegatronDoes) {
  // fixtures/megatron_cache: numpy.save'd arrays and a json.dumps description, as Megatron-Core
  // writes them, for indices computed with Megatron's algorithms (gen_npy_fixtures.py).
  const fs::path dir = scratch() / "megatron_cache";
  fs::copy(fs::path(MEGAHOST_NPY_FIXTURES) / "megatron_cache", dir);
  const auto lengths = nlohmann::json::parse(read_bytes(dir / "lengths.json")).get<std::vector<int32_t>>();
  ASSERT_EQ(lengths.size(), 40u);
  data::GPTIndexConfig cfg;
  cfg.seq_length = 3;
  cfg.num_samples = 161;
  cfg.seed = 99991;
  const data::SequenceRange train = *data::split_sequence_ranges("1,1,1", 40)[0];
  Logged log;
  auto opts = log.options(dir);
  opts.dataset_path = "/somewhere/else/corpus_text_document";
  opts.split_string = "1,1,1";
  const auto got = data::load_or_build_gpt_indices(lengths, train, cfg, "corpus (train)", opts);
  EXPECT_EQ(got.origin, data::IndexOrigin::LoadedMegatron);
  EXPECT_TRUE(got.indices.plan.separate_last_epoch);
  expect_same(got.indices, data::build_gpt_indices(lengths, train, cfg, "ref"));
  EXPECT_TRUE(log.warnings.empty());
  // Another corpus file name is another dataset.
  opts.dataset_path = "/data/other_text_document";
  EXPECT_EQ(data::load_or_build_gpt_indices(lengths, train, cfg, "other", opts).origin, data::IndexOrigin::Built);
}
