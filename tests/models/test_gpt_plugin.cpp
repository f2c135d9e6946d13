// The gpt model plugin through the C ABI: names, metadata, loss, training, gradients, seeds.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "gpt_batches.h"
#include "test_host.h"

using mhtest::Batch;
using mhtest::TestModel;

namespace {

constexpr int64_t kVocab = 128;

mh_loss run_fb(TestModel& m, const Batch& batch, double grad_scale = 1.0) {
  mh_loss loss{sizeof(mh_loss), 0, 0};
  EXPECT_EQ(m.forward_backward(batch, grad_scale, &loss), "");
  return loss;
}

mh_loss run_fl(TestModel& m, const Batch& batch) {
  mh_loss loss{sizeof(mh_loss), 0, 0};
  EXPECT_EQ(m.forward_loss(batch, &loss), "");
  return loss;
}

std::vector<std::string> names_of(const std::vector<mhtest::ParamRef>& ps) {
  std::vector<std::string> out;
  for (const auto& p : ps) out.push_back(p.name);
  return out;
}

const mhtest::ParamRef& by_name(const std::vector<mhtest::ParamRef>& ps, const std::string& name) {
  for (const auto& p : ps)
    if (p.name == name) return p;
  throw std::runtime_error("no parameter " + name);
}

}  // namespace

TEST(GptPlugin, DescriptorNamesGptWithMegatronAliasAndSchema) {
  const mh_model_factory* f = mhtest::gpt_factory();
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(f->count(), 1u);
  const mh_plugin_descriptor* d = f->descriptor(0);
  EXPECT_STREQ(d->id, "gpt");
  ASSERT_NE(d->aliases, nullptr);
  EXPECT_STREQ(d->aliases[0], "GPTModel");
  EXPECT_EQ(d->aliases[1], nullptr);
  const std::string schema = d->config_schema;
  for (const char* key : {"\"num_layers\":{\"type\":\"int\",\"required\":true", "\"hidden_dropout\":{\"type\":\"float\"",
                          "\"default\":0.1", "\"position_embedding_type\":{\"type\":\"string\"",
                          "\"default\":\"learned_absolute\"", "\"untie_embeddings_and_output_weights\""})
    EXPECT_NE(schema.find(key), std::string::npos) << key << " in " << schema;
  EXPECT_EQ(f->descriptor(1), nullptr);
}

TEST(GptPlugin, CreatesByAliasAndLogsItsSize) {
  TestModel m(mhtest::tiny_gpt_toml(), kVocab, 1234, "GPTModel");
  ASSERT_TRUE(m.ok()) << m.error();
  bool logged = false;
  for (const auto& line : mhtest::log_lines()) logged |= line.find("parameters on cpu") != std::string::npos;
  EXPECT_TRUE(logged);
  EXPECT_EQ(m.api()->get_extension(m.raw(), "mh.model.nope/1"), nullptr);
}

