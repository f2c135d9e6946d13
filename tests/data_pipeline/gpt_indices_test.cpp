// Epochs, the separate-last-epoch rule, and the document / sample / shuffle indices, with
// expectations computed by hand from Megatron's rules (FORMATS.md §2) and numpy's own shuffles.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <numeric>
#include <vector>

#include "megahost/core/data/gpt_indices.h"
#include "megahost/core/error.h"

using megahost::core::Error;
using megahost::core::data::build_document_index;
using megahost::core::data::build_gpt_indices;
using megahost::core::data::build_sample_index;
using megahost::core::data::build_shuffle_index;
using megahost::core::data::EpochPlan;
using megahost::core::data::GPTIndexConfig;
using megahost::core::data::IndexArray;
using megahost::core::data::NumpyRandomState;
using megahost::core::data::plan_epochs;
using megahost::core::data::SequenceRange;

namespace {

GPTIndexConfig config(int64_t seq_length, std::optional<int64_t> num_samples, uint32_t seed = 1234) {
  GPTIndexConfig c;
  c.seq_length = seq_length;
  c.num_samples = num_samples;
  c.seed = seed;
  return c;
}

nlohmann::json golden() {
  std::ifstream in(std::filesystem::path(MEGAHOST_TEST_DATA_DIR) / "golden" /
                   "numpy_randomstate_shuffle.json");
  return nlohmann::json::parse(in);
}

const nlohmann::json& golden_case(uint32_t seed, int64_t n) {
  static const nlohmann::json all = golden();
  for (const auto& c : all)
    if (c.at("seed").get<uint32_t>() == seed && c.at("n").get<int64_t>() == n) return c;
  throw std::runtime_error("no golden case");
}

template <typename T>
std::vector<int64_t> widen(const std::vector<T>& v) {
  return std::vector<int64_t>(v.begin(), v.end());
}

std::vector<int64_t> plus(std::vector<int64_t> v, int64_t k) {
  for (auto& x : v) x += k;
  return v;
}

}  // namespace

// ---- epochs ----
// tokens_per_epoch T = 100, L = 10, one extra token per sample:
//   samples_per_epoch = (T - 1) // L = 9; E epochs give N = (E*T - 1) // L samples.

TEST(Epochs, OneEpochWhenItSuffices) {
  // 5 samples need 5*10 + 1 = 51 <= 100 tokens: E = 1, N = 99 // 10 = 9.
  const EpochPlan p = plan_epochs(100, config(10, 5), "t");
  EXPECT_EQ(p.num_epochs, 1);
  EXPECT_FALSE(p.separate_last_epoch);
  EXPECT_EQ(p.num_samples, 9);
  // 9 samples need 91 tokens: still E = 1. 10 samples need 101 > 100: E = 2.
  EXPECT_EQ(plan_epochs(100, config(10, 9), "t").num_epochs, 1);
  EXPECT_EQ(plan_epochs(100, config(10, 10), "t").num_epochs, 2);
  // Exact fit: 3 samples of 33 need 3*33 + 1 = 100 tokens.
  const EpochPlan exact = plan_epochs(100, config(33, 3), "t");
  EXPECT_EQ(exact.num_epochs, 1);
  EXPECT_EQ(exact.num_samples, 3);  // 99 // 33
  // No request: exactly one epoch.
  EXPECT_EQ(plan_epochs(100, config(10, std::nullopt), "t").num_epochs, 1);
  EXPECT_EQ(plan_epochs(100, config(10, std::nullopt), "t").num_samples, 9);
}

