// What the BERT and T5 data (bert_batches.cpp, t5_batches.cpp) share: both read one
// `--split-sentences` corpus prefix, a WordPiece vocab_file, and build their train / valid / test
// splits by document with a sample-index cache under <prefix>/cache/<Megatron class>_indices.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "megahost/core/data/bert_samples.h"
#include "megahost/core/data/token_source.h"
#include "megahost/core/engine/samples.h"

namespace megahost::core::sentence_corpus {

// A dataset-format reader as the sentence source of the samples.
class ReaderSentences : public data::TokenSource {
 public:
  explicit ReaderSentences(std::shared_ptr<DatasetReader> r) : r_(std::move(r)), lengths_(r_->sequence_lengths()) {}
  uint64_t num_sequences() const override { return lengths_.size(); }
  const std::vector<int32_t>& sequence_lengths() const override { return lengths_; }
  void read(uint64_t seq, uint64_t offset, uint64_t count, int64_t* out) const override {
    r_->read(seq, offset, count, out);
  }
  std::string name() const override { return r_->prefix(); }

 private:
  std::shared_ptr<DatasetReader> r_;
  std::vector<int32_t> lengths_;
};

// [model] plugin, "" when unset.
std::string model_plugin(const Recipe& r);

// [tokenizer] vocab_file: its path and its lines (trailing '\r' and ' ' cut; id = line number).
// `kind` ("BERT", "T5") and `hint` ("\nHINT: ...") go into the errors.
struct VocabFile {
  std::string path;
  std::vector<std::string> pieces;
};
VocabFile read_vocab_file(const Recipe& r, const char* kind, const char* hint);

// The one prefix of [data] data_path (no blending, no per-split paths).
std::string single_data_prefix(const Recipe& r, const char* kind);

// One split's samples: its sentences, the corpus' document indices, the split's documents,
// the number of samples wanted, the cache options and the name for messages.
using MakeSplit = std::function<std::unique_ptr<SampleSource>(
    std::shared_ptr<data::TokenSource> sentences, const std::vector<int64_t>& docs, data::DocumentRange range,
    int64_t num_samples, const data::BertCacheOptions& cache, const std::string& what)>;

// Opens `prefix`, splits its documents by [data] split and makes each split that is wanted
// (counts) and not empty. The cache folder is [data] data_cache_path or
// <prefix>/cache/<cache_class>_indices.
SplitSamples build_splits(const Recipe& r, DatasetFormat& format, const std::string& prefix,
                          const SampleCounts& counts, const char* cache_class, const MakeSplit& make);

}  // namespace megahost::core::sentence_corpus
