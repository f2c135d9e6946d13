// Blending: per-source sample counts with the 1.005 margin, and the greedy index build
// (FORMATS.md §3). Expected values computed by hand and checked with Python floats.
#include <gtest/gtest.h>

#include <vector>

#include "megahost/core/data/blend.h"
#include "megahost/core/data/numpy_math.h"
#include "megahost/core/error.h"

using megahost::core::Error;
using megahost::core::data::BlendLength;
using megahost::core::data::build_blend_indices;
using megahost::core::data::numpy_sum;
using megahost::core::data::plan_blend;

TEST(BlendPlan, CountsWithMargin) {
  // 1000 * 0.7 = 700 -> ceil(700 * 1.005) = ceil(703.5) = 704; 300 -> ceil(301.5) = 302.
  auto p = plan_blend({0.7, 0.3}, 1000);
  EXPECT_EQ(p.target_samples, (std::vector<int64_t>{700, 300}));
  EXPECT_EQ(p.requested_samples, (std::vector<int64_t>{704, 302}));
  EXPECT_EQ(p.size, 1000);
  EXPECT_EQ(plan_blend({0.7, 0.3}, 1000, 0.005, BlendLength::SumOfRequested).size, 1006);
  // 7 * 0.7 = 4.8999999999999995 -> 5 -> ceil(5.025) = 6; 7 * 0.3 = 2.1 -> 3 -> ceil(3.015) = 4.
  p = plan_blend({0.7, 0.3}, 7);
  EXPECT_EQ(p.target_samples, (std::vector<int64_t>{5, 3}));
  EXPECT_EQ(p.requested_samples, (std::vector<int64_t>{6, 4}));
  EXPECT_EQ(p.size, 8);  // slightly more than the target
  // Unnormalised weights 1, 2, 3 -> 1/6, 1/3, 1/2 of 1000: 167, 334, 500 -> 168, 336, 503.
  p = plan_blend({1, 2, 3}, 1000);
  EXPECT_EQ(p.target_samples, (std::vector<int64_t>{167, 334, 500}));
  EXPECT_EQ(p.requested_samples, (std::vector<int64_t>{168, 336, 503}));
  EXPECT_EQ(p.weights[2], 0.5);
}

TEST(BlendPlan, BadWeights) {
  EXPECT_THROW(plan_blend({}, 10), Error);
  EXPECT_THROW(plan_blend({0, 0}, 10), Error);
  EXPECT_THROW(plan_blend({1, -1}, 10), Error);
  EXPECT_THROW(plan_blend({1, 1}, -1), Error);
}

TEST(BlendIndices, HandComputedGreedy) {
  // s = 0: errors 0.5, 0.5 (tie -> 0); s = 1: -0.5, 0.5 -> 1; s = 2: 0, 0 -> 0; s = 3: -0.5, 0.5 -> 1.
  auto b = build_blend_indices({0.5, 0.5}, 4);
  EXPECT_EQ(b.dataset_index, (std::vector<int16_t>{0, 1, 0, 1}));
  EXPECT_EQ(b.dataset_sample_index, (std::vector<int64_t>{0, 0, 1, 1}));
  // s = 0: 0.2, 0.8 -> 1; s = 1: 0.2, -0.2 -> 0; s = 2: -0.6, 0.6 -> 1; s = 3: -0.4, 0.4 -> 1;
  // s = 4: -0.2, 0.2 -> 1.
  b = build_blend_indices({0.2, 0.8}, 5);
  EXPECT_EQ(b.dataset_index, (std::vector<int16_t>{1, 0, 1, 1, 1}));
  EXPECT_EQ(b.dataset_sample_index, (std::vector<int64_t>{0, 0, 1, 2, 3}));
  // 0.7 / 0.3 over 20 (Python run of the same rule): 14 and 6.
  b = build_blend_indices({0.7, 0.3}, 20);
  EXPECT_EQ(b.dataset_index, (std::vector<int16_t>{0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0}));
}

TEST(BlendIndices, RatiosStayWithinOneSample) {
  const std::vector<double> w = {0.5, 0.3, 0.15, 0.05};
  const int64_t n = 100000;
  const auto b = build_blend_indices(w, n);
  std::vector<int64_t> count(w.size(), 0);
  for (int64_t s = 0; s < n; ++s) {
    const auto d = static_cast<size_t>(b.dataset_index[static_cast<size_t>(s)]);
    ASSERT_EQ(b.dataset_sample_index[static_cast<size_t>(s)], count[d]);  // per-source counter
    ++count[d];
  }
  for (size_t d = 0; d < w.size(); ++d) EXPECT_NEAR(count[d], w[d] * n, 1.0);
}

// numpy sums pairwise with 8 accumulators from 8 elements on: the result differs in the last
// bit from a left-to-right sum for some inputs, and normalised weights follow numpy.
TEST(NumpyMath, PairwiseSum) {
  const std::vector<double> v = {1e16, 1.0, -1e16, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0};
  // numpy, 9 elements: accumulators r[k] = v[k] for k < 8 (no full second block of 8), combined
  // as ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7)), then the rest added in order:
  // ((1e16 + 1 = 1e16) + (-1e16 + 1 = -1e16)) + 4 = 4, + v[8] = 5.
  EXPECT_EQ(numpy_sum(v.data(), v.size()), 5.0);
  double sequential = 0;
  for (double x : v) sequential += x;
  EXPECT_EQ(sequential, 6.0);  // left to right: v[1] vanishes into 1e16, six 1s remain
  // Below 8 elements numpy adds left to right.
  const std::vector<double> small = {0.1, 0.2, 0.3};
  EXPECT_EQ(numpy_sum(small.data(), small.size()), (0.1 + 0.2) + 0.3);
}
