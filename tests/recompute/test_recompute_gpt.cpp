// The gpt plugin through the C ABI: recompute_* recipe keys give the plain run's losses and every
// parameter gradient (tolerance 1e-6 relative to each tensor's largest value) with hidden and
// attention dropout 0.1, and bad combinations are refused naming their key with a HINT.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "gpt_batches.h"
#include "test_host.h"

using mhtest::TestModel;

namespace {

constexpr int64_t kVocab = 64;

// A 4-layer GPT with dropout 0.1 everywhere, plus `extra` keys.
std::string gpt_toml(const std::string& extra) {
  return "num_layers = 4\nhidden_size = 32\nnum_attention_heads = 4\nseq_length = 16\n"
         "max_position_embeddings = 32\nhidden_dropout = 0.1\nattention_dropout = 0.1\n" +
         extra;
}

struct Trained {
  std::vector<double> losses;
  std::vector<mhtest::ParamRef> params;
};

// Two forward_backward steps from one seed; grads accumulate over both.
void train(TestModel& m, Trained* out) {
  ASSERT_TRUE(m.ok()) << m.error();
  m.set_training(true);
  m.zero_grad();
  at::manual_seed(77);
  for (int step = 0; step < 2; ++step) {
    mh_loss loss{sizeof(mh_loss), 0, 0};
    ASSERT_EQ(m.forward_backward(mhtest::random_batch(2, 16, kVocab, 5 + step), 1.0, &loss), "");
    out->losses.push_back(loss.loss_sum / loss.num_tokens);
  }
  out->params = m.params();
}

void expect_same_as_plain(const std::string& keys) {
  TestModel plain_model(gpt_toml(""), kVocab), model(gpt_toml(keys), kVocab);
  Trained plain, got;
  train(plain_model, &plain);
  train(model, &got);
  ASSERT_EQ(got.losses.size(), 2u);
  EXPECT_NE(plain.losses[0], plain.losses[1]);
  for (size_t i = 0; i < got.losses.size(); ++i)
    EXPECT_NEAR(got.losses[i], plain.losses[i], 1e-6 * std::abs(plain.losses[i])) << keys << " step " << i;
  ASSERT_EQ(got.params.size(), plain.params.size());
  for (size_t i = 0; i < got.params.size(); ++i) {
    const at::Tensor& want = plain.params[i].grad;
    const double scale = want.abs().max().item<double>();
    ASSERT_GT(scale, 0.0) << plain.params[i].name;
    EXPECT_LE((got.params[i].grad - want).abs().max().item<double>(), 1e-6 * scale) << keys << plain.params[i].name;
  }
}

// Refused at `key` (the line the error points at), the message naming `mentioned`.
void expect_config_error(const std::string& keys, const char* key, const char* mentioned = nullptr) {
  TestModel m(gpt_toml(keys), kVocab);
  ASSERT_FALSE(m.ok()) << keys;
  EXPECT_NE(m.error().find(std::string("key '") + key + "'"), std::string::npos) << m.error();
  if (mentioned) EXPECT_NE(m.error().find(mentioned), std::string::npos) << m.error();
  EXPECT_NE(m.error().find("HINT"), std::string::npos) << m.error();
}

}  // namespace

TEST(RecomputeGpt, DropoutMasksDifferBetweenForwards) {
  // Two steps on the same batch without reseeding: other masks, other losses. The equalities
  // below therefore hold only because the recompute restores the forward's RNG state.
  TestModel m(gpt_toml(""), kVocab);
  m.set_training(true);
  at::manual_seed(77);
  mh_loss a{sizeof(mh_loss), 0, 0}, b{sizeof(mh_loss), 0, 0};
  const auto batch = mhtest::random_batch(2, 16, kVocab, 5);
  ASSERT_EQ(m.forward_backward(batch, 1.0, &a), "");
  ASSERT_EQ(m.forward_backward(batch, 1.0, &b), "");
  EXPECT_NE(a.loss_sum, b.loss_sum);
}

TEST(RecomputeGpt, SelectiveMatchesPlain) { expect_same_as_plain("recompute_granularity = \"selective\"\n"); }
TEST(RecomputeGpt, RecomputeActivationsIsSelective) { expect_same_as_plain("recompute_activations = true\n"); }

TEST(RecomputeGpt, FullUniformMatchesPlain) {
  for (int n : {1, 2, 3})
    expect_same_as_plain("recompute_granularity = \"full\"\nrecompute_method = \"uniform\"\nrecompute_num_layers = " +
                         std::to_string(n) + "\n");
}

TEST(RecomputeGpt, FullBlockMatchesPlain) {
  for (int n : {1, 4})
    expect_same_as_plain("recompute_granularity = \"full\"\nrecompute_method = \"block\"\nrecompute_num_layers = " +
                         std::to_string(n) + "\n");
}

TEST(RecomputeGpt, BadSettingsNameTheirKey) {
  expect_config_error("recompute_granularity = \"partial\"\n", "recompute_granularity");
  // a missing key is reported at recompute_granularity, the key that needs it
  expect_config_error("recompute_granularity = \"full\"\n", "recompute_granularity", "recompute_method");
  expect_config_error("recompute_granularity = \"full\"\nrecompute_method = \"uniform\"\n", "recompute_granularity",
                      "recompute_num_layers");
  expect_config_error("recompute_granularity = \"full\"\nrecompute_method = \"even\"\nrecompute_num_layers = 1\n",
                      "recompute_method");
  expect_config_error("recompute_granularity = \"full\"\nrecompute_method = \"block\"\nrecompute_num_layers = 0\n",
                      "recompute_num_layers");
  expect_config_error("recompute_granularity = \"full\"\nrecompute_method = \"block\"\nrecompute_num_layers = 5\n",
                      "recompute_num_layers");
  expect_config_error("recompute_granularity = \"selective\"\nrecompute_method = \"uniform\"\n", "recompute_method");
  expect_config_error("recompute_granularity = \"selective\"\nrecompute_num_layers = 1\n", "recompute_num_layers");
  expect_config_error("recompute_method = \"block\"\n", "recompute_method");
  expect_config_error("recompute_activations = true\nrecompute_granularity = \"full\"\nrecompute_method = \"block\"\n"
                      "recompute_num_layers = 1\n",
                      "recompute_activations");
}
