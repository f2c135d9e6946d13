// numpy legacy RandomState: the MT19937 core against the standard generator, the bounded draw,
// and shuffles against vectors numpy itself produced (tests/data/golden).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>
#include <vector>

#include "megahost/core/data/numpy_random.h"

using megahost::core::data::NumpyRandomState;

namespace {

const std::filesystem::path kGolden =
    std::filesystem::path(MEGAHOST_TEST_DATA_DIR) / "golden" / "numpy_randomstate_shuffle.json";

std::vector<int64_t> arange(int64_t n) {
  std::vector<int64_t> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), 0);
  return v;
}

}  // namespace

// numpy seeds MT19937 with init_genrand, as std::mt19937(seed) does.
TEST(NumpyRandomState, Mt19937MatchesStandardGenerator) {
  for (uint32_t seed : {0u, 1u, 1234u, 5489u, 2147483647u, 4294967295u}) {
    NumpyRandomState rs(seed);
    std::mt19937 ref(seed);
    for (int i = 0; i < 5000; ++i) ASSERT_EQ(rs.next_uint32(), ref()) << "seed " << seed << " draw " << i;
  }
  NumpyRandomState rs(5489);
  EXPECT_EQ(rs.next_uint32(), 3499211612u);  // MT19937's published first output for seed 5489
}

TEST(NumpyRandomState, IntervalZeroDrawsNothing) {
  NumpyRandomState a(7), b(7);
  EXPECT_EQ(a.random_interval(0), 0u);
  EXPECT_EQ(a.next_uint32(), b.next_uint32());
}

// Masked rejection: mask = smallest all-ones >= max; 32-bit draws until (v & mask) <= max.
TEST(NumpyRandomState, IntervalIsMaskedRejection32) {
  NumpyRandomState rs(99);
  std::mt19937 ref(99);
  for (uint64_t max : {1ull, 2ull, 5ull, 1000ull, 65535ull, 65536ull, 4294967295ull}) {
    uint64_t mask = 1;
    while (mask < max) mask = (mask << 1) | 1;
    for (int i = 0; i < 200; ++i) {
      uint64_t v;
      while ((v = (ref() & mask)) > max) {
      }
      ASSERT_EQ(rs.random_interval(max), v) << "max " << max;
    }
  }
}

// Above 2^32 - 1 each draw takes two 32-bit words, the first one as the high half.
TEST(NumpyRandomState, IntervalAbove32BitsUsesTwoWords) {
  NumpyRandomState rs(3);
  std::mt19937 ref(3);
  const uint64_t max = (uint64_t{1} << 33) + 12345;
  const uint64_t mask = (uint64_t{1} << 34) - 1;
  for (int i = 0; i < 200; ++i) {
    uint64_t v;
    do {
      const uint64_t hi = ref(), lo = ref();
      v = ((hi << 32) | lo) & mask;
    } while (v > max);
    ASSERT_EQ(rs.random_interval(max), v);
  }
}

// numpy.random.RandomState(seed).shuffle(arange(n)), then a second shuffle of a fresh arange(n)
// from the same stream: the order GPTDataset draws in (document index, then shuffle index).
TEST(NumpyRandomState, ShufflesMatchNumpyGoldenVectors) {
  std::ifstream in(kGolden);
  ASSERT_TRUE(in) << "missing " << kGolden;
  const auto cases = nlohmann::json::parse(in);
  ASSERT_EQ(cases.size(), 16u);  // seeds 0, 1, 1234, 2^31-1 x n = 1, 2, 10, 1000
  for (const auto& c : cases) {
    const auto seed = c.at("seed").get<uint32_t>();
    const auto n = c.at("n").get<int64_t>();
    NumpyRandomState rs(seed);
    auto first = arange(n);
    rs.shuffle(first);
    EXPECT_EQ(first, c.at("first_shuffle").get<std::vector<int64_t>>()) << "seed " << seed << " n " << n;
    auto second = arange(n);
    rs.shuffle(second);
    EXPECT_EQ(second, c.at("second_shuffle_same_stream").get<std::vector<int64_t>>())
        << "seed " << seed << " n " << n;
  }
}

// The element type does not change the permutation (Megatron shuffles int32 and uint32 arrays).
TEST(NumpyRandomState, ShuffleIndependentOfElementType) {
  NumpyRandomState a(1234), b(1234);
  std::vector<int32_t> x(500);
  std::vector<uint32_t> y(500);
  std::iota(x.begin(), x.end(), 0);
  std::iota(y.begin(), y.end(), 0u);
  a.shuffle(x);
  b.shuffle(y);
  for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(static_cast<uint32_t>(x[i]), y[i]);
}
