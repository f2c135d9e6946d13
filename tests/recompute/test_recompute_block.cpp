// The SDK's TransformerBlock under full and selective recompute, with hidden and attention
// dropout 0.1: output and every gradient equal the plain run's (tolerance 1e-6 relative to each
// tensor's largest value), also through bind_storage's bound fp32 grad storage, whose grad-ready
// hooks fire once per parameter per backward; eval runs the plain forward; bad settings refused.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/function.h>

#include <memory>
#include <string>
#include <vector>

#include "megahost/sdk/error.h"
#include "megahost/sdk/nn/params.h"
#include "megahost/sdk/nn/recompute.h"
#include "megahost/sdk/nn/rotary.h"
#include "megahost/sdk/nn/transformer.h"
#include "megahost/sdk/torch_interop.h"

namespace nn = megahost::sdk::nn;
using megahost::sdk::DLView;

namespace {

constexpr int64_t kLayers = 4;

nn::TransformerConfig block_config(nn::RecomputeGranularity g, nn::RecomputeMethod m, int64_t n) {
  nn::TransformerConfig c;
  c.num_layers = kLayers;
  c.hidden_size = 16;
  c.num_attention_heads = 4;
  c.num_query_groups = 2;
  c.kv_channels = 4;
  c.ffn_hidden_size = 24;
  c.hidden_dropout = 0.1;
  c.attention_dropout = 0.1;
  c.recompute_granularity = g;
  c.recompute_method = m;
  c.recompute_num_layers = n;
  return c;
}

// The host side of bind_storage: flat fp32 data and grad buffers, a count of grad-ready calls.
struct Host {
  at::Tensor data, grad;
  std::vector<std::unique_ptr<DLView>> views;
  std::vector<mh_param_binding> bindings;
  std::vector<int> ready;

