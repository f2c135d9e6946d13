// Megatron's mock GPT documents (MockGPTLowLevelDataset): the lengths numpy draws, each document
// 1, 2, ... modulo the vocabulary and then the end-of-document token, and GPT samples over them.
#include <gtest/gtest.h>

#include <cstdint>
#include <numeric>
#include <vector>

#include "megahost/core/data/gpt_dataset.h"
#include "megahost/core/data/mock_gpt.h"
#include "megahost/core/error.h"

namespace data = megahost::core::data;

TEST(MockGPT, DocumentsAreMegatronsLengthsAndTokens) {
  const data::MockGPTTokenSource src(50257, 50256);
  ASSERT_EQ(src.num_sequences(), 100000u);
  const auto& len = src.sequence_lengths();
  EXPECT_EQ(len[0], 3484);  // np.random.default_rng(0).integers(1, 4096, 100000, np.int32)[0]
  EXPECT_EQ(len[99999], 769);
  EXPECT_EQ(std::accumulate(len.begin(), len.end(), int64_t{0}), 204637097);
  // Document 7 (68 tokens): 1 .. 67, then eod.
  std::vector<int64_t> doc(68);
  src.read(7, 0, 68, doc.data());
  for (int64_t i = 0; i < 67; ++i) EXPECT_EQ(doc[static_cast<size_t>(i)], i + 1);
  EXPECT_EQ(doc[67], 50256);
  // A slice, as GPTDataset reads across sample boundaries.
  std::vector<int64_t> slice(5);
  src.read(7, 63, 5, slice.data());
  EXPECT_EQ(slice, (std::vector<int64_t>{64, 65, 66, 67, 50256}));
  EXPECT_THROW(src.read(7, 60, 9, slice.data()), megahost::core::Error);
  EXPECT_THROW(src.read(100000, 0, 1, slice.data()), megahost::core::Error);
}

TEST(MockGPT, TokensWrapAroundASmallVocabulary) {
  const data::MockGPTTokenSource src(50, 0);  // (arange(n - 1) + 1) % vocab_size, as Megatron
  std::vector<int64_t> doc(static_cast<size_t>(src.sequence_lengths()[0]));  // 3484 tokens
  src.read(0, 0, doc.size(), doc.data());
  EXPECT_EQ(doc[0], 1);
  EXPECT_EQ(doc[48], 49);
  EXPECT_EQ(doc[49], 0);  // 50 % 50
  EXPECT_EQ(doc[50], 1);
  EXPECT_EQ(doc.back(), 0);  // eod
  EXPECT_THROW(data::MockGPTTokenSource(0, 0), megahost::core::Error);
}

TEST(MockGPT, SamplesWalkTheDocumentsInOrder) {
  const data::MockGPTTokenSource src(50257, 50256);
  data::GPTIndexConfig cfg;
  cfg.seq_length = 4096;
  cfg.num_samples = 10;
  cfg.seed = 1234;
  const data::GPTDataset ds(src, data::SequenceRange{0, 100000}, cfg, "mock");
  // Every sample is a run of consecutive mock tokens: each token is the one before plus one, or
  // eod, or (after an eod) 1, the start of the next document.
  std::vector<int64_t> s(static_cast<size_t>(ds.sample_length()));
  for (int64_t i = 0; i < 10; ++i) {
    ds.sample(i, s.data());
    for (size_t t = 1; t < s.size(); ++t) {
      const bool ok = s[t] == s[t - 1] + 1 || s[t] == 50256 || (s[t - 1] == 50256 && s[t] == 1);
      ASSERT_TRUE(ok) << "sample " << i << " position " << t << ": " << s[t - 1] << " then " << s[t];
    }
  }
}