TEST(Epochs, SeparateLastEpochBelowEightyPercent) {
  // 12 samples need 121 tokens: E = 2. samples_before_last = (100 - 1) // 10 = 9,
  // from the last epoch 12 - 9 = 3, threshold int(0.8 * 9) = 7: 3 < 7, separate.
  EpochPlan p = plan_epochs(100, config(10, 12), "t");
  EXPECT_EQ(p.num_epochs, 2);
  EXPECT_EQ(p.samples_before_last_epoch, 9);
  EXPECT_EQ(p.samples_per_epoch, 9);
  EXPECT_TRUE(p.separate_last_epoch);
  EXPECT_EQ(p.num_samples, 19);  // (200 - 1) // 10
  // Boundary: 15 samples -> 6 from the last epoch < 7: separate; 16 -> 7, not < 7: together.
  EXPECT_TRUE(plan_epochs(100, config(10, 15), "t").separate_last_epoch);
  EXPECT_FALSE(plan_epochs(100, config(10, 16), "t").separate_last_epoch);
  EXPECT_FALSE(plan_epochs(100, config(10, 17), "t").separate_last_epoch);
  // 19 samples need 191 <= 200 tokens: E = 2, 10 = samples_per_epoch + 1 from the last epoch.
  p = plan_epochs(100, config(10, 19), "t");
  EXPECT_EQ(p.num_epochs, 2);
  EXPECT_FALSE(p.separate_last_epoch);
}

TEST(Epochs, ManyEpochs) {
  // T = 37, L = 8, 100 samples need 801 tokens: E = ceil(801 / 37) = 22 (22*37 = 814).
  // samples_before_last = (21*37 - 1) // 8 = 776 // 8 = 97, from the last 3,
  // samples_per_epoch = 36 // 8 = 4, threshold int(3.2) = 3: 3 < 3 is false, together.
  EpochPlan p = plan_epochs(37, config(8, 100), "t");
  EXPECT_EQ(p.num_epochs, 22);
  EXPECT_EQ(p.samples_before_last_epoch, 97);
  EXPECT_EQ(p.samples_per_epoch, 4);
  EXPECT_FALSE(p.separate_last_epoch);
  EXPECT_EQ(p.num_samples, 101);  // 813 // 8
  // 98 samples need 785 tokens: E = 22 again, from the last 1 < 3: separate.
  p = plan_epochs(37, config(8, 98), "t");
  EXPECT_EQ(p.num_epochs, 22);
  EXPECT_TRUE(p.separate_last_epoch);
}

TEST(Epochs, WithoutExtraTokenAndKeepingThePartialSample) {
  GPTIndexConfig c = config(10, std::nullopt);
  c.add_extra_token = false;
  EXPECT_EQ(plan_epochs(100, c, "t").num_samples, 10);  // 100 // 10
  c = config(10, std::nullopt);
  c.drop_last_partial = false;
  EXPECT_EQ(plan_epochs(100, c, "t").num_samples, 10);  // ceil(99 / 10)
  EXPECT_EQ(plan_epochs(91, c, "t").num_samples, 9);    // ceil(90 / 10)
}

TEST(Epochs, EmptySplitWithRequestedSamplesIsAClearError) {
  try {
    plan_epochs(0, config(10, 8), "corpus (test split [500, 500))");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("corpus (test split [500, 500))"), std::string::npos) << msg;
    EXPECT_NE(msg.find("no tokens"), std::string::npos) << msg;
    EXPECT_NE(msg.find("HINT"), std::string::npos) << msg;
  }
  // Nothing requested: an empty dataset, as Megatron gives one.
  EXPECT_EQ(plan_epochs(0, config(10, std::nullopt), "t").num_samples, 0);
}

// ---- document index ----

TEST(DocumentIndex, IsTheNumpyShuffleOfTheSplitIds) {
  // One epoch of [0, 10) is numpy's shuffle of arange(10); [100, 110) the same plus 100.
  for (uint32_t seed : {0u, 1u, 1234u, 2147483647u}) {
    const auto& g = golden_case(seed, 10);
    NumpyRandomState rng(seed);
    EXPECT_EQ(widen(build_document_index({0, 10}, 1, false, rng)),
              g.at("first_shuffle").get<std::vector<int64_t>>());
    NumpyRandomState rng2(seed);
    EXPECT_EQ(widen(build_document_index({100, 110}, 1, false, rng2)),
              plus(g.at("first_shuffle").get<std::vector<int64_t>>(), 100));
  }
}

