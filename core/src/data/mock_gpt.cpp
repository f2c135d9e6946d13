// Megatron's MockGPTLowLevelDataset: lengths from numpy's default_rng(0), tokens computed on read.
#include "megahost/core/data/mock_gpt.h"

#include "megahost/core/data/numpy_generator.h"
#include "megahost/core/error.h"

namespace megahost::core::data {

MockGPTTokenSource::MockGPTTokenSource(int64_t vocab_size, int64_t eod) : vocab_size_(vocab_size), eod_(eod) {
  MH_CORE_CHECK(vocab_size > 0, "mock data: the tokenizer's vocabulary size is ", vocab_size);
  NumpyPcg64 rng(kSeed);
  lengths_.resize(static_cast<size_t>(kDocuments));
  for (int32_t& n : lengths_) n = rng.integer_int32(1, kMaxLength);
}

void MockGPTTokenSource::read(uint64_t seq, uint64_t offset, uint64_t count, int64_t* out) const {
  MH_CORE_CHECK(seq < lengths_.size() && offset + count <= static_cast<uint64_t>(lengths_[seq]),
                "mock data: read out of range: document ", seq, " tokens [", offset, ", ", offset + count, ")");
  const uint64_t last = static_cast<uint64_t>(lengths_[seq]) - 1;  // the end-of-document position
  for (uint64_t i = 0; i < count; ++i) {
    const uint64_t p = offset + i;
    out[i] = p == last ? eod_ : static_cast<int64_t>((p + 1) % static_cast<uint64_t>(vocab_size_));
  }
}

}  // namespace megahost::core::data
