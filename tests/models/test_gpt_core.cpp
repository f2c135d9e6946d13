// The gpt plugin loaded and created by the core (plugin registry, schema defaults, config
// service with recipe file:line), as `megahost run` does it.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <sstream>
#include <string>

#include "gpt_batches.h"
#include "megahost/core/config.h"
#include "megahost/core/error.h"
#include "megahost/core/instances.h"
#include "megahost/core/plugins.h"

namespace core = megahost::core;

namespace {

const core::PluginRegistry& registry() {
  static const core::PluginRegistry reg({MEGAHOST_BUILD_PLUGIN_DIR});
  return reg;
}

core::ConfigSection model_section(const std::string& toml_text) {
  return core::parse_config_section(toml_text, "recipe.toml", "model");
}

std::string create_error(const std::string& toml_text, int64_t vocab = 64) {
  try {
    core::ModelOptions opts;
    opts.padded_vocab_size = vocab;
    core::create_model(registry(), "gpt", model_section(toml_text), opts);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(GptCore, RegistryFindsGptByIdAndMegatronAlias) {
  const core::PluginInfo& p = registry().find(core::PluginKind::Model, "gpt");
  EXPECT_EQ(p.id, "gpt");
  EXPECT_EQ(&registry().find(core::PluginKind::Model, "GPTModel"), &p);
  EXPECT_FALSE(p.config_schema.empty());
}

TEST(GptCore, TinyExampleRecipeModelTableTrainsThroughTheCore) {
  // the [model] table of examples/gpt/tiny.toml, with the schema's defaults filled by the core
  std::ifstream in(std::string(MEGAHOST_SOURCE_DIR) + "/examples/gpt/tiny.toml");
  ASSERT_TRUE(in.good());
  std::stringstream text;
  text << in.rdbuf();
  const toml::table recipe = toml::parse(text.str());
  std::ostringstream model_toml;
  model_toml << *recipe["model"].as_table();
  core::ConfigSection cfg = model_section(model_toml.str());
  cfg.table->insert_or_assign("seq_length", 32);  // shorter samples keep the test fast
  core::ModelOptions opts;
  opts.padded_vocab_size = 512;
  auto model = core::create_model(registry(), "gpt", cfg, opts);
  const auto params = model->params();
  EXPECT_EQ(params.front().name, "embedding.word_embeddings.weight");
  EXPECT_EQ(params.front().data.sizes(), (at::IntArrayRef{512, 128}));

  auto batch = mhtest::pattern_batch(2, 32, 0, 512);
  const core::Loss first = model->forward_backward(batch, 1.0);
  EXPECT_EQ(first.num_tokens, 64.0);
  EXPECT_NEAR(first.loss_sum / first.num_tokens, std::log(512.0), 0.15);
  for (int step = 0; step < 10; ++step) {
    {
      at::NoGradGuard no_grad;
      for (auto& p : params) p.data.add_(p.grad, -0.1);
    }
    model->zero_grad();
    model->forward_backward(batch, 1.0);
  }
  const core::Loss later = model->forward_loss(batch);
  EXPECT_LT(later.loss_sum, 0.75 * first.loss_sum) << first.loss_sum << " -> " << later.loss_sum;
  ASSERT_TRUE(model->has_logits());
  EXPECT_EQ(model->logits(batch[0].second).sizes(), (at::IntArrayRef{2, 32, 512}));
}

TEST(GptCore, UnknownKeysAreCaughtByTheCoreWithASuggestion) {
  const std::string err =
      create_error("num_layers = 1\nhiden_size = 32\nnum_attention_heads = 4\nseq_length = 8\n");
  EXPECT_NE(err.find("hiden_size"), std::string::npos) << err;
  EXPECT_NE(err.find("did you mean"), std::string::npos) << err;
}

TEST(GptCore, PluginConfigErrorsNameTheRecipeLine) {
  const std::string err =
      create_error("num_layers = 1\nhidden_size = 32\nnum_attention_heads = 4\nseq_length = 64\n"
                   "max_position_embeddings = 32\n");
  EXPECT_NE(err.find("key 'model.seq_length'"), std::string::npos) << err;
  EXPECT_NE(err.find("max_position_embeddings"), std::string::npos) << err;
  EXPECT_NE(err.find("HINT"), std::string::npos) << err;
}