  explicit Host(const nn::ParamRegistry& reg) {
    data = at::zeros({reg.numel()});
    grad = at::zeros({reg.numel()});
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

// A block of kLayers layers with rope, its input from a learned tensor (so input grads flow too).
struct BlockRun {
  nn::ParamRegistry reg{at::kCPU, at::kFloat, 99};
  at::Tensor embedding = reg.create("embedding", {6, 2, 16}, nn::Init::normal(1.0), -1, 0);  // [s, b, h]
  nn::TransformerBlock block;
  std::unique_ptr<Host> host;

  BlockRun(const nn::TransformerConfig& cfg, bool bind) : block(reg, "decoder", cfg, 0, kLayers, true) {
    if (!bind) return;
    host = std::make_unique<Host>(reg);
    reg.bind(host->bindings.data(), host->bindings.size(), &Host::on_ready, host.get());
  }
  // Two training steps from one seed (grads accumulate): the second step checks that the
  // recompute left the RNG stream as a plain backward leaves it. Returns both outputs' sums.
  std::vector<double> train(int steps = 2) {
    at::manual_seed(2024);
    const at::Tensor freqs = nn::RotaryEmbedding(4, 1.0, 10000.0).forward(6, at::kCPU);
    std::vector<double> losses;
    for (int i = 0; i < steps; ++i) {
      const at::Tensor y = block.forward(embedding, freqs, /*training=*/true);  // [s, b, h]
      const at::Tensor loss = (y * y).mean();
      loss.backward();
      losses.push_back(loss.item<double>());
    }
    return losses;
  }
};

void expect_close(const at::Tensor& got, const at::Tensor& want, const std::string& what) {
  ASSERT_TRUE(got.defined() && want.defined()) << what;
  const double scale = want.abs().max().item<double>();
  EXPECT_LE((got - want).abs().max().item<double>(), 1e-6 * scale) << what;
}

void expect_same_as_plain(const nn::TransformerConfig& cfg, bool bind) {
  BlockRun plain(block_config(nn::RecomputeGranularity::None, nn::RecomputeMethod::None, 0), false);
  BlockRun recomputed(cfg, bind);
  const auto want = plain.train();
  const auto got = recomputed.train();
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-6 * std::abs(want[i])) << "step " << i;
  const auto& ps = recomputed.reg.params();
  for (size_t i = 0; i < ps.size(); ++i) expect_close(ps[i].data.grad(), plain.reg.params()[i].data.grad(), ps[i].name);
  if (bind) {
    for (size_t i = 0; i < ps.size(); ++i) EXPECT_EQ(recomputed.host->ready[i], 2) << ps[i].name;  // once per backward
    EXPECT_EQ(recomputed.embedding.grad().data_ptr(), recomputed.host->grad.data_ptr());  // still the bound storage
  }
}

}  // namespace

TEST(RecomputeBlock, DropoutReallyDrawsNewMasksEachForward) {
  // Without the RNG restore the recompute would run with other masks: two forwards differ.
  BlockRun run(block_config(nn::RecomputeGranularity::None, nn::RecomputeMethod::None, 0), false);
  const auto losses = run.train();
  EXPECT_NE(losses[0], losses[1]);
}

TEST(RecomputeBlock, FullUniformOneLayerPerGroupWithBoundGrads) {
  expect_same_as_plain(block_config(nn::RecomputeGranularity::Full, nn::RecomputeMethod::Uniform, 1), true);
}
TEST(RecomputeBlock, FullUniformTwoAndThreeLayersPerGroup) {  // 3: groups of 3 and 1
  expect_same_as_plain(block_config(nn::RecomputeGranularity::Full, nn::RecomputeMethod::Uniform, 2), true);
  expect_same_as_plain(block_config(nn::RecomputeGranularity::Full, nn::RecomputeMethod::Uniform, 3), false);
}
TEST(RecomputeBlock, FullBlockOneAndAllLayers) {
  expect_same_as_plain(block_config(nn::RecomputeGranularity::Full, nn::RecomputeMethod::Block, 1), true);
  expect_same_as_plain(block_config(nn::RecomputeGranularity::Full, nn::RecomputeMethod::Block, kLayers), true);
}
TEST(RecomputeBlock, SelectiveCoreAttentionWithBoundGrads) {
  expect_same_as_plain(block_config(nn::RecomputeGranularity::Selective, nn::RecomputeMethod::None, 0), true);
}

TEST(RecomputeBlock, OnlyTrainingForwardsAreCheckpointed) {
  auto cfg = block_config(nn::RecomputeGranularity::Full, nn::RecomputeMethod::Uniform, 2);
  nn::ParamRegistry reg(at::kCPU, at::kFloat, 1);
  nn::TransformerBlock block(reg, "decoder", cfg, 0, kLayers, /*with_final_layernorm=*/false);
  const at::Tensor x = at::randn({6, 2, 16}).requires_grad_(true);
  const std::string train_node = block.forward(x, at::Tensor(), true).grad_fn()->name();
  const std::string eval_node = block.forward(x, at::Tensor(), false).grad_fn()->name();
  EXPECT_NE(train_node.find("CheckpointFunction"), std::string::npos) << train_node;
  EXPECT_EQ(eval_node.find("CheckpointFunction"), std::string::npos) << eval_node;
}

TEST(RecomputeBlock, BadSettingsAreRefusedNamingTheKey) {
  using G = nn::RecomputeGranularity;
  using M = nn::RecomputeMethod;
  struct Case {
    G g;
    M m;
    int64_t n;
    const char* key;
  };
  const Case cases[] = {
      {G::Full, M::None, 1, "recompute_method"},          // full needs a method
      {G::Full, M::Uniform, 0, "recompute_num_layers"},   // and a layer count
      {G::Full, M::Block, kLayers + 1, "recompute_num_layers"},
      {G::Selective, M::Uniform, 0, "recompute_method"},  // Megatron: not with selective
      {G::Selective, M::None, 2, "recompute_num_layers"},
      {G::None, M::Block, 0, "recompute_method"},
  };
  for (const Case& c : cases) {
    const auto issue = nn::find_recompute_issue(block_config(c.g, c.m, c.n));
    ASSERT_TRUE(issue.has_value()) << c.key;
    EXPECT_EQ(issue->key, c.key);
    nn::ParamRegistry reg(at::kCPU, at::kFloat, 1);
    try {
      nn::TransformerBlock block(reg, "decoder", block_config(c.g, c.m, c.n), 0, kLayers, true);
      ADD_FAILURE() << "accepted a bad " << c.key;
    } catch (const megahost::sdk::Error& e) {
      EXPECT_NE(std::string(e.what()).find(c.key), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("HINT"), std::string::npos) << e.what();
    }
  }
  EXPECT_FALSE(nn::find_recompute_issue(block_config(G::Full, M::Block, kLayers)).has_value());
  EXPECT_FALSE(nn::find_recompute_issue(block_config(G::Selective, M::None, 0)).has_value());
}