TEST(GptPlugin, ParamsFollowMegatronCoreNamesShapesAndMetadata) {
  TestModel m(mhtest::tiny_gpt_toml(), kVocab);
  ASSERT_TRUE(m.ok()) << m.error();
  const auto ps = m.params();
  std::vector<std::string> want = {"embedding.word_embeddings.weight", "embedding.position_embeddings.weight"};
  for (int l = 0; l < 2; ++l) {
    const std::string p = "decoder.layers." + std::to_string(l) + ".";
    for (const char* n : {"input_layernorm.weight", "input_layernorm.bias", "self_attention.linear_qkv.weight",
                          "self_attention.linear_qkv.bias", "self_attention.linear_proj.weight",
                          "self_attention.linear_proj.bias", "pre_mlp_layernorm.weight", "pre_mlp_layernorm.bias",
                          "mlp.linear_fc1.weight", "mlp.linear_fc1.bias", "mlp.linear_fc2.weight",
                          "mlp.linear_fc2.bias"})
      want.push_back(p + n);
  }
  want.push_back("decoder.final_layernorm.weight");
  want.push_back("decoder.final_layernorm.bias");
  EXPECT_EQ(names_of(ps), want);  // tied: no output_layer.weight

  const auto& words = by_name(ps, "embedding.word_embeddings.weight");
  EXPECT_EQ(words.data.sizes(), (at::IntArrayRef{kVocab, 32}));
  EXPECT_EQ(words.tp_dim, 0);
  EXPECT_EQ(words.flags, MH_PARAM_SHARED_EMBEDDING);
  EXPECT_EQ(by_name(ps, "embedding.position_embeddings.weight").data.sizes(), (at::IntArrayRef{32, 32}));
  EXPECT_EQ(by_name(ps, "embedding.position_embeddings.weight").tp_dim, -1);
  EXPECT_EQ(by_name(ps, "decoder.layers.1.self_attention.linear_qkv.weight").data.sizes(), (at::IntArrayRef{96, 32}));
  EXPECT_EQ(by_name(ps, "decoder.layers.1.self_attention.linear_qkv.weight").tp_dim, 0);
  EXPECT_EQ(by_name(ps, "decoder.layers.1.self_attention.linear_proj.weight").tp_dim, 1);
  EXPECT_EQ(by_name(ps, "decoder.layers.1.mlp.linear_fc1.weight").data.sizes(), (at::IntArrayRef{128, 32}));
  EXPECT_EQ(by_name(ps, "decoder.layers.1.mlp.linear_fc2.bias").tp_dim, -1);
  for (const auto& p : ps) {
    const bool no_wd = p.name.find(".bias") != std::string::npos || p.name.find("layernorm") != std::string::npos;
    EXPECT_EQ((p.flags & MH_PARAM_NO_WEIGHT_DECAY) != 0, no_wd) << p.name;
    EXPECT_EQ(p.grad.sizes(), p.data.sizes()) << p.name;
    EXPECT_EQ(p.grad.abs().sum().item<double>(), 0.0) << p.name;
  }
}

TEST(GptPlugin, LlamaStyleVariantHasGroupedQkvAndAnUntiedOutputLayer) {
  TestModel m(mhtest::tiny_llama_toml(), kVocab);
  ASSERT_TRUE(m.ok()) << m.error();
  const auto ps = m.params();
  const auto names = names_of(ps);
  EXPECT_EQ(names.front(), "embedding.word_embeddings.weight");
  EXPECT_EQ(names.back(), "output_layer.weight");
  EXPECT_EQ(names[names.size() - 2], "decoder.final_layernorm.weight");
  for (const auto& n : names) {
    EXPECT_EQ(n.find(".bias"), std::string::npos) << n;
    EXPECT_EQ(n.find("position_embeddings"), std::string::npos) << n;
  }
  // heads 4, groups 2, head dim 8: (4 + 2 * 2) * 8 = 64 rows
  EXPECT_EQ(by_name(ps, "decoder.layers.0.self_attention.linear_qkv.weight").data.sizes(), (at::IntArrayRef{64, 32}));
  EXPECT_EQ(by_name(ps, "decoder.layers.0.mlp.linear_fc1.weight").data.sizes(), (at::IntArrayRef{96, 32}));
  EXPECT_EQ(by_name(ps, "decoder.layers.0.mlp.linear_fc2.weight").data.sizes(), (at::IntArrayRef{32, 48}));
  EXPECT_EQ(by_name(ps, "output_layer.weight").tp_dim, 0);
  EXPECT_EQ(by_name(ps, "output_layer.weight").flags, 0u);
  EXPECT_EQ(by_name(ps, "embedding.word_embeddings.weight").flags, 0u);  // untied: not shared
}

TEST(GptPlugin, LossAtInitIsAboutLnVocab) {
  for (const std::string& cfg : {mhtest::tiny_gpt_toml(), mhtest::tiny_llama_toml()}) {
    TestModel m(cfg, kVocab);
    ASSERT_TRUE(m.ok()) << m.error();
    const mh_loss loss = run_fb(m, mhtest::random_batch(4, 16, kVocab, 5));
    EXPECT_EQ(loss.num_tokens, 64.0);
    EXPECT_NEAR(loss.loss_sum / loss.num_tokens, std::log(static_cast<double>(kVocab)), 0.1) << cfg;
  }
}

