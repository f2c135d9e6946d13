// The parameter registry: Megatron init, seeds, gradients that stay in their storage, ABI views.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "megahost/sdk/nn/cuda_graph.h"
#include "megahost/sdk/nn/linear.h"
#include "megahost/sdk/nn/norm.h"
#include "megahost/sdk/nn/params.h"
#include "megahost/sdk/nn/transformer.h"
#include "megahost/sdk/torch_interop.h"

namespace nn = megahost::sdk::nn;

TEST(NnParams, GradIsAllocatedAtCreateAsZerosOfTheSameShape) {
  nn::ParamRegistry reg(at::kCPU, at::kFloat, 1);
  const at::Tensor w = reg.create("w", {3, 5}, nn::Init::normal(0.02), 0, 0);
  const nn::Param& p = reg.params()[0];
  EXPECT_TRUE(w.requires_grad());
  EXPECT_TRUE(w.is_leaf());
  ASSERT_TRUE(p.grad.defined());
  EXPECT_EQ(p.grad.sizes(), w.sizes());
  EXPECT_TRUE(at::equal(p.grad, at::zeros({3, 5})));
  EXPECT_TRUE(w.grad().is_same(p.grad));
}

TEST(NnParams, BackwardAccumulatesInPlaceIntoTheSameStorage) {
  nn::ParamRegistry reg(at::kCPU, at::kFloat, 1);
  nn::ColumnParallelLinear lin(reg, "lin", 4, 3, true, nn::Init::normal(0.5));
  const void* weight_grad_ptr = reg.params()[0].grad.data_ptr();
  const void* bias_grad_ptr = reg.params()[1].grad.data_ptr();
  const at::Tensor x1 = at::arange(8, at::kFloat).view({2, 4}) / 8.0;
  const at::Tensor x2 = at::arange(8, at::kFloat).view({2, 4}).flip(1) / 4.0;

  lin.forward(x1).pow(2).sum().backward();
  const at::Tensor g1 = reg.params()[0].grad.clone(), b1 = reg.params()[1].grad.clone();
  reg.zero_grad();
  EXPECT_EQ(reg.params()[0].grad.abs().sum().item<float>(), 0.0f);
  lin.forward(x2).pow(2).sum().backward();
  const at::Tensor g2 = reg.params()[0].grad.clone(), b2 = reg.params()[1].grad.clone();
  reg.zero_grad();

  lin.forward(x1).pow(2).sum().backward();
  lin.forward(x2).pow(2).sum().backward();
  EXPECT_EQ(lin.weight.grad().data_ptr(), weight_grad_ptr);
  EXPECT_EQ(lin.bias.grad().data_ptr(), bias_grad_ptr);
  EXPECT_EQ(reg.params()[0].grad.data_ptr(), weight_grad_ptr);
  EXPECT_TRUE(at::allclose(reg.params()[0].grad, g1 + g2, 1e-6, 1e-6));
  EXPECT_TRUE(at::allclose(reg.params()[1].grad, b1 + b2, 1e-6, 1e-6));
  EXPECT_GT(g1.abs().sum().item<float>(), 0.0f);

  reg.zero_grad();  // in place: same storage, zeros
  EXPECT_EQ(lin.weight.grad().data_ptr(), weight_grad_ptr);
  EXPECT_EQ(reg.params()[0].grad.abs().sum().item<float>(), 0.0f);
}

TEST(NnParams, ZeroGradReinstallsAGradThatWasSwappedOut) {
  nn::ParamRegistry reg(at::kCPU, at::kFloat, 1);
  const at::Tensor w = reg.create("w", {4}, nn::Init::ones(), -1, 0);
  const void* ptr = reg.params()[0].grad.data_ptr();
  w.mutable_grad() = at::Tensor();  // as Module::zero_grad(set_to_none=true) would
  reg.zero_grad();
  (w * 3).sum().backward();
  EXPECT_EQ(w.grad().data_ptr(), ptr);
  EXPECT_TRUE(at::equal(reg.params()[0].grad, at::full({4}, 3.0f)));
}