TEST(DocumentIndex, SeparateLastEpochShufflesTwoParts) {
  // E = 2, separate: the first E-1 = 1 epoch is shuffled, then the last epoch on its own:
  // exactly numpy's two consecutive shuffles of arange(10).
  const auto& g = golden_case(0, 10);
  NumpyRandomState rng(0);
  const auto index = widen(build_document_index({0, 10}, 2, true, rng));
  std::vector<int64_t> expected = g.at("first_shuffle").get<std::vector<int64_t>>();
  const auto second = g.at("second_shuffle_same_stream").get<std::vector<int64_t>>();
  expected.insert(expected.end(), second.begin(), second.end());
  EXPECT_EQ(index, expected);
}

TEST(DocumentIndex, AllEpochsTogetherAreOnePermutation) {
  NumpyRandomState rng(5);
  const auto index = build_document_index({3, 8}, 4, false, rng);
  ASSERT_EQ(index.size(), 20u);
  std::vector<int> count(8, 0);
  for (int32_t v : index) ++count[v];
  EXPECT_EQ(count, (std::vector<int>{0, 0, 0, 4, 4, 4, 4, 4}));
  // Not epoch by epoch: the first 5 are not a permutation of 3..7 for this seed.
  std::vector<int32_t> head(index.begin(), index.begin() + 5);
  std::sort(head.begin(), head.end());
  EXPECT_NE(head, (std::vector<int32_t>{3, 4, 5, 6, 7}));
}

// ---- sample index ----
// Sequences 0..3 of lengths 5, 3, 0, 7 in this document order; L = 4, one extra token.
// Concatenated: seq 0 -> tokens 0..4, seq 1 -> 5..7, seq 2 -> none, seq 3 -> 8..14 (T = 15).
// N = (15 - 1) // 4 = 3. Sample s starts at token 4s:
//   s0 at 0  = (pos 0, offset 0)
//   s1 at 4  = (pos 0, offset 4)
//   s2 at 8  = (pos 3, offset 0)   walks through seq 1 and the empty seq 2
//   s3 at 12 = (pos 3, offset 4)   the end of sample 2 (tokens 8..12 inclusive)

TEST(SampleIndex, HandComputedWalk) {
  const std::vector<int32_t> lengths = {5, 3, 0, 7};
  const std::vector<int32_t> doc = {0, 1, 2, 3};
  const GPTIndexConfig c = config(4, std::nullopt);
  const EpochPlan p = plan_epochs(15, c, "t");
  ASSERT_EQ(p.num_samples, 3);
  const IndexArray rows = build_sample_index(lengths.data(), doc, c, p);
  EXPECT_EQ(rows.dtype(), IndexArray::DType::Int32);
  EXPECT_EQ(rows.to_vector(), (std::vector<int64_t>{0, 0, 0, 4, 3, 0, 3, 4}));
}

TEST(SampleIndex, KeptPartialLastSampleEndsAtTheLastToken) {
  // drop_last_partial = false: N = ceil(14 / 4) = 4; sample 3 starts at (3, 4), runs out after
  // 3 tokens and its end row is (last position, length - 1) = (3, 6).
  const std::vector<int32_t> lengths = {5, 3, 0, 7};
  const std::vector<int32_t> doc = {0, 1, 2, 3};
  GPTIndexConfig c = config(4, std::nullopt);
  c.drop_last_partial = false;
  const EpochPlan p = plan_epochs(15, c, "t");
  ASSERT_EQ(p.num_samples, 4);
  EXPECT_EQ(build_sample_index(lengths.data(), doc, c, p).to_vector(),
            (std::vector<int64_t>{0, 0, 0, 4, 3, 0, 3, 4, 3, 6}));
}

