// Helpers of the sdk_parallel tests: shards of full tensors and the comparison tolerance.
#pragma once

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <string>

namespace mhtest {

// Tolerance of every comparison with the single process (fp32, CPU): the largest difference is at
// most 1e-5 of the reference's largest magnitude (relative to the tensor's scale, so entries near
// zero do not make it meaningless).
constexpr double kRelTol = 1e-5;

inline void expect_close(const at::Tensor& got, const at::Tensor& want, const std::string& what) {
  ASSERT_EQ(got.sizes(), want.sizes()) << what;
  const double scale = std::max(want.abs().max().item<double>(), 1e-6);
  const double diff = (got.to(at::kDouble) - want.to(at::kDouble)).abs().max().item<double>();
  EXPECT_LE(diff, kRelTol * scale) << what << ": max |diff| " << diff << " vs scale " << scale;
}

// Rank `rank`'s part of `full` along `dim` split in `size` (glu: two halves split on their own).
inline at::Tensor shard(const at::Tensor& full, int64_t dim, int rank, int size, bool glu = false) {
  if (dim < 0 || size == 1) return full;
  if (!glu) return full.chunk(size, dim)[rank];
  const auto halves = full.chunk(2, dim);
  return at::cat({halves[0].chunk(size, dim)[rank], halves[1].chunk(size, dim)[rank]}, dim);
}

// A deterministic tensor of the given shape (values in about [-1, 1]).
inline at::Tensor fixed(at::IntArrayRef shape, uint64_t seed) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  return at::rand(shape, gen) * 2.0 - 1.0;
}

}  // namespace mhtest