namespace {

// Plain SGD over the ABI views, as an optimizer plugin would do it. Returns the first loss and
// the mean of the last five (one step's loss on a fresh phase is noisy).
std::pair<double, double> train_sgd(TestModel& m, int steps, double lr) {
  const auto ps = m.params();
  std::vector<double> losses;
  for (int step = 0; step < steps; ++step) {
    m.zero_grad();
    const mh_loss loss = run_fb(m, mhtest::pattern_batch(4, 16, step, kVocab));
    losses.push_back(loss.loss_sum / loss.num_tokens);
    at::NoGradGuard no_grad;
    for (const auto& p : ps) p.data.add_(p.grad, -lr);
  }
  double tail = 0;
  for (int i = steps - 5; i < steps; ++i) tail += losses[i] / 5;
  return {losses.front(), tail};
}

}  // namespace

TEST(GptPlugin, GptStyleLossFallsWhenTrainedOnARepeatingPattern) {
  TestModel m(mhtest::tiny_gpt_toml(), kVocab);
  ASSERT_TRUE(m.ok()) << m.error();
  const auto [first, last] = train_sgd(m, 80, 0.5);
  EXPECT_NEAR(first, std::log(static_cast<double>(kVocab)), 0.1);
  EXPECT_LT(last, 0.5 * first) << "first " << first << " last " << last;
}

TEST(GptPlugin, LlamaStyleLossFallsWhenTrainedOnARepeatingPattern) {
  TestModel m(mhtest::tiny_llama_toml(), kVocab);
  ASSERT_TRUE(m.ok()) << m.error();
  const auto [first, last] = train_sgd(m, 80, 0.5);
  EXPECT_LT(last, 0.5 * first) << "first " << first << " last " << last;
}

TEST(GptPlugin, GradsAccumulateInPlaceAcrossForwardBackwardCalls) {
  TestModel m(mhtest::tiny_gpt_toml(), kVocab);
  ASSERT_TRUE(m.ok()) << m.error();
  const auto ps = m.params();
  const Batch a = mhtest::random_batch(2, 16, kVocab, 1), b = mhtest::random_batch(2, 16, kVocab, 2);
  std::vector<at::Tensor> ga, gb;
  run_fb(m, a);
  for (const auto& p : ps) ga.push_back(p.grad.clone());
  m.zero_grad();
  run_fb(m, b);
  for (const auto& p : ps) gb.push_back(p.grad.clone());
  m.zero_grad();

  run_fb(m, a);
  run_fb(m, b);
  const auto again = m.params();
  for (size_t i = 0; i < ps.size(); ++i) {
    EXPECT_EQ(again[i].grad.data_ptr(), ps[i].grad.data_ptr()) << ps[i].name;
    EXPECT_EQ(again[i].data.data_ptr(), ps[i].data.data_ptr()) << ps[i].name;
    EXPECT_TRUE(at::allclose(ps[i].grad, ga[i] + gb[i], 1e-5, 1e-7)) << ps[i].name;
  }
  EXPECT_GT(ga[0].abs().sum().item<double>(), 0.0);
  m.zero_grad();
  for (const auto& p : ps) EXPECT_EQ(p.grad.abs().sum().item<double>(), 0.0) << p.name;
}

TEST(GptPlugin, GradScaleScalesTheGradientsNotTheLoss) {
  TestModel m(mhtest::tiny_gpt_toml(), kVocab);
  ASSERT_TRUE(m.ok()) << m.error();
  const auto ps = m.params();
  const Batch batch = mhtest::random_batch(2, 16, kVocab, 3);
  const mh_loss l1 = run_fb(m, batch, 1.0);
  const at::Tensor g1 = ps[2].grad.clone();
  m.zero_grad();
  const mh_loss l8 = run_fb(m, batch, 8.0);
  EXPECT_DOUBLE_EQ(l1.loss_sum, l8.loss_sum);
  EXPECT_TRUE(at::allclose(ps[2].grad, g1 * 8.0, 1e-5, 1e-7));
}

TEST(GptPlugin, ForwardLossAndLogitsAgreeWithForwardBackward) {
  TestModel m(mhtest::tiny_gpt_toml("", /*with_dropout=*/true), kVocab);
  ASSERT_TRUE(m.ok()) << m.error();
  m.set_training(false);  // dropout off
  const Batch batch = mhtest::random_batch(3, 16, kVocab, 4);
  const mh_loss fb = run_fb(m, batch);
  const mh_loss fl = run_fl(m, batch);
  EXPECT_NEAR(fb.loss_sum, fl.loss_sum, 1e-4);
  EXPECT_EQ(fb.num_tokens, fl.num_tokens);

  const at::Tensor logits = m.logits(batch[0].second);  // [b, s, V]
  ASSERT_EQ(logits.sizes(), (at::IntArrayRef{3, 16, kVocab}));
  EXPECT_EQ(logits.scalar_type(), at::kFloat);
  const at::Tensor logp = at::log_softmax(logits, -1);
  const double ce_sum = -logp.gather(-1, batch[1].second.unsqueeze(-1)).sum().item<double>();
  EXPECT_NEAR(ce_sum, fl.loss_sum, 1e-3);
}

