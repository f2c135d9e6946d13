// Causal attention on CUDA (nn::causal_dot_product_attention: libtorch's fused kernels) against
// float64 softmax(q k^T / sqrt(hn) + causal mask) v, forward and backward, for multi-head,
// grouped-query and multi-query shapes. Grouped queries go to the kernels as groups where
// libtorch can (2.5+: enable_gqa), else with k / v repeated: both must match the reference.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "compare.h"
#include "megahost/sdk/nn/attention.h"

namespace nn = megahost::sdk::nn;
using fused_test::leaf64;

namespace {

// q [s, b, np, hn], k / v [s, b, ng, hn] in float64 -> [s, b, np * hn].
at::Tensor reference_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  const int64_t s = q.size(0), b = q.size(1), heads = q.size(2), groups = k.size(2), hn = q.size(3);
  const at::Tensor kr = k.repeat_interleave(heads / groups, 2), vr = v.repeat_interleave(heads / groups, 2);
  const at::Tensor qb = q.permute({1, 2, 0, 3}), kb = kr.permute({1, 2, 0, 3}), vb = vr.permute({1, 2, 0, 3});
  const at::Tensor future = at::ones({s, s}, at::kBool).triu(1);
  const at::Tensor scores =
      (at::matmul(qb, kb.transpose(-2, -1)) / std::sqrt(static_cast<double>(hn))).masked_fill(
          future, -std::numeric_limits<double>::infinity());  // [b, np, s, s]
  return at::matmul(at::softmax(scores, -1), vb).permute({2, 0, 1, 3}).reshape({s, b, heads * hn});
}

}  // namespace

TEST(AttentionGpu, CausalMultiGroupedAndMultiQueryMatchFloat64) {
  SKIP_WITHOUT_GPU();
  const at::Device gpu(at::kCUDA, 0);
  const int64_t s = 96, b = 2, heads = 8, hn = 64;
  for (at::ScalarType dtype : {at::kBFloat16, at::kFloat})
    for (int64_t groups : {heads, int64_t{2}, int64_t{1}}) {
      SCOPED_TRACE(std::string(c10::toString(dtype)) + ", " + std::to_string(groups) + " groups");
      const auto opts = at::TensorOptions().dtype(dtype).device(gpu);
      const at::Tensor q = at::randn({s, b, heads, hn}, opts).requires_grad_(true);
      const at::Tensor k = at::randn({s, b, groups, hn}, opts).requires_grad_(true);
      const at::Tensor v = at::randn({s, b, groups, hn}, opts).requires_grad_(true);
      const at::Tensor out = nn::causal_dot_product_attention(q, k, v, /*dropout_p=*/0.0);
      ASSERT_EQ(out.sizes(), (std::vector<int64_t>{s, b, heads * hn}));
      const at::Tensor g64 = at::randn({s, b, heads * hn}, at::kDouble);
      (out.to(at::kCPU).to(at::kDouble) * g64).sum().backward();

      const at::Tensor q64 = leaf64(q), k64 = leaf64(k), v64 = leaf64(v);
      const at::Tensor want = reference_attention(q64, k64, v64);
      (want * g64).sum().backward();
      const double tol = dtype == at::kFloat ? 1e-3 : 1e-2;
      EXPECT_CLOSE(out, want, tol);
      EXPECT_CLOSE(q.grad(), q64.grad(), tol);
      EXPECT_CLOSE(k.grad(), k64.grad(), tol);
      EXPECT_CLOSE(v.grad(), v64.grad(), tol);
    }
}
