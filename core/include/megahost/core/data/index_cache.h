// megahost core — GPT indices cached on disk, in Megatron-Core's layout.
//
// One configuration (dataset, split, sequence range, samples, sequence length, seed) is built
// once and written to the cache folder as
//
//   <md5>-GPTDataset-<split>-document_index.npy   int32 [E * |split|]
//   <md5>-GPTDataset-<split>-sample_index.npy     int32 or int64 [N + 1, 2]
//   <md5>-GPTDataset-<split>-shuffle_index.npy    uint32 or int64 [N]
//   <md5>-GPTDataset-<split>-description.txt      JSON: what the arrays were built from
//
// where <md5> is the MD5 of the description text (Megatron's naming; our description has
// Megatron's keys plus a "megahost" object, so the hashes differ from Megatron's). Every file is
// written atomically, the description last: its presence means the arrays are complete.
// Later runs map the sample and shuffle index (the document index is copied into memory).
//
// Megatron's own caches: a `*-GPTDataset-<split>-description.txt` in the folder whose JSON
// agrees with this configuration (same dataset file name, split range, num_samples,
// sequence_length, random_seed) is used as it is, its arrays validated like ours.
//
// Every loaded array is validated (dtype, shape, value ranges); a bad cache is rebuilt with a
// warning, never used.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "megahost/core/data/gpt_indices.h"

namespace megahost::core::data {

enum class LogLevel { Info, Warn };
using CacheLog = std::function<void(LogLevel, const std::string&)>;

struct IndexCacheOptions {
  std::string folder;        // "" = no cache: build in memory
  std::string dataset_path;  // the prefix (description's dataset_path)
  Split split = Split::Train;
  // The [data] split string that cut `range` out of the dataset; "" when the whole dataset is
  // this split (train_data_path / valid_data_path / test_data_path).
  std::string split_string;
  int rank = 0, world_size = 1;  // rank 0 builds; the others wait for its files
  double wait_seconds = 1800;    // how long a rank != 0 waits
  CacheLog log;                  // may be empty
};

enum class IndexOrigin {
  Built,           // built and written to the cache
  BuiltUncached,   // built; no cache folder, or it could not be written (warned)
  Loaded,          // our own cache files
  LoadedMegatron,  // a Megatron cache with a matching description
};
const char* origin_name(IndexOrigin o);

struct CachedIndices {
  GPTIndices indices;
  IndexOrigin origin = IndexOrigin::Built;
  std::string files;  // "<folder>/<md5>-GPTDataset-<split>-" (the files' common beginning)
};

// Megatron's default cache folder for a prefix: <prefix>/cache/GPTDataset_indices
// (os.path.join(path_prefix, "cache", "GPTDataset_indices")).
std::string default_cache_folder(const std::string& prefix);

// The description JSON of a configuration, and the file name base derived from it.
std::string gpt_description(const std::vector<int32_t>& sequence_lengths, SequenceRange range,
                            const GPTIndexConfig& cfg, const IndexCacheOptions& opts, int64_t tokens_per_epoch);

// Loads the indices from the cache or builds (and caches) them. Throws core::Error only for
// what cannot be recovered: bad configuration, or a rank != 0 that timed out waiting (naming
// the files it waited for).
CachedIndices load_or_build_gpt_indices(const std::vector<int32_t>& sequence_lengths, SequenceRange range,
                                        const GPTIndexConfig& cfg, const std::string& what,
                                        const IndexCacheOptions& opts);

}  // namespace megahost::core::data
