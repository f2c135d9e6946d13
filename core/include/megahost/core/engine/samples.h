// megahost core — what the training loop reads: fixed-length token samples by index.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "megahost/core/plugins.h"
#include "megahost/core/recipe.h"

namespace megahost::core {

// Sample i is seq_length + 1 tokens (inputs and labels overlap by one, as in Megatron's GPTDataset).
class SampleSource {
 public:
  virtual ~SampleSource() = default;
  virtual uint64_t size() const = 0;
  virtual void sample(uint64_t i, int64_t* out) const = 0;  // out: seq_length + 1 tokens
};

struct SplitSamples {
  std::vector<std::shared_ptr<DatasetReader>> readers;  // first: outlives the samples built on it
  std::unique_ptr<SampleSource> train, valid, test;
};

struct SampleCounts {
  uint64_t train = 0, valid = 0, test = 0;
};

// Builds Megatron's train/valid/test GPT datasets (split, epochs, shuffles, blending) from the
// recipe's [data] section through the dataset format plugin.
SplitSamples build_gpt_samples(const Recipe& recipe, DatasetFormat& format, int64_t seq_length,
                               const SampleCounts& counts, uint64_t seed);

// The same from Megatron's mock documents ([data] mock_data = true, --mock-data; see
// data/mock_gpt.h): no corpus, no dataset plugin; vocab_size and eod are the tokenizer's.
SplitSamples build_mock_gpt_samples(const Recipe& recipe, int64_t seq_length, const SampleCounts& counts,
                                    uint64_t seed, int64_t vocab_size, int64_t eod);

}  // namespace megahost::core
