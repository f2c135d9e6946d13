// megahost core — Megatron's GPT sample indices: splits, epochs, document / sample / shuffle index.
//
// Given the sequence lengths of a corpus, a split and a seed, these functions build the same
// three arrays as Megatron-Core's GPTDataset (megatron/core/datasets/gpt_dataset.py and
// helpers.cpp), so the same files and seed give the same samples. ../shared/FORMATS.md §2.
//
//   document index  [E * |split|]   the split's sequence ids tiled E times, shuffled
//   sample index    [N + 1, 2]      (position in document index, token offset) where sample s starts
//   shuffle index   [N]             a permutation of the samples
//
// A GPT sample is L + 1 tokens (inputs plus the shifted label); consecutive samples overlap by
// one token, so sample s covers tokens [s*L, s*L + L + 1) of the concatenated document index.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "megahost/core/data/index_array.h"
#include "megahost/core/data/numpy_random.h"

namespace megahost::core::data {

enum class Split : int { Train = 0, Valid = 1, Test = 2 };
const char* split_name(Split s);  // "train", "valid", "test"

// Sequence ids [begin, end).
struct SequenceRange {
  int64_t begin = 0;
  int64_t end = 0;
  int64_t size() const { return end - begin; }
  bool operator==(const SequenceRange& o) const { return begin == o.begin && end == o.end; }
};

// Megatron's parse_and_normalize_split: the numbers in the string ("949,50,1", "98/2/0"),
// padded with zeros to three and normalised as numpy does. Throws core::Error naming the string.
std::array<double, 3> parse_split(const std::string& split);

// The split's sequence ranges over S sequences: split k covers [round(lo*S), round(hi*S)) with
// lo, hi the cumulative normalised weights and round half-to-even (Python's round). A split of
// weight 0 is nullopt: Megatron builds no dataset for it. A non-zero split may still be empty
// when S is small (e.g. "949,50,1" over 500 sequences gives test = [500, 500)).
std::array<std::optional<SequenceRange>, 3> split_sequence_ranges(const std::string& split,
                                                                  int64_t num_sequences);

struct GPTIndexConfig {
  int64_t seq_length = 0;              // L
  std::optional<int64_t> num_samples;  // samples requested; nullopt = exactly one epoch
  uint32_t seed = 1234;                // numpy RandomState seed (Megatron's --seed)
  bool add_extra_token = true;         // samples of L + 1 tokens (Megatron's default)
  // false keeps a padded last partial sample (Megatron's drop_last_partial_validation_sequence
  // = false, valid split only); true everywhere else.
  bool drop_last_partial = true;
  int extra() const { return add_extra_token ? 1 : 0; }
};

struct EpochPlan {
  int64_t tokens_per_epoch = 0;           // tokens in the split
  int64_t num_epochs = 0;                 // E
  bool separate_last_epoch = false;       // last epoch shuffled on its own
  int64_t samples_before_last_epoch = 0;  // ((E-1) * tokens_per_epoch - 1) // L, when E > 1
  int64_t samples_per_epoch = 0;          // (tokens_per_epoch - 1) // L, when E > 1
  int64_t num_samples = 0;                // N: the dataset's length, whole epochs' worth
};

// Epoch count and the separate-last-epoch rule. Throws core::Error when samples are requested
// from a split without tokens (Megatron would loop forever); `what` names the split in it.
EpochPlan plan_epochs(int64_t tokens_per_epoch, const GPTIndexConfig& cfg, const std::string& what);

// The split's sequence ids tiled E times and shuffled (the first E-1 epochs and the last one
// separately when separate_last_epoch). Draws from rng first, as Megatron does.
std::vector<int32_t> build_document_index(SequenceRange range, int64_t num_epochs,
                                          bool separate_last_epoch, NumpyRandomState& rng);

// [N + 1, 2] rows, row-major: (position in document_index, offset in that sequence).
// int32 while the document index has at most 2^31 - 1 entries, else int64 (Megatron's rule).
IndexArray build_sample_index(const int32_t* sequence_lengths,
                              const std::vector<int32_t>& document_index,
                              const GPTIndexConfig& cfg, const EpochPlan& plan);

// A permutation of [0, total_size): [0, num_samples) shuffled, then [num_samples, total_size)
// shuffled on its own. uint32 below 2^32 - 2 entries, else int64 (Megatron's rule).
IndexArray build_shuffle_index(int64_t num_samples, int64_t total_size, NumpyRandomState& rng);

struct GPTIndices {
  EpochPlan plan;
  std::vector<int32_t> document_index;  // [E * |split|] sequence ids
  IndexArray sample_index;              // [(N + 1) * 2]
  IndexArray shuffle_index;             // [N]
};

// Everything for one split, from one RandomState(cfg.seed): document index shuffle(s), then
// shuffle index shuffle(s). sequence_lengths holds all S sequences of the corpus.
GPTIndices build_gpt_indices(const std::vector<int32_t>& sequence_lengths, SequenceRange range,
                             const GPTIndexConfig& cfg, const std::string& what);

}  // namespace megahost::core::data