TEST(GptPlugin, LossMaskExcludesTokensFromLossAndGradient) {
  TestModel m(mhtest::tiny_gpt_toml(), kVocab);
  ASSERT_TRUE(m.ok()) << m.error();
  Batch batch = mhtest::random_batch(2, 16, kVocab, 6);
  at::Tensor& mask = mhtest::batch_get(batch, "loss_mask");
  mask.narrow(1, 10, 6).zero_();  // last 6 positions do not count
  const mh_loss l1 = run_fb(m, batch);
  EXPECT_EQ(l1.num_tokens, 20.0);
  const at::Tensor g1 = m.params()[0].grad.clone();
  m.zero_grad();
  Batch other = batch;
  other[1].second = batch[1].second.clone();
  other[1].second.narrow(1, 10, 6).fill_(7);  // labels under the mask change
  const mh_loss l2 = run_fb(m, other);
  EXPECT_NEAR(l1.loss_sum, l2.loss_sum, 1e-5);
  EXPECT_TRUE(at::allclose(m.params()[0].grad, g1, 1e-5, 1e-7));

  m.zero_grad();
  mask.zero_();  // nothing counts: a zero loss and no gradient, never NaN
  const mh_loss l0 = run_fb(m, batch);
  EXPECT_EQ(l0.num_tokens, 0.0);
  EXPECT_EQ(l0.loss_sum, 0.0);
  EXPECT_EQ(m.params()[0].grad.abs().sum().item<double>(), 0.0);
}

TEST(GptPlugin, PositionIdsDefaultToZeroToSeqLength) {
  TestModel m(mhtest::tiny_gpt_toml(), kVocab);
  ASSERT_TRUE(m.ok()) << m.error();
  Batch batch = mhtest::random_batch(2, 16, kVocab, 8);
  const double plain = run_fl(m, batch).loss_sum;
  batch.emplace_back("position_ids", at::arange(16, at::kLong).unsqueeze(0).expand({2, 16}).contiguous());
  EXPECT_DOUBLE_EQ(run_fl(m, batch).loss_sum, plain);
  batch.back().second = batch.back().second + 5;  // learned positions: other rows, other loss
  EXPECT_GT(std::abs(run_fl(m, batch).loss_sum - plain), 1e-4);
}

TEST(GptPlugin, SameSeedSameParamsOtherSeedOtherParams) {
  TestModel a(mhtest::tiny_llama_toml(), kVocab, 99), b(mhtest::tiny_llama_toml(), kVocab, 99),
      c(mhtest::tiny_llama_toml(), kVocab, 100);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  const auto pa = a.params(), pb = b.params(), pc = c.params();
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(at::equal(pa[i].data, pb[i].data)) << pa[i].name;
  EXPECT_FALSE(at::equal(by_name(pa, "output_layer.weight").data, by_name(pc, "output_layer.weight").data));
}

TEST(GptPlugin, DropoutIsReproducibleFromTheDefaultGenerator) {
  TestModel m(mhtest::tiny_gpt_toml("", /*with_dropout=*/true), kVocab);
  ASSERT_TRUE(m.ok()) << m.error();
  const Batch batch = mhtest::random_batch(2, 16, kVocab, 9);
  at::manual_seed(3);
  const double a = run_fl(m, batch).loss_sum;
  at::manual_seed(3);
  const double b = run_fl(m, batch).loss_sum;
  EXPECT_EQ(a, b);
  m.set_training(false);
  EXPECT_GT(std::abs(run_fl(m, batch).loss_sum - a), 1e-6);
}

