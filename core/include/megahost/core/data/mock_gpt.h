// megahost core — Megatron's mock GPT data (--mock-data, MockGPTLowLevelDataset): synthetic
// documents, so a run or a benchmark needs no corpus.
//
// 100,000 documents; document d has L_d = numpy.random.default_rng(0).integers(1, 4096,
// size=100000, dtype=int32)[d] tokens: 1, 2, ..., L_d - 1 (each modulo the vocabulary size), then
// the end-of-document token. The samples are then built from them as from any corpus (split,
// epochs, shuffles), so megahost and Megatron train on the same token stream.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "megahost/core/data/token_source.h"

namespace megahost::core::data {

class MockGPTTokenSource : public TokenSource {
 public:
  static constexpr int64_t kDocuments = 100000;
  static constexpr int32_t kMaxLength = 4096;  // lengths are drawn from [1, kMaxLength)
  static constexpr uint32_t kSeed = 0;

  // vocab_size: the tokenizer's (unpadded); eod: its end-of-document id.
  MockGPTTokenSource(int64_t vocab_size, int64_t eod);

  uint64_t num_sequences() const override { return lengths_.size(); }
  const std::vector<int32_t>& sequence_lengths() const override { return lengths_; }
  void read(uint64_t seq, uint64_t offset, uint64_t count, int64_t* out) const override;
  std::string name() const override { return "mock data"; }

 private:
  int64_t vocab_size_;
  int64_t eod_;
  std::vector<int32_t> lengths_;
};

}  // namespace megahost::core::data
