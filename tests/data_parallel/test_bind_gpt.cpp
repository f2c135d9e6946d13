// The gpt plugin's bind_storage through the core (Model::bind_storage): after binding, params()
// shows the host's buffers, training accumulates into them exactly as before, and grad_ready
// fires once per parameter per backward.
#include <gtest/gtest.h>

#include "dp_util.h"

using namespace dptest;

TEST(BindGpt, ParamsShowHostStorageAndTrainingAccumulatesThere) {
  auto bound = tiny_gpt(), plain = tiny_gpt();
  ASSERT_TRUE(bound->can_bind_storage());
  auto before = bound->params();
  int64_t n = 0;
  for (auto& p : before) n += p.data.numel();
  at::Tensor data = at::zeros({n}), grad = at::zeros({n});  // [N] host buffers
  std::vector<at::Tensor> dv, gv;
  int64_t off = 0;
  for (auto& p : before) {
    dv.push_back(data.narrow(0, off, p.data.numel()).view(p.data.sizes()));
    gv.push_back(grad.narrow(0, off, p.data.numel()).view(p.data.sizes()));
    off += p.data.numel();
  }
  std::vector<int> ready(before.size(), 0);
  bound->bind_storage(dv, gv, [&ready](size_t i) { ready.at(i)++; });

  auto after = bound->params();
  ASSERT_EQ(after.size(), before.size());
  for (size_t i = 0; i < after.size(); ++i) {
    EXPECT_EQ(after[i].name, before[i].name);
    EXPECT_EQ(after[i].data.data_ptr(), dv[i].data_ptr()) << after[i].name;
    EXPECT_EQ(after[i].grad.data_ptr(), gv[i].data_ptr()) << after[i].name;
    EXPECT_TRUE(at::equal(after[i].data, plain->params()[i].data)) << after[i].name;
  }
  auto abi = bound->abi_params();
  EXPECT_EQ(abi->views[0].data->data, data.data_ptr());

  // Two micro-batches: the same loss and grads as an unbound model; hooks once per backward.
  for (int k = 0; k < 2; ++k) {
    const core::Loss a = bound->forward_backward(sample(0, k), 0.5), b = plain->forward_backward(sample(0, k), 0.5);
    EXPECT_EQ(a.loss_sum, b.loss_sum);
  }
  EXPECT_EQ(ready, std::vector<int>(before.size(), 2));
  auto ref = plain->params();
  for (size_t i = 0; i < ref.size(); ++i) EXPECT_TRUE(at::allclose(gv[i], ref[i].grad, 1e-6, 1e-7)) << ref[i].name;
  EXPECT_GT(grad.abs().sum().item<double>(), 0.0);

  // An update written into the host's buffer is what the next forward uses.
  {
    at::NoGradGuard no_grad;
    data.add_(grad, -0.1);
    for (auto& p : ref) p.data.add_(p.grad, -0.1);
  }
  bound->zero_grad();
  EXPECT_EQ(grad.abs().sum().item<double>(), 0.0);
  EXPECT_EQ(bound->forward_loss(sample(1, 0)).loss_sum, plain->forward_loss(sample(1, 0)).loss_sum);
}
