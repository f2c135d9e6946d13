// `megahost preprocess --merge`: Megatron's tools/merge_datasets.py through the dataset plugin's
// writer_add_dataset (the shards' .bin bytes copied, their indices appended and shifted).
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <set>

#include "megahost/core/error.h"
#include "megahost/core/preprocess.h"
#include "megahost/core/preprocess/input.h"

namespace megahost::core {

namespace {

namespace fs = std::filesystem;

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}
std::string strip_ext(const std::string& s) {
  return ends_with(s, ".bin") || ends_with(s, ".idx") ? s.substr(0, s.size() - 4) : s;
}

// Megatron: every <prefix>.bin/.idx pair of the folder, prefixes sorted by name.
std::vector<std::string> folder_shards(const std::string& dir) {
  std::set<std::string> bins, idxs;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    const std::string name = e.path().filename().string();
    if (ends_with(name, ".bin")) bins.insert(strip_ext(name));
    if (ends_with(name, ".idx")) idxs.insert(strip_ext(name));
  }
  for (const auto& b : bins)
    MH_CORE_CHECK(idxs.count(b) != 0, dir, "/", b, ".bin has no .idx beside it\nHINT: every shard needs both files");
  for (const auto& i : idxs)
    MH_CORE_CHECK(bins.count(i) != 0, dir, "/", i, ".idx has no .bin beside it\nHINT: every shard needs both files");
  std::vector<std::string> out;
  for (const auto& b : bins) out.push_back((fs::path(dir) / b).string());  // std::set: sorted by name
  return out;
}

}  // namespace

MergeStats merge_datasets(const std::vector<std::string>& inputs, const std::string& output_prefix,
                          const PluginRegistry& reg, const std::string& dataset_format) {
  MH_CORE_CHECK(!inputs.empty(), "preprocess --merge: --input is required\nHINT: a folder of shards or shard prefixes");
  MH_CORE_CHECK(!output_prefix.empty(), "preprocess --merge: --output-prefix is required");
  MergeStats stats;
  for (const auto& in : inputs) {
    if (fs::is_directory(in)) {
      const auto shards = folder_shards(in);
      MH_CORE_CHECK(!shards.empty(), in, ": no .bin/.idx shards in this folder");
      stats.shards.insert(stats.shards.end(), shards.begin(), shards.end());
    } else if (in.find_first_of("*?[") != std::string::npos) {
      for (const auto& f : prep::expand_inputs({in}))
        if (ends_with(f, ".idx")) stats.shards.push_back(strip_ext(f));
    } else {
      stats.shards.push_back(strip_ext(in));
    }
  }
  MH_CORE_CHECK(!stats.shards.empty(), "preprocess --merge: no shards found in --input");
  for (const auto& s : stats.shards)
    MH_CORE_CHECK(fs::absolute(s) != fs::absolute(output_prefix), output_prefix,
                  ": the output is also an input shard\nHINT: pick another --output-prefix");

  const auto t0 = std::chrono::steady_clock::now();
  auto format = reg.create_dataset(dataset_format, ConfigSection{});
  mh_token_dtype dtype;
  {
    auto first = format->open_reader(stats.shards.front());  // Megatron: the first shard's dtype
    dtype = first->dtype();
  }
  auto writer = format->open_writer(output_prefix, dtype);
  for (const auto& s : stats.shards) {
    writer->add_dataset(s);
  }
  writer->finalize();
  auto merged = format->open_reader(output_prefix);
  stats.sequences = merged->num_sequences();
  stats.documents = merged->num_documents();
  stats.tokens = merged->num_tokens();
  stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return stats;
}

}  // namespace megahost::core