TEST(NnParams, HostWritesThroughTheViewsReachTheModel) {
  nn::ParamRegistry reg(at::kCPU, at::kFloat, 1);
  const at::Tensor w = reg.create("w", {2, 2}, nn::Init::zeros(), 0, 0);
  struct Ctx {
    std::vector<std::string> names;
  } ctx;
  mh_error* err = reg.visit(
      [](void* c, const mh_param_view* p) -> mh_error* {
        static_cast<Ctx*>(c)->names.push_back(p->name);
        megahost::sdk::to_torch(p->data).fill_(2.5);  // an optimizer step, say
        megahost::sdk::to_torch(p->grad).fill_(1.0);
        return nullptr;
      },
      &ctx);
  EXPECT_EQ(err, nullptr);
  EXPECT_EQ(ctx.names, std::vector<std::string>{"w"});
  EXPECT_TRUE(at::equal(w, at::full({2, 2}, 2.5f)));
  EXPECT_TRUE(at::equal(w.grad(), at::ones({2, 2})));
}

TEST(NnParams, ViewsCarryShapeDtypeParallelDimAndFlags) {
  nn::ParamRegistry reg(at::kCPU, at::kFloat, 1);
  nn::RowParallelLinear row(reg, "row", 6, 4, true, nn::Init::normal(0.02));
  struct Seen {
    std::string name;
    std::vector<int64_t> shape, grad_shape;
    int32_t tp_dim;
    uint32_t flags;
    bool same_dtype;
    bool distinct_storage;
  };
  std::vector<Seen> seen;
  mh_error* err = reg.visit(
      [](void* c, const mh_param_view* p) -> mh_error* {
        static_cast<std::vector<Seen>*>(c)->push_back(
            {p->name, std::vector<int64_t>(p->data->shape, p->data->shape + p->data->ndim),
             std::vector<int64_t>(p->grad->shape, p->grad->shape + p->grad->ndim), p->tensor_parallel_dim, p->flags,
             p->data->dtype.code == kDLFloat && p->data->dtype.bits == 32 && p->grad->dtype.bits == 32,
             p->data->data != p->grad->data});
        return nullptr;
      },
      &seen);
  ASSERT_EQ(err, nullptr);
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].name, "row.weight");
  EXPECT_EQ(seen[0].shape, (std::vector<int64_t>{4, 6}));
  EXPECT_EQ(seen[0].grad_shape, (std::vector<int64_t>{4, 6}));
  EXPECT_EQ(seen[0].tp_dim, 1);
  EXPECT_EQ(seen[0].flags, 0u);
  EXPECT_EQ(seen[1].name, "row.bias");
  EXPECT_EQ(seen[1].tp_dim, -1);
  EXPECT_EQ(seen[1].flags, MH_PARAM_NO_WEIGHT_DECAY);
  EXPECT_TRUE(seen[0].same_dtype && seen[1].same_dtype);
  EXPECT_TRUE(seen[0].distinct_storage);
}

TEST(NnParams, InitIsMegatronsNormalWithScaledOutputLayers) {
  nn::TransformerConfig cfg;
  cfg.num_layers = 8;
  cfg.hidden_size = 128;
  cfg.num_attention_heads = 4;
  cfg.num_query_groups = 4;
  cfg.kv_channels = 32;
  cfg.ffn_hidden_size = 512;
  cfg.init_method_std = 0.05;
  nn::ParamRegistry reg(at::kCPU, at::kFloat, 42);
  nn::TransformerLayer layer(reg, "decoder.layers.0", cfg);
  auto std_of = [&](const char* n) { return reg.find(std::string("decoder.layers.0.") + n)->data.std().item<double>(); };
  auto mean_of = [&](const char* n) { return reg.find(std::string("decoder.layers.0.") + n)->data.mean().item<double>(); };
  const double scaled = 0.05 / std::sqrt(2.0 * 8);
  EXPECT_NEAR(std_of("self_attention.linear_qkv.weight"), 0.05, 0.05 * 0.05);
  EXPECT_NEAR(std_of("mlp.linear_fc1.weight"), 0.05, 0.05 * 0.05);
  EXPECT_NEAR(std_of("self_attention.linear_proj.weight"), scaled, scaled * 0.05);
  EXPECT_NEAR(std_of("mlp.linear_fc2.weight"), scaled, scaled * 0.05);
  EXPECT_NEAR(mean_of("mlp.linear_fc1.weight"), 0.0, 0.01);
  EXPECT_TRUE(at::equal(reg.find("decoder.layers.0.mlp.linear_fc1.bias")->data, at::zeros({512})));
  EXPECT_TRUE(at::equal(reg.find("decoder.layers.0.input_layernorm.weight")->data, at::ones({128})));
  EXPECT_TRUE(at::equal(reg.find("decoder.layers.0.pre_mlp_layernorm.bias")->data, at::zeros({128})));
}

