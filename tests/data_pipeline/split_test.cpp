// Split strings to sequence ranges, as Megatron-Core does: weights normalised with numpy, bounds
// round(lo * S), round(hi * S) with Python's round (half to even).
#include <gtest/gtest.h>

#include <string>

#include "megahost/core/data/gpt_indices.h"
#include "megahost/core/error.h"

using megahost::core::Error;
using megahost::core::data::parse_split;
using megahost::core::data::SequenceRange;
using megahost::core::data::split_sequence_ranges;

namespace {

// "[b,e)" for each split, "none" when Megatron builds no dataset for it.
std::string ranges(const std::string& split, int64_t s) {
  std::string out;
  for (const auto& r : split_sequence_ranges(split, s)) {
    if (!out.empty()) out += " ";
    out += r ? "[" + std::to_string(r->begin) + "," + std::to_string(r->end) + ")" : "none";
  }
  return out;
}

}  // namespace

TEST(Split, ParsesAndNormalises) {
  const auto w = parse_split("949,50,1");
  EXPECT_EQ(w[0], 949.0 / 1000.0);
  EXPECT_EQ(w[1], 50.0 / 1000.0);
  EXPECT_EQ(w[2], 1.0 / 1000.0);
  // Any separator; missing entries are zero.
  EXPECT_EQ(parse_split("98/2/0"), parse_split("98,2,0"));
  const auto two = parse_split("99,1");
  EXPECT_EQ(two[2], 0.0);
  EXPECT_EQ(two[0], 0.99);
  EXPECT_EQ(parse_split("1")[0], 1.0);
  EXPECT_EQ(parse_split("0.9, 0.1")[1], 0.1 / (0.9 + 0.1));
}

TEST(Split, RejectsBadStrings) {
  EXPECT_THROW(parse_split(""), Error);
  EXPECT_THROW(parse_split("1,2,3,4"), Error);
  EXPECT_THROW(parse_split("0,0,0"), Error);
  EXPECT_THROW(parse_split("1..2,3"), Error);
  try {
    parse_split("1,2,3,4");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("HINT"), std::string::npos) << e.what();
  }
}

TEST(Split, RangesWithoutRounding) {
  EXPECT_EQ(ranges("949,50,1", 1000), "[0,949) [949,999) [999,1000)");
  EXPECT_EQ(ranges("949,50,1", 100000), "[0,94900) [94900,99900) [99900,100000)");
  EXPECT_EQ(ranges("1,1,1", 0), "[0,0) [0,0) [0,0)");
}

// Bounds 0.949 * S and 0.999 * S that land on .5 round half to even (Python's round): the
// products are exact in float64 for these S (checked with Python: 0.949 * 500 == 474.5).
TEST(Split, HalfWayBoundsRoundToEven) {
  // 474.5 -> 474, 499.5 -> 500; test is empty.
  EXPECT_EQ(ranges("949,50,1", 500), "[0,474) [474,500) [500,500)");
  // 1423.5 -> 1424, 1498.5 -> 1498.
  EXPECT_EQ(ranges("949,50,1", 1500), "[0,1424) [1424,1498) [1498,1500)");
  // 2372.5 -> 2372, 2497.5 -> 2498.
  EXPECT_EQ(ranges("949,50,1", 2500), "[0,2372) [2372,2498) [2498,2500)");
  // 4270.5 -> 4270, 4495.5 -> 4496.
  EXPECT_EQ(ranges("949,50,1", 4500), "[0,4270) [4270,4496) [4496,4500)");
}

TEST(Split, OtherRounding) {
  // 284.7 -> 285, 299.7 -> 300: test empty.
  EXPECT_EQ(ranges("949,50,1", 300), "[0,285) [285,300) [300,300)");
  // 0.949 * 100 = 94.89999999999999 -> 95.
  EXPECT_EQ(ranges("949,50,1", 100), "[0,95) [95,100) [100,100)");
  // 9.49 -> 9, 9.99 -> 10.
  EXPECT_EQ(ranges("949,50,1", 10), "[0,9) [9,10) [10,10)");
}

TEST(Split, ZeroWeightGivesNoDataset) {
  EXPECT_EQ(ranges("98,2,0", 1000), "[0,980) [980,1000) none");
  EXPECT_EQ(ranges("1", 77), "[0,77) none none");
  EXPECT_EQ(ranges("0,1,0", 10), "none [0,10) none");
}

TEST(Split, RangesCoverEverySequenceOnce) {
  for (int64_t s : {1, 2, 3, 7, 99, 500, 1001, 123457}) {
    for (const char* split : {"949,50,1", "1,1,1", "969,30,1", "8,1,1", "99,1,0"}) {
      int64_t next = 0;
      for (const auto& r : split_sequence_ranges(split, s)) {
        if (!r) continue;
        EXPECT_EQ(r->begin, next) << split << " S=" << s;
        EXPECT_LE(r->begin, r->end);
        next = r->end;
      }
      EXPECT_EQ(next, s) << split;
    }
  }
}