TEST(SampleIndex, SampleEndingExactlyOnADocumentEnd) {
  // Lengths 5, 5 and L = 4: s1 starts at 4 = (0, 4); s2 at 8 = (1, 3). A sample of 5 tokens
  // that ends on the last token of a document keeps its start in that document:
  // from (0, 0), 5 - 5 = 0 remaining -> offset 0 + 0 + 5 - 1 = 4.
  const std::vector<int32_t> lengths = {5, 5};
  const std::vector<int32_t> doc = {0, 1};
  const GPTIndexConfig c = config(4, std::nullopt);
  const EpochPlan p = plan_epochs(10, c, "t");
  ASSERT_EQ(p.num_samples, 2);  // 9 // 4
  EXPECT_EQ(build_sample_index(lengths.data(), doc, c, p).to_vector(),
            (std::vector<int64_t>{0, 0, 0, 4, 1, 3}));
}

// ---- shuffle index ----

TEST(ShuffleIndex, IsNumpyShuffleOfArange) {
  for (uint32_t seed : {0u, 1u, 1234u, 2147483647u}) {
    for (int64_t n : {1, 2, 10, 1000}) {
      const auto& g = golden_case(seed, n);
      NumpyRandomState rng(seed);
      const IndexArray s = build_shuffle_index(n, n, rng);
      EXPECT_EQ(s.dtype(), IndexArray::DType::UInt32);
      EXPECT_EQ(s.to_vector(), g.at("first_shuffle").get<std::vector<int64_t>>());
    }
  }
}

TEST(ShuffleIndex, TwoPartsWhenTheLastEpochIsSeparate) {
  // [0, 10) shuffled, then [10, 20) shuffled from the same stream.
  const auto& g = golden_case(1234, 10);
  NumpyRandomState rng(1234);
  std::vector<int64_t> expected = g.at("first_shuffle").get<std::vector<int64_t>>();
  const auto second = plus(g.at("second_shuffle_same_stream").get<std::vector<int64_t>>(), 10);
  expected.insert(expected.end(), second.begin(), second.end());
  EXPECT_EQ(build_shuffle_index(10, 20, rng).to_vector(), expected);
}

// ---- all three from one stream ----

// 1000 sequences, one of 11 tokens and 999 of 10: T = 10001, L = 10, N = 10000 // 10 = 1000.
// The document index is numpy's first shuffle of arange(1000) and the shuffle index the second
// shuffle of the same stream: Megatron's draw order.
TEST(GptIndices, DrawOrderMatchesNumpyStream) {
  std::vector<int32_t> lengths(1000, 10);
  lengths[0] = 11;
  for (uint32_t seed : {0u, 1u, 1234u, 2147483647u}) {
    const auto& g = golden_case(seed, 1000);
    const auto idx = build_gpt_indices(lengths, {0, 1000}, config(10, std::nullopt, seed), "t");
    EXPECT_EQ(idx.plan.num_samples, 1000);
    EXPECT_EQ(widen(idx.document_index), g.at("first_shuffle").get<std::vector<int64_t>>());
    EXPECT_EQ(idx.shuffle_index.to_vector(), g.at("second_shuffle_same_stream").get<std::vector<int64_t>>());
    EXPECT_EQ(idx.sample_index.size(), 2u * 1001u);
  }
}

TEST(GptIndices, SplitRangeOnlyUsesItsSequences) {
  std::vector<int32_t> lengths = {100, 1, 2, 3, 4, 100};
  const auto idx = build_gpt_indices(lengths, {1, 5}, config(2, 20), "t");
  // T = 10, 20 samples of 2 need 41 tokens: E = 5.
  EXPECT_EQ(idx.plan.tokens_per_epoch, 10);
  EXPECT_EQ(idx.plan.num_epochs, 5);
  EXPECT_EQ(idx.document_index.size(), 20u);
  for (int32_t d : idx.document_index) {
    EXPECT_GE(d, 1);
    EXPECT_LE(d, 4);
  }
  EXPECT_EQ(idx.plan.num_samples, 24);  // (50 - 1) // 2
  EXPECT_EQ(idx.shuffle_index.size(), 24u);
}

TEST(GptIndices, RangeOutsideTheCorpusIsAnError) {
  std::vector<int32_t> lengths = {1, 2, 3};
  EXPECT_THROW(build_gpt_indices(lengths, {2, 4}, config(2, 1), "t"), Error);
}