TEST(GptPlugin, ForwardBackwardRecordsAutogradEvenWhenTheCallerDisabledIt) {
  TestModel m(mhtest::tiny_gpt_toml(), kVocab);
  ASSERT_TRUE(m.ok()) << m.error();
  at::NoGradGuard caller_has_grad_off;
  run_fb(m, mhtest::random_batch(2, 16, kVocab, 12));
  EXPECT_GT(m.params()[0].grad.abs().sum().item<double>(), 0.0);
}

TEST(GptPlugin, BadBatchesAreInvalidArgumentsWithHints) {
  TestModel m(mhtest::tiny_gpt_toml(), kVocab);
  ASSERT_TRUE(m.ok()) << m.error();
  mh_loss loss{sizeof(mh_loss), -1, -1};
  Batch batch = mhtest::random_batch(2, 16, kVocab, 10);
  Batch no_labels = {batch[0], batch[2]};
  std::string err = m.forward_backward(no_labels, 1.0, &loss);
  EXPECT_NE(err.find("'labels'"), std::string::npos) << err;
  EXPECT_NE(err.find("HINT"), std::string::npos) << err;
  EXPECT_EQ(loss.loss_sum, -1);  // out-param untouched on error

  Batch int32_tokens = batch;
  int32_tokens[0].second = batch[0].second.to(at::kInt);
  err = m.forward_loss(int32_tokens, &loss);
  EXPECT_NE(err.find("tokens must be [b, s] int64"), std::string::npos) << err;

  Batch short_mask = batch;
  short_mask[2].second = at::ones({2, 8}, at::kFloat);
  err = m.forward_loss(short_mask, &loss);
  EXPECT_NE(err.find("loss_mask"), std::string::npos) << err;

  Batch too_long = mhtest::random_batch(1, 40, kVocab, 11);  // max_position_embeddings = 32
  err = m.forward_loss(too_long, &loss);
  EXPECT_NE(err.find("max_position_embeddings"), std::string::npos) << err;
}

// The CUDA model (its fused kernels) against the CPU model (plain libtorch), from the same init,
// for each family the plugin builds: GPT-2 style, Llama style, and Qwen3 style (per-head q / k
// norms, rope with Llama 3.1's frequency scaling).
class GptPluginOnCuda : public ::testing::TestWithParam<std::string> {};

std::string model_toml(const std::string& family) {
  if (family == "gpt") return mhtest::tiny_gpt_toml();
  if (family == "llama") return mhtest::tiny_llama_toml();
  return mhtest::tiny_llama_toml() +
         "qk_layernorm = true\n"
         "use_rope_scaling = true\n"
         "rope_scaling_factor = 8.0\n";
}

TEST_P(GptPluginOnCuda, MatchesTheCpuModel) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA in this libtorch or machine";
  const std::string toml = model_toml(GetParam());
  TestModel cpu(toml, kVocab, 7), gpu(toml, kVocab, 7, "gpt", {kDLCUDA, 0});
  ASSERT_TRUE(cpu.ok() && gpu.ok()) << cpu.error() << gpu.error();
  const auto pc = cpu.params(), pg = gpu.params();
  ASSERT_EQ(pc.size(), pg.size());
  for (size_t i = 0; i < pc.size(); ++i) {
    ASSERT_TRUE(pg[i].data.is_cuda()) << pg[i].name;
    EXPECT_TRUE(at::equal(pc[i].data, pg[i].data.cpu())) << pc[i].name;  // init is drawn on the CPU
  }
  Batch batch = mhtest::random_batch(2, 16, kVocab, 13);
  Batch on_gpu;
  for (const auto& [n, t] : batch) on_gpu.emplace_back(n, t.cuda());
  const mh_loss lc = run_fb(cpu, batch), lg = run_fb(gpu, on_gpu);
  EXPECT_NEAR(lc.loss_sum, lg.loss_sum, 1e-3 * std::abs(lc.loss_sum));
  const void* grad_ptr = pg[3].grad.data_ptr();
  run_fb(gpu, on_gpu);
  EXPECT_EQ(gpu.params()[3].grad.data_ptr(), grad_ptr);
  for (size_t i = 0; i < pc.size(); ++i)
    EXPECT_TRUE(at::allclose(pg[i].grad.cpu(), 2 * pc[i].grad, 1e-2, 1e-4)) << pc[i].name;
}

INSTANTIATE_TEST_SUITE_P(Families, GptPluginOnCuda, ::testing::Values("gpt", "llama", "qwen3"));