TEST(NnParams, SameSeedSameValuesWhateverTheCreationOrder) {
  nn::ParamRegistry a(at::kCPU, at::kFloat, 1234), b(at::kCPU, at::kFloat, 1234), c(at::kCPU, at::kFloat, 1235);
  a.create("x", {16}, nn::Init::normal(1.0), -1, 0);
  a.create("y", {16}, nn::Init::normal(1.0), -1, 0);
  b.create("y", {16}, nn::Init::normal(1.0), -1, 0);  // other order, same names
  b.create("x", {16}, nn::Init::normal(1.0), -1, 0);
  c.create("x", {16}, nn::Init::normal(1.0), -1, 0);
  EXPECT_TRUE(at::equal(a.find("x")->data, b.find("x")->data));
  EXPECT_TRUE(at::equal(a.find("y")->data, b.find("y")->data));
  EXPECT_FALSE(at::equal(a.find("x")->data, a.find("y")->data));
  EXPECT_FALSE(at::equal(a.find("x")->data, c.find("x")->data));
}

TEST(NnParams, DuplicateNamesAndUnknownFlagsTargetsAreBugs) {
  nn::ParamRegistry reg(at::kCPU, at::kFloat, 1);
  reg.create("w", {2}, nn::Init::zeros(), -1, 0);
  EXPECT_THROW(reg.create("w", {2}, nn::Init::zeros(), -1, 0), megahost::sdk::Error);
  EXPECT_THROW(reg.create("v", {2}, nn::Init::zeros(), 1, 0), megahost::sdk::Error);  // tp dim out of range
  EXPECT_THROW(reg.add_flags("nope", MH_PARAM_SHARED_EMBEDDING), megahost::sdk::Error);
  reg.add_flags("w", MH_PARAM_SHARED_EMBEDDING);
  EXPECT_EQ(reg.find("w")->flags, MH_PARAM_SHARED_EMBEDDING);
}

TEST(NnParams, ReducedPrecisionParamsKeepTheFloat32Draw) {
  nn::ParamRegistry f32(at::kCPU, at::kFloat, 9), bf16(at::kCPU, at::kBFloat16, 9);
  f32.create("w", {64}, nn::Init::normal(0.02), -1, 0);
  bf16.create("w", {64}, nn::Init::normal(0.02), -1, 0);
  EXPECT_EQ(bf16.find("w")->data.scalar_type(), at::kBFloat16);
  EXPECT_EQ(bf16.find("w")->grad.scalar_type(), at::kBFloat16);
  EXPECT_TRUE(at::equal(bf16.find("w")->data, f32.find("w")->data.to(at::kBFloat16)));
}

// Full-iteration CUDA graphs (cuda_graph.h): a step's first micro-batch (gradients to be stored,
// kAll) joins the accumulating graph only when steps have several micro-batches. With one per
// step the first step's call accumulates (after the host's real zeroing) and leaves an
// accumulating key behind, yet every later step keeps the storing graph (zeroing every gradient
// before each replay cost GPT-345M 1.4 ms/iter at TP2).
TEST(CudaGraphPolicy, OnlySeveralMicroBatchesPerStepShareTheAccumulatingGraph) {
  using Zero = nn::ParamRegistry::DeferredZero;
  nn::FirstMicroBatchPolicy one;
  EXPECT_FALSE(one.use_accumulating_graph(Zero::kNone, true, false));  // step 1
  for (int step = 2; step <= 6; ++step) EXPECT_FALSE(one.use_accumulating_graph(Zero::kAll, true, true)) << step;

  nn::FirstMicroBatchPolicy two;
  EXPECT_FALSE(two.use_accumulating_graph(Zero::kNone, true, false));  // step 1: both accumulate
  EXPECT_FALSE(two.use_accumulating_graph(Zero::kNone, true, true));
  for (int step = 2; step <= 6; ++step) {
    EXPECT_TRUE(two.use_accumulating_graph(Zero::kAll, true, true)) << step;
    EXPECT_FALSE(two.use_accumulating_graph(Zero::kNone, true, true)) << step;
  }
  EXPECT_FALSE(two.use_accumulating_graph(Zero::kAll, false, true));  // evaluation records its own
  EXPECT_FALSE(two.use_accumulating_graph(Zero::kAll, true, false));  // no accumulating graph yet
}
