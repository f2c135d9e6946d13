// ParamRegistry::bind (the SDK side of mh_model_api.bind_storage) on plain libtorch: the parameter
// keeps its TensorImpl (leaf, requires_grad) but lives in the host's storage, backward accumulates
// into the host's grad storage, the grad_ready hook fires once per parameter per backward, and a
// bad binding changes nothing.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include <memory>
#include <vector>

#include "megahost/sdk/error.h"
#include "megahost/sdk/nn/params.h"
#include "megahost/sdk/torch_interop.h"

namespace nn = megahost::sdk::nn;
using megahost::sdk::DLView;

namespace {

struct Host {
  at::Tensor data, grad;  // [N] flat buffers
  std::vector<std::unique_ptr<DLView>> views;
  std::vector<mh_param_binding> bindings;
  std::vector<int> ready;  // grad_ready calls per parameter

  explicit Host(const nn::ParamRegistry& reg) {
    data = at::full({reg.numel() + 3}, -7.0f);  // 3 elements of padding stay untouched
    grad = at::full({reg.numel() + 3}, 5.0f);
    int64_t off = 0;
    for (const auto& p : reg.params()) {
      auto d = std::make_unique<DLView>(data.narrow(0, off, p.data.numel()).view(p.data.sizes()));
      auto g = std::make_unique<DLView>(grad.narrow(0, off, p.data.numel()).view(p.data.sizes()));
      bindings.push_back({sizeof(mh_param_binding), d->get(), g->get()});
      views.push_back(std::move(d));
      views.push_back(std::move(g));
      off += p.data.numel();
    }
    ready.assign(reg.params().size(), 0);
  }
  static void on_ready(void* ctx, size_t i) { static_cast<Host*>(ctx)->ready.at(i)++; }
};

// y = sum((x W^T + b) * W[0]) uses W twice: the hook must still fire once per backward.
at::Tensor loss_of(const at::Tensor& w, const at::Tensor& b, const at::Tensor& x) {
  return ((at::matmul(x, w.t()) + b) * w.select(0, 0).sum()).sum();
}

}  // namespace

TEST(BindSdk, ParametersMoveToHostStorageAndKeepTheirIdentity) {
  nn::ParamRegistry reg(at::kCPU, at::kFloat, 1234);
  at::Tensor w = reg.create("w", {3, 4}, nn::Init::normal(0.5), 0, 0);  // what a layer holds
  at::Tensor b = reg.create("b", {3}, nn::Init::normal(0.5), -1, MH_PARAM_NO_WEIGHT_DECAY);
  const at::Tensor w0 = w.detach().clone(), b0 = b.detach().clone();
  const at::Tensor x = at::randn({2, 4});
  loss_of(w, b, x).backward();  // a non-zero grad before binding: carried over
  const at::Tensor gw_before = w.grad().clone();

  Host host(reg);
  reg.bind(host.bindings.data(), host.bindings.size(), &Host::on_ready, &host);

  // the layer's tensor is the same object and now shows the host's memory
  EXPECT_TRUE(w.is_same(reg.params()[0].data));
  EXPECT_EQ(w.data_ptr(), host.data.data_ptr());
  EXPECT_EQ(b.data_ptr<float>(), host.data.data_ptr<float>() + 12);
  EXPECT_TRUE(w.is_leaf());
  EXPECT_TRUE(w.requires_grad());
  EXPECT_TRUE(at::equal(w.detach(), w0));
  EXPECT_TRUE(at::equal(host.data.narrow(0, 12, 3), b0));
  EXPECT_EQ(host.data[15].item<float>(), -7.0f);
  EXPECT_TRUE(at::equal(host.grad.narrow(0, 0, 12).view({3, 4}), gw_before));
  EXPECT_EQ(w.grad().data_ptr(), host.grad.data_ptr());

  // visit shows the host storage
  std::vector<void*> seen;
  reg.visit([](void* ctx, const mh_param_view* v) -> mh_error* {
    static_cast<std::vector<void*>*>(ctx)->push_back(v->data->data);
    static_cast<std::vector<void*>*>(ctx)->push_back(v->grad->data);
    return nullptr;
  }, &seen);
  ASSERT_EQ(seen.size(), 4u);
  EXPECT_EQ(seen[0], host.data.data_ptr());
  EXPECT_EQ(seen[1], host.grad.data_ptr());
  EXPECT_EQ(seen[2], static_cast<void*>(host.data.data_ptr<float>() + 12));

  // backward accumulates into the host's grads; hooks fire once per parameter per backward
  reg.zero_grad();
  EXPECT_EQ(host.grad.narrow(0, 0, 15).abs().sum().item<float>(), 0.0f);
  EXPECT_EQ(host.grad[15].item<float>(), 5.0f);
  loss_of(w, b, x).backward();
  EXPECT_EQ(host.ready, (std::vector<int>{1, 1}));
  loss_of(w, b, x).backward();
  EXPECT_EQ(host.ready, (std::vector<int>{2, 2}));
  // reference: the same math on plain leaves
  at::Tensor rw = w0.clone().requires_grad_(true), rb = b0.clone().requires_grad_(true);
  loss_of(rw, rb, x).backward();
  loss_of(rw, rb, x).backward();
  EXPECT_TRUE(at::allclose(host.grad.narrow(0, 0, 12).view({3, 4}), rw.grad()));
  EXPECT_TRUE(at::allclose(host.grad.narrow(0, 12, 3), rb.grad()));

  // an update through the host's buffer is what the next forward uses
  host.data.narrow(0, 12, 3).fill_(1.0f);
  EXPECT_TRUE(at::equal(b.detach(), at::ones({3})));

  // zero_grad repairs a replaced .grad
  w.mutable_grad() = at::zeros({3, 4});
  reg.zero_grad();
  EXPECT_EQ(w.grad().data_ptr(), host.grad.data_ptr());
}

