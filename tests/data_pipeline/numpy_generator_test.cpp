// numpy.random.default_rng(seed) reproduced bit for bit: SeedSequence states, PCG64's raw
// outputs and Generator.integers(dtype=int32), against values numpy 1.24 printed (the lines in
// each test are the Python that made them).
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "megahost/core/data/numpy_generator.h"

using megahost::core::data::numpy_seed_sequence_state;
using megahost::core::data::NumpyPcg64;

namespace {

std::vector<int32_t> draw(uint32_t seed, int32_t low, int32_t high, int n) {
  NumpyPcg64 g(seed);
  std::vector<int32_t> out;
  for (int i = 0; i < n; ++i) out.push_back(g.integer_int32(low, high));
  return out;
}

}  // namespace

TEST(NumpyGenerator, SeedSequenceStateMatchesNumpy) {
  // [hex(x) for x in np.random.SeedSequence(s).generate_state(4, np.uint64)]
  EXPECT_EQ(numpy_seed_sequence_state(0, 4),
            (std::vector<uint64_t>{0xdb2cd7e7b0f478beULL, 0xabf4641a2c71ba49ULL, 0x20c6ed6d9d7b8d41ULL,
                                   0x2c4099de223c39d4ULL}));
  EXPECT_EQ(numpy_seed_sequence_state(1234, 4),
            (std::vector<uint64_t>{0x5f83044cad3f26a6ULL, 0xa0d9b3700cea3a6fULL, 0xa8647d8b1e3e7527ULL,
                                   0x687a8e7300372192ULL}));
}

TEST(NumpyGenerator, Pcg64RawOutputsMatchNumpy) {
  // np.random.default_rng(0).bit_generator.random_raw(3)
  NumpyPcg64 g(0);
  EXPECT_EQ(g.next_uint64(), 11749869230777074271ULL);
  EXPECT_EQ(g.next_uint64(), 4976686463289251617ULL);
  EXPECT_EQ(g.next_uint64(), 755828109848996024ULL);
}

TEST(NumpyGenerator, IntegersInt32MatchNumpy) {
  // np.random.default_rng(1234).integers(1, 4096, 8, dtype=np.int32)
  EXPECT_EQ(draw(1234, 1, 4096, 8), (std::vector<int32_t>{4011, 4000, 4046, 1557, 702, 3781, 430, 1072}));
  // np.random.default_rng(7).integers(-5, 5, 12, dtype=np.int32): a negative low
  EXPECT_EQ(draw(7, -5, 5, 12), (std::vector<int32_t>{4, 1, 1, 3, 0, 2, 3, -3, -5, -2, -3, 3}));
  // np.random.default_rng(3).integers(0, 2**31-1, 8, dtype=np.int32): about half the draws rejected
  EXPECT_EQ(draw(3, 0, 2147483647, 8), (std::vector<int32_t>{1742692731, 183930185, 385346042, 508546690, 389477914,
                                                             1720723810, 1866662801, 1250183451}));
}

TEST(NumpyGenerator, MegatronMockLengthsMatchNumpy) {
  // a = np.random.default_rng(seed=0).integers(low=1, high=4096, size=100000, dtype=np.int32)
  const std::vector<int32_t> a = draw(0, 1, 4096, 100000);
  EXPECT_EQ(std::vector<int32_t>(a.begin(), a.begin() + 12),
            (std::vector<int32_t>{3484, 2609, 2094, 1105, 1261, 168, 309, 68, 718, 3331, 2660, 3738}));
  EXPECT_EQ(std::vector<int32_t>(a.end() - 10, a.end()),
            (std::vector<int32_t>{50, 1471, 768, 3055, 610, 2815, 2592, 61, 100, 769}));
  int64_t sum = 0;
  for (int32_t x : a) sum += x;
  EXPECT_EQ(sum, 204637097);  // int(a.astype(np.int64).sum())
}
