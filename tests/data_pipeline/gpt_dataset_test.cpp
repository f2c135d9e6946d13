// GPT sample assembly over a tiny in-memory corpus: every sample must equal L + 1 consecutive
// tokens of the documents concatenated in document-index order, starting at k * L for the
// shuffled sample k, so consecutive samples overlap by exactly one token.
#include <gtest/gtest.h>

#include <numeric>
#include <set>
#include <vector>

#include "megahost/core/data/gpt_dataset.h"
#include "megahost/core/error.h"

using megahost::core::Error;
using megahost::core::data::BlendedDataset;
using megahost::core::data::GPTDataset;
using megahost::core::data::GPTIndexConfig;
using megahost::core::data::InMemoryTokenSource;
using megahost::core::data::SequenceRange;

namespace {

// Sequence i holds tokens 1000*i + 0, 1000*i + 1, ...: every token tells where it came from.
InMemoryTokenSource corpus(const std::vector<int>& lengths) {
  InMemoryTokenSource src;
  for (size_t i = 0; i < lengths.size(); ++i) {
    std::vector<int64_t> seq(static_cast<size_t>(lengths[i]));
    for (int t = 0; t < lengths[i]; ++t) seq[static_cast<size_t>(t)] = 1000 * static_cast<int64_t>(i) + t;
    src.add(seq);
  }
  return src;
}

GPTIndexConfig config(int64_t seq_length, std::optional<int64_t> num_samples, uint32_t seed) {
  GPTIndexConfig c;
  c.seq_length = seq_length;
  c.num_samples = num_samples;
  c.seed = seed;
  return c;
}

// The reference: all documents of the document index, concatenated.
std::vector<int64_t> flatten(const GPTDataset& ds, const InMemoryTokenSource& src) {
  std::vector<int64_t> flat;
  for (int32_t seq : ds.indices().document_index) {
    std::vector<int64_t> tokens(static_cast<size_t>(src.sequence_lengths()[static_cast<size_t>(seq)]));
    src.read(static_cast<uint64_t>(seq), 0, tokens.size(), tokens.data());
    flat.insert(flat.end(), tokens.begin(), tokens.end());
  }
  return flat;
}

void expect_samples_are_windows(const GPTDataset& ds, const InMemoryTokenSource& src) {
  const auto flat = flatten(ds, src);
  const int64_t L = ds.config().seq_length;
  std::vector<int64_t> text(static_cast<size_t>(ds.sample_length()));
  std::set<int64_t> seen;
  for (int64_t i = 0; i < ds.size(); ++i) {
    const int64_t k = ds.indices().shuffle_index[static_cast<size_t>(i)];
    seen.insert(k);
    ASSERT_EQ(ds.sample(i, text.data()), L + 1);
    const std::vector<int64_t> expected(flat.begin() + k * L, flat.begin() + k * L + L + 1);
    ASSERT_EQ(text, expected) << "sample " << i << " (unshuffled " << k << ")";
  }
  EXPECT_EQ(static_cast<int64_t>(seen.size()), ds.size());  // the shuffle is a permutation
}

}  // namespace

TEST(GptDataset, SamplesCrossDocumentBoundaries) {
  // Documents shorter and longer than a sample, and an empty one.
  const auto src = corpus({3, 0, 2, 5, 1, 9, 4});
  const GPTDataset ds(src, {0, 7}, config(4, std::nullopt, 1234), "tiny");
  EXPECT_EQ(ds.size(), 5);  // T = 24: (24 - 1) // 4
  expect_samples_are_windows(ds, src);
}

TEST(GptDataset, ConsecutiveSamplesOverlapByOneToken) {
  const auto src = corpus({6, 2, 7, 3});
  const GPTDataset ds(src, {0, 4}, config(3, std::nullopt, 7), "tiny");
  // Unshuffle: position of raw sample k in the shuffled order.
  std::vector<int64_t> where(static_cast<size_t>(ds.size()));
  for (int64_t i = 0; i < ds.size(); ++i)
    where[static_cast<size_t>(ds.indices().shuffle_index[static_cast<size_t>(i)])] = i;
  std::vector<int64_t> a(4), b(4);
  for (int64_t k = 0; k + 1 < ds.size(); ++k) {
    ds.sample(where[static_cast<size_t>(k)], a.data());
    ds.sample(where[static_cast<size_t>(k + 1)], b.data());
    EXPECT_EQ(a.back(), b.front()) << "raw samples " << k << ", " << k + 1;
  }
}

