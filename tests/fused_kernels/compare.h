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

#include <torch/csrc/autograd/autograd.h>

#include <vector>

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

// float64 versions of the operations, straight from the definitions.
inline at::Tensor layer_norm64(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, double eps) {
  const at::Tensor mean = x.mean(-1, true), var = (x - mean).pow(2).mean(-1, true);
  return (x - mean) / (var + eps).sqrt() * w + b;
}
inline at::Tensor rms_norm64(const at::Tensor& x, const at::Tensor& w, double eps) {
  return x / (x.pow(2).mean(-1, true) + eps).sqrt() * w;
}
inline at::Tensor rotary64(const at::Tensor& t, const at::Tensor& angles) {  // angles [s, 1, 1, rot]
  const int64_t rot = angles.size(-1), half = rot / 2;
  const at::Tensor a = angles.to(at::kDouble), c = a.cos(), s = a.sin();
  const at::Tensor x = t.narrow(-1, 0, rot), x1 = x.narrow(-1, 0, half), x2 = x.narrow(-1, half, half);
  const at::Tensor rotated = x * c + at::cat({-x2, x1}, -1) * s;
  return rot == t.size(-1) ? rotated : at::cat({rotated, t.narrow(-1, rot, t.size(-1) - rot)}, -1);
}

// Gradients of out (seeded by seed) with respect to in.
inline std::vector<at::Tensor> grads_of(const at::Tensor& out, const at::Tensor& seed, const std::vector<at::Tensor>& in) {
  return torch::autograd::grad({out}, in, {seed.to(out.device()).to(out.scalar_type())}, true, false, true);
}

// A dtype the GPU tests run and its relative-error bound against float64.
struct Case {
  at::ScalarType dtype;
  double bound;
};

inline std::vector<Case> gpu_cases() { return {{at::kFloat, 1e-5}, {at::kBFloat16, 1e-2}}; }

inline at::TensorOptions cuda(at::ScalarType d) { return at::TensorOptions().device(at::kCUDA).dtype(d); }

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
