// megahost core — what GPT sample construction needs from a tokenized corpus.
//
// Implemented over a dataset-format plugin's reader (core::DatasetReader) and, in tests and
// tools, over tokens held in memory.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "megahost/core/error.h"

namespace megahost::core::data {

class TokenSource {
 public:
  virtual ~TokenSource() = default;
  virtual uint64_t num_sequences() const = 0;
  // One length per sequence (S entries), as the .idx stores them. Lives as long as the source.
  virtual const std::vector<int32_t>& sequence_lengths() const = 0;
  // Tokens [offset, offset + count) of sequence `seq`, widened to int64. Thread-safe.
  virtual void read(uint64_t seq, uint64_t offset, uint64_t count, int64_t* out) const = 0;
  // A name for error messages (e.g. the dataset path prefix).
  virtual std::string name() const { return "token source"; }
};

// Sequences held in memory: tests, tools, tiny corpora.
class InMemoryTokenSource : public TokenSource {
 public:
  InMemoryTokenSource() = default;
  explicit InMemoryTokenSource(const std::vector<std::vector<int64_t>>& sequences) {
    for (const auto& s : sequences) add(s);
  }
  void add(const std::vector<int64_t>& sequence) {
    offsets_.push_back(static_cast<int64_t>(tokens_.size()));
    lengths_.push_back(static_cast<int32_t>(sequence.size()));
    tokens_.insert(tokens_.end(), sequence.begin(), sequence.end());
  }
  uint64_t num_sequences() const override { return lengths_.size(); }
  const std::vector<int32_t>& sequence_lengths() const override { return lengths_; }
  void read(uint64_t seq, uint64_t offset, uint64_t count, int64_t* out) const override {
    MH_CORE_CHECK(seq < lengths_.size() && offset + count <= static_cast<uint64_t>(lengths_[seq]),
                  "read out of range: sequence ", seq, " tokens [", offset, ", ", offset + count, ")");
    const int64_t* src = tokens_.data() + offsets_[seq] + offset;
    for (uint64_t i = 0; i < count; ++i) out[i] = src[i];
  }
  std::string name() const override { return "in-memory corpus"; }

 private:
  std::vector<int64_t> tokens_;
  std::vector<int64_t> offsets_;
  std::vector<int32_t> lengths_;
};

}  // namespace megahost::core::data