TEST(BindSdk, BindingAgainReplacesTheHooks) {
  nn::ParamRegistry reg(at::kCPU, at::kFloat, 7);
  at::Tensor w = reg.create("w", {3, 4}, nn::Init::normal(0.5), 0, 0);
  at::Tensor b = reg.create("b", {3}, nn::Init::zeros(), -1, 0);
  Host first(reg), second(reg);
  reg.bind(first.bindings.data(), first.bindings.size(), &Host::on_ready, &first);
  reg.bind(second.bindings.data(), second.bindings.size(), &Host::on_ready, &second);
  loss_of(w, b, at::randn({2, 4})).backward();
  EXPECT_EQ(first.ready, (std::vector<int>{0, 0}));
  EXPECT_EQ(second.ready, (std::vector<int>{1, 1}));
  EXPECT_EQ(w.data_ptr(), second.data.data_ptr());
}

TEST(BindSdk, ABadBindingChangesNothing) {
  nn::ParamRegistry reg(at::kCPU, at::kFloat, 7);
  at::Tensor w = reg.create("w", {3, 4}, nn::Init::normal(0.5), 0, 0);
  reg.create("b", {3}, nn::Init::zeros(), -1, 0);
  void* before = w.data_ptr();
  Host host(reg);
  at::Tensor wrong = at::zeros({4});  // b is [3]
  DLView wrong_view(wrong);
  host.bindings[1].data = wrong_view.get();
  try {
    reg.bind(host.bindings.data(), host.bindings.size(), nullptr, nullptr);
    FAIL() << "expected an error";
  } catch (const megahost::sdk::Error& e) {
    EXPECT_NE(std::string(e.what()).find("'b' data has shape"), std::string::npos) << e.what();
  }
  EXPECT_EQ(w.data_ptr(), before);
  EXPECT_EQ(host.data[0].item<float>(), -7.0f);
  EXPECT_THROW(reg.bind(host.bindings.data(), 1, nullptr, nullptr), megahost::sdk::Error);

  // NULL keeps the plugin's storage for that side
  Host keep(reg);
  keep.bindings[0].grad = nullptr;
  void* grad_before = w.grad().data_ptr();
  reg.bind(keep.bindings.data(), keep.bindings.size(), nullptr, nullptr);
  EXPECT_EQ(w.data_ptr(), keep.data.data_ptr());
  EXPECT_EQ(w.grad().data_ptr(), grad_before);
}
