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

// fused::packed_causal_attention: q / k / v viewed from one packed [s, b, n, 3, hn] projection
// output (as SelfAttention's linear_split leaves them), cuDNN forward, the backward through cuDNN's
// backend API. Against float64: the output and dq / dk / dv. And the point of it: the three
// gradients are views of one buffer at q / k / v's offsets and strides, so the projection's
// backward reads them as one packed matrix.
TEST(AttentionGpu, PackedBackwardWritesOneBufferAndMatchesFloat64) {
  SKIP_WITHOUT_GPU();
  const at::Device gpu(at::kCUDA, 0);
  for (at::ScalarType dtype : {at::kBFloat16, at::kHalf})
    for (int64_t hn : {int64_t{64}, int64_t{128}}) {
      const int64_t s = 512, b = 2, heads = 4;
      SCOPED_TRACE(std::string(c10::toString(dtype)) + ", hn " + std::to_string(hn));
      at::manual_seed(5);
      const auto opts = at::TensorOptions().dtype(dtype).device(gpu);
      const at::Tensor qkv = at::randn({s, b, heads, 3, hn}, opts).requires_grad_(true);  // [s, b, n, 3, hn]
      auto view = [&](int64_t part) { return qkv.select(3, part).permute({1, 2, 0, 3}); };  // [b, n, s, hn]
      const at::Tensor out = megahost::sdk::fused::packed_causal_attention(view(0), view(1), view(2));
      ASSERT_TRUE(out.defined()) << "the packed path did not take a shape cuDNN runs (MEGAHOST_CUDNN_SDPA_LOG=1 says why)";
      ASSERT_EQ(out.sizes(), (std::vector<int64_t>{b, heads, s, hn}));
      const at::Tensor g = at::randn({b, heads, s, hn}, opts);
      const auto grads = fused_test::grads_of(out, g, {qkv});
      // The gradient reached qkv as one tensor; inside the function it was three views of one buffer.
      ASSERT_EQ(grads[0].sizes(), qkv.sizes());

      const at::Tensor q64 = leaf64(qkv.select(3, 0)), k64 = leaf64(qkv.select(3, 1)), v64 = leaf64(qkv.select(3, 2));
      const at::Tensor ref = reference_attention(q64, k64, v64);  // [s, b, n * hn]
      const at::Tensor out_sbh = out.permute({2, 0, 1, 3}).reshape({s, b, heads * hn});
      EXPECT_CLOSE(out_sbh, ref, 1e-2);
      const at::Tensor g_sbh = g.permute({2, 0, 1, 3}).reshape({s, b, heads * hn}).to(at::kCPU).to(at::kDouble);
      (ref * g_sbh).sum().backward();
      EXPECT_CLOSE(grads[0].select(3, 0), q64.grad(), 1e-2);
      EXPECT_CLOSE(grads[0].select(3, 1), k64.grad(), 1e-2);
      EXPECT_CLOSE(grads[0].select(3, 2), v64.grad(), 1e-2);
    }
}

// The function's own gradients: dq, dk, dv alias one buffer laid out as the packed projection
// (what linear_split's backward checks before it skips its pack).
TEST(AttentionGpu, PackedBackwardGradientsAreViewsOfOneBuffer) {
  SKIP_WITHOUT_GPU();
  const auto opts = at::TensorOptions().dtype(at::kBFloat16).device(at::kCUDA);
  const int64_t s = 256, b = 2, heads = 2, hn = 64;
  const at::Tensor qkv = at::randn({s, b, heads, 3 * hn}, opts);  // linear_qkv's [s, b, ng, (np/ng + 2) hn]
  std::vector<at::Tensor> leaves;
  for (int64_t part = 0; part < 3; ++part) leaves.push_back(qkv.narrow(3, part * hn, hn).permute({1, 2, 0, 3}));
  std::vector<at::Tensor> in;
  for (const at::Tensor& t : leaves) in.push_back(t.detach().requires_grad_(true));
  // Leaves keep their views' layout and share one buffer, as linear_split's outputs do.
  ASSERT_TRUE(in[0].is_alias_of(in[1]));
  const at::Tensor out = megahost::sdk::fused::packed_causal_attention(in[0], in[1], in[2]);
  ASSERT_TRUE(out.defined());
  const auto grads = torch::autograd::grad({out}, in, {at::ones_like(out)});
  for (int64_t part = 0; part < 3; ++part) {
    EXPECT_TRUE(grads[part].is_alias_of(grads[0])) << "part " << part;
    EXPECT_EQ(grads[part].strides(), in[part].strides()) << "part " << part;
    EXPECT_EQ(grads[part].storage_offset(), in[part].storage_offset()) << "part " << part;
  }
}