TEST(GptDataset, ManyEpochsAndSeparateLastEpoch) {
  const auto src = corpus({5, 8, 1, 13, 2, 6});  // T = 35
  for (int64_t n : {3, 9, 10, 25, 41}) {
    for (uint32_t seed : {1u, 1234u}) {
      const GPTDataset ds(src, {0, 6}, config(4, n, seed), "tiny");
      EXPECT_GE(ds.size(), n);
      expect_samples_are_windows(ds, src);
    }
  }
  // n = 10: 41 tokens -> E = 2; before last (35 - 1) // 4 = 8, from last 2, per epoch 8,
  // threshold int(6.4) = 6: separate. The shuffle keeps [0, 8) before [8, 17).
  const GPTDataset ds(src, {0, 6}, config(4, 10, 1234), "tiny");
  ASSERT_TRUE(ds.indices().plan.separate_last_epoch);
  ASSERT_EQ(ds.size(), 17);  // (70 - 1) // 4
  for (size_t i = 0; i < 8; ++i) EXPECT_LT(ds.indices().shuffle_index[i], 8);
  for (size_t i = 8; i < 17; ++i) EXPECT_GE(ds.indices().shuffle_index[i], 8);
}

TEST(GptDataset, SplitOfTheCorpus) {
  const auto src = corpus({4, 4, 4, 4, 4, 4, 4, 4, 4, 4});
  const GPTDataset ds(src, {7, 10}, config(2, 20, 3), "valid");
  for (int32_t d : ds.indices().document_index) {
    EXPECT_GE(d, 7);
    EXPECT_LT(d, 10);
  }
  expect_samples_are_windows(ds, src);
}

TEST(GptDataset, KeptPartialLastSampleIsPadded) {
  // Lengths 5, 3, 0, 7 with L = 4 (the sample-index hand case); keep the partial sample.
  const auto src = corpus({5, 3, 0, 7});
  GPTIndexConfig c = config(4, std::nullopt, 1);
  c.drop_last_partial = false;
  const GPTDataset ds(src, {0, 4}, c, "valid");
  ASSERT_EQ(ds.size(), 4);
  const auto flat = flatten(ds, src);
  std::vector<int64_t> text(5);
  for (int64_t i = 0; i < 4; ++i) {
    if (ds.indices().shuffle_index[static_cast<size_t>(i)] != 3) continue;
    // Raw sample 3 holds the last 3 tokens (12, 13, 14 of 15), then two pads.
    EXPECT_EQ(ds.sample(i, text.data(), -7), 3);
    EXPECT_EQ(text, (std::vector<int64_t>{flat[12], flat[13], flat[14], -7, -7}));
  }
}

TEST(GptDataset, Errors) {
  const auto src = corpus({4, 4});
  const GPTDataset ds(src, {0, 2}, config(2, std::nullopt, 3), "tiny");
  std::vector<int64_t> text(3);
  EXPECT_THROW(ds.sample(ds.size(), text.data()), Error);
  EXPECT_THROW(ds.sample(-1, text.data()), Error);
  // An empty split asked for samples says so instead of looping forever.
  try {
    GPTDataset empty(src, {2, 2}, config(2, 5, 3), "corpus (test)");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("corpus (test) has no tokens"), std::string::npos) << e.what();
  }
}

TEST(BlendedDataset, SamplesComeFromTheChosenSource) {
  const auto a = corpus({7, 3, 9, 5});
  auto b_src = corpus({2, 2, 11});
  const auto plan = megahost::core::data::plan_blend({0.7, 0.3}, 20);
  ASSERT_EQ(plan.requested_samples, (std::vector<int64_t>{15, 7}));  // ceil(14 * 1.005), ceil(6 * 1.005)
  const GPTDataset da(a, {0, 4}, config(3, plan.requested_samples[0], 1), "a");
  const GPTDataset db(b_src, {0, 3}, config(3, plan.requested_samples[1], 1), "b");
  const BlendedDataset blend({&da, &db}, {0.7, 0.3}, plan.size);
  ASSERT_EQ(blend.size(), 20);
  std::vector<int64_t> x(4), y(4);
  int from_a = 0;
  for (int64_t i = 0; i < blend.size(); ++i) {
    const int d = blend.source_of(i);
    from_a += d == 0;
    blend.sample(i, x.data());
    (d == 0 ? da : db).sample(blend.indices().dataset_sample_index[static_cast<size_t>(i)], y.data());
    EXPECT_EQ(x, y);
    // Tokens tell the source: corpus b has no sequence 3.
    if (d == 1) {
      for (int64_t t : x) EXPECT_LT(t, 3000);
    }
  }
  EXPECT_EQ(from_a, 14);
}

TEST(BlendedDataset, ShortSourceIsAnError) {
  const auto a = corpus({4, 4});
  const GPTDataset da(a, {0, 2}, config(2, std::nullopt, 1), "short source");  // 3 samples
  const GPTDataset db(a, {0, 2}, config(2, std::nullopt, 2), "other");
  try {
    BlendedDataset blend({&da, &db}, {0.5, 0.5}, 10);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("short source"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("HINT"), std::string::npos) << e.what();
  }
}
