// nn::checkpoint on its own: the recompute draws the forward's dropout masks (default generator
// and a ScopedDefaultGenerator), leaves the RNG stream where a plain backward would, passes
// undefined inputs through, keeps parameters' grads flowing when no input needs a grad, and hands
// back input gradients as the recomputed graph made them (no copy to the input's layout).
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/custom_function.h>

#include <vector>

#include "megahost/sdk/nn/recompute.h"
#include "megahost/sdk/parallel/random.h"

namespace nn = megahost::sdk::nn;
namespace parallel = megahost::sdk::parallel;

namespace {

// y = dropout(x * 3, 0.5): its grad w.r.t. x is 3 * keep / (1 - p), i.e. 6 where y kept x.
at::Tensor dropped(const std::vector<at::Tensor>& in) { return parallel::replicated_dropout(in[0] * 3.0, 0.5, true); }

void expect_grad_follows_forward_mask(const at::Tensor& x, const at::Tensor& y) {
  const at::Tensor kept = (y != 0).to(at::kFloat);
  ASSERT_GT(kept.sum().item<float>(), 0.0f);
  ASSERT_LT(kept.sum().item<float>(), static_cast<float>(kept.numel()));  // some dropped
  EXPECT_TRUE(at::equal(x.grad(), kept * 6.0)) << "the recompute drew another mask";
}

}  // namespace

TEST(Checkpoint, RecomputeDrawsTheForwardsDropoutMask) {
  at::manual_seed(11);
  const at::Tensor x = (at::rand({64}) + 1.0).requires_grad_(true);  // no zeros
  const at::Tensor y = nn::checkpoint(dropped, {x});
  // A second draw in between: without restoring, the recompute would see this stream position.
  const at::Tensor other = dropped({x.detach()});
  EXPECT_FALSE(at::equal(other != 0, y != 0)) << "two draws gave one mask: the test could not fail";
  y.sum().backward();
  expect_grad_follows_forward_mask(x, y);
}

TEST(Checkpoint, RecomputeUsesTheThreadsScopedDefaultGenerator) {
  at::Generator gen = at::detail::createCPUGenerator(5);
  const at::Tensor x = (at::rand({64}) + 1.0).requires_grad_(true);
  at::Tensor y;
  {
    parallel::ScopedDefaultGenerator scoped(gen);
    y = nn::checkpoint(dropped, {x});
    dropped({x.detach()});  // advances gen
  }
  y.sum().backward();  // outside the scope: the checkpoint reinstalls gen for the recompute
  expect_grad_follows_forward_mask(x, y);
}

TEST(Checkpoint, BackwardLeavesTheRngStreamWhereAPlainBackwardWould) {
  const at::Tensor x = (at::rand({64}) + 1.0).requires_grad_(true);
  at::manual_seed(3);
  dropped({x}).sum().backward();
  const at::Tensor plain_next = at::rand({8});
  at::manual_seed(3);
  nn::checkpoint(dropped, {x}).sum().backward();
  EXPECT_TRUE(at::equal(at::rand({8}), plain_next));
}

TEST(Checkpoint, UndefinedInputsPassThroughAndParametersGetGradsWithoutInputGrads) {
  const at::Tensor w = at::randn({4, 4}).requires_grad_(true);
  const at::Tensor x = at::randn({2, 4});  // plain data: no input requires grad
  auto fn = [&w](const std::vector<at::Tensor>& in) {
    EXPECT_FALSE(in[1].defined());
    return at::tanh(at::matmul(in[0], w)) * in[2];
  };
  const at::Tensor scale = at::full({1}, 2.0).requires_grad_(true);
  const at::Tensor plain_w_grad = [&] {
    at::Tensor wr = w.detach().clone().requires_grad_(true);
    (at::tanh(at::matmul(x, wr)) * 2.0).pow(2).sum().backward();
    return wr.grad();
  }();
  nn::checkpoint(fn, {x, at::Tensor(), scale.detach()}).pow(2).sum().backward();
  ASSERT_TRUE(w.grad().defined());
  EXPECT_TRUE(at::allclose(w.grad(), plain_w_grad, 1e-6, 0.0));
  // and input grads come back for inputs that need them
  nn::checkpoint(fn, {x, at::Tensor(), scale}).sum().backward();
  EXPECT_TRUE(scale.grad().defined());
}

TEST(Checkpoint, WithoutGradModeItIsAPlainCall) {
  const at::Tensor x = at::randn({3}).requires_grad_(true);
  at::NoGradGuard no_grad;
  const at::Tensor y = nn::checkpoint([](const std::vector<at::Tensor>& in) { return in[0] * 2.0; }, {x});
  EXPECT_FALSE(y.requires_grad());
  EXPECT_TRUE(at::equal(y, x.detach() * 2.0));
}

namespace {

// y = x * 1 whose backward hands back the upstream gradient as a view of `g_buffer` at x's strides
// (what cuDNN's packed attention backward does with dq / dk / dv).
at::Tensor g_buffer;
struct GradAsView : torch::autograd::Function<GradAsView> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x) {
    ctx->saved_data["sizes"] = x.sizes().vec();
    ctx->saved_data["strides"] = x.strides().vec();
    ctx->saved_data["offset"] = x.storage_offset();
    return x * 1.0;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad) {
    at::Tensor view = g_buffer.as_strided(ctx->saved_data["sizes"].toIntVector(),
                                          ctx->saved_data["strides"].toIntVector(),
                                          ctx->saved_data["offset"].toInt());
    view.copy_(grad[0]);
    return {view};
  }
};

}  // namespace

// An input that is a strided view (q of linear_qkv's output) gets its gradient back as the
// recomputed graph made it: the same tensor, not a contiguous copy (AccumulateGrad's, when the
// gradient was read from a fresh leaf's .grad).
TEST(Checkpoint, InputGradientsComeBackAsTheRecomputedGraphMadeThem) {
  const at::Tensor base = at::randn({5, 6}).requires_grad_(true);
  const at::Tensor x = base.narrow(1, 2, 3);  // [5, 3] of rows 6 apart: not contiguous
  ASSERT_FALSE(x.is_contiguous());
  g_buffer = at::zeros({5 * 6});
  at::Tensor seen;
  x.register_hook([&seen](const at::Tensor& g) { seen = g; });
  const at::Tensor y = nn::checkpoint([](const std::vector<at::Tensor>& in) { return GradAsView::apply(in[0]); }, {x});
  (y * at::arange(15, at::kFloat).view({5, 3})).sum().backward();
  ASSERT_TRUE(seen.defined());
  EXPECT_TRUE(seen.is_alias_of(g_buffer)) << "the gradient was copied on its way out of the recompute";
  EXPECT_EQ(seen.strides(), x.strides());
  // and the values are right: base's gradient is the weights at columns 2..4, zero elsewhere
  at::Tensor want = at::zeros({5, 6});
  want.narrow(1, 2, 3).copy_(at::arange(15, at::kFloat).view({5, 3}));
  EXPECT_TRUE(at::equal(base.grad(), want));
}
