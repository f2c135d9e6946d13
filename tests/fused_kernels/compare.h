// tests/fused_kernels: how fused results are compared with float64 references (shared by the
// test files of this folder).
//
// Error measure: max |got - want| / max |want| over the tensor (want in float64 from the same,
// already-rounded inputs). NaN or Inf anywhere fails (the comparison is written so that NaN never
// passes).
#pragma once

#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

#include "megahost/sdk/nn/fused.h"

namespace fused_test {

inline double rel_error(const at::Tensor& got, const at::Tensor& want) {
  const at::Tensor g = got.detach().to(at::kCPU).to(at::kDouble), w = want.detach().to(at::kCPU).to(at::kDouble);
  if (!g.isfinite().all().item<bool>()) return std::nan("");
  const double scale = std::max(w.abs().max().item<double>(), 1e-30);
  return (g - w).abs().max().item<double>() / scale;
}

// Leaves in float64 on the CPU holding the same (rounded) values as `t`.
inline at::Tensor leaf64(const at::Tensor& t) { return t.detach().to(at::kCPU).to(at::kDouble).requires_grad_(true); }
inline at::Tensor leaf(const at::Tensor& t) { return t.detach().clone().requires_grad_(true); }

inline bool have_gpu() { return megahost::sdk::fused::built_with_cuda() && at::hasCUDA(); }

}  // namespace fused_test

#define EXPECT_CLOSE(got, want, bound)                                                               \
  do {                                                                                               \
    const double err_ = fused_test::rel_error(got, want);                                            \
    EXPECT_TRUE(err_ <= (bound)) << #got << " vs " << #want << ": relative error " << err_ << " (bound " \
                                 << (bound) << ")";                                                  \
  } while (0)

#define SKIP_WITHOUT_GPU()                                                                       \
  if (!fused_test::have_gpu())                                                                   \
  GTEST_SKIP() << (megahost::sdk::fused::built_with_cuda() ? "no CUDA device"                    \
                                                           : "CPU build: the fused CUDA kernels are not compiled")
