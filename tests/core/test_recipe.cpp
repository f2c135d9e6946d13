// Recipe loading: every host-owned key checked with file:line:key errors and hints.
#include <gtest/gtest.h>

#include "megahost/core/error.h"
#include "megahost/core/recipe.h"

using megahost::core::Error;
using megahost::core::parse_recipe;

namespace {

const char* kMinimal = R"(
[model]
plugin = "gpt"
[data]
data_path = "corpus_text_document"
[optimizer]
lr = 1e-3
[training]
train_iters = 10
micro_batch_size = 2
global_batch_size = 8
)";

std::string error_of(const std::string& text, const std::vector<std::string>& overrides = {}) {
  try {
    parse_recipe(text, "r.toml", overrides);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(Recipe, MinimalRecipeGetsDefaults) {
  auto r = parse_recipe(kMinimal, "r.toml");
  EXPECT_EQ(r.get_int("training", "train_iters"), 10);
  EXPECT_EQ(r.get_int("training", "global_batch_size"), 8);
  EXPECT_EQ(r.get_int("training", "seed"), 1234);
  EXPECT_EQ(r.get_string("training", "lr_decay_style"), "linear");
  EXPECT_EQ(r.get_string("data", "split"), "969,30,1");
  EXPECT_EQ(r.get_string("tokenizer", "plugin"), "gpt2-bpe");
  EXPECT_DOUBLE_EQ(r.get_float("optimizer", "clip_grad"), 1.0);
  EXPECT_EQ(r.get_int("logging", "log_interval"), 100);
  EXPECT_EQ(r.where("training", "train_iters"), "r.toml:9");
}

TEST(Recipe, GlobalBatchDefaultsToMicroBatch) {
  auto r = parse_recipe("[data]\ndata_path='x'\n[optimizer]\nlr=1.0\n[training]\ntrain_iters=1\nmicro_batch_size=3\n",
                        "r.toml");
  EXPECT_EQ(r.get_int("training", "global_batch_size"), 3);
}

TEST(Recipe, SetOverridesAnyKeyAndSaysWhereItCameFrom) {
  auto r = parse_recipe(kMinimal, "r.toml", {"training.train_iters=99", "logging.metrics_file=m.jsonl",
                                             "model.num_layers=3", "data.split=\"90,10,0\""});
  EXPECT_EQ(r.get_int("training", "train_iters"), 99);
  EXPECT_EQ(r.get_string("logging", "metrics_file"), "m.jsonl");
  EXPECT_EQ(r.get_string("data", "split"), "90,10,0");
  EXPECT_EQ(r.where("training", "train_iters"), "--set");
  EXPECT_EQ(*r.section("model").table->get("num_layers")->value<int64_t>(), 3);
}

TEST(Recipe, UnknownKeyNamesFileLineAndSuggests) {
  const std::string e = error_of(std::string(kMinimal) + "train_itres = 5\n");
  EXPECT_NE(e.find("r.toml:12"), std::string::npos) << e;
  EXPECT_NE(e.find("training.train_itres"), std::string::npos) << e;
  EXPECT_NE(e.find("did you mean 'training.train_iters'"), std::string::npos) << e;
}

TEST(Recipe, UnknownSectionSuggests) {
  const std::string e = error_of(std::string(kMinimal) + "[trainig]\nx = 1\n");
  EXPECT_NE(e.find("unknown section"), std::string::npos) << e;
  EXPECT_NE(e.find("did you mean 'training'"), std::string::npos) << e;
}

TEST(Recipe, WrongTypeNamesKeyAndLine) {
  const std::string e = error_of(std::string(kMinimal) + "seed = \"abc\"\n");
  EXPECT_NE(e.find("r.toml:12"), std::string::npos) << e;
  EXPECT_NE(e.find("training.seed"), std::string::npos) << e;
  EXPECT_NE(e.find("must be an integer"), std::string::npos) << e;
  EXPECT_NE(e.find("HINT"), std::string::npos) << e;
}

TEST(Recipe, MissingRequiredKey) {
  const std::string e = error_of("[data]\ndata_path='x'\n[optimizer]\nlr=1.0\n");
  EXPECT_NE(e.find("missing the required key 'train_iters'"), std::string::npos) << e;
}

TEST(Recipe, ImpossibleBatchCombination) {
  const std::string e = error_of(kMinimal, {"training.global_batch_size=7"});
  EXPECT_NE(e.find("multiple of micro_batch_size"), std::string::npos) << e;
  EXPECT_NE(e.find("--set"), std::string::npos) << e;
}

TEST(Recipe, WarmupItersAndFractionAreExclusive) {
  const std::string e = error_of(kMinimal, {"training.lr_warmup_iters=3", "training.lr_warmup_fraction=0.1"});
  EXPECT_NE(e.find("not both"), std::string::npos) << e;
}

TEST(Recipe, SyntaxErrorNamesLineAndColumn) {
  const std::string e = error_of("[training]\ntrain_iters = = 3\n");
  EXPECT_NE(e.find("r.toml:2:"), std::string::npos) << e;
}

TEST(Recipe, BadSetOverrides) {
  EXPECT_NE(error_of(kMinimal, {"train_iters=3"}).find("must name its section"), std::string::npos);
  EXPECT_NE(error_of(kMinimal, {"trainng.train_iters=3"}).find("did you mean 'training'"), std::string::npos);
  EXPECT_NE(error_of(kMinimal, {"training.train_iters"}).find("section.key=value"), std::string::npos);
}

TEST(Recipe, ImpossibleParallelCombinationsAreRefusedWithTheKey) {
  std::string e = error_of(kMinimal, {"parallel.tensor_model_parallel_size=0"});
  EXPECT_NE(e.find("tensor_model_parallel_size must be >= 1"), std::string::npos) << e;
  e = error_of(kMinimal, {"parallel.sequence_parallel=true"});
  EXPECT_NE(e.find("sequence_parallel needs tensor_model_parallel_size > 1"), std::string::npos) << e;
  e = error_of(kMinimal, {"parallel.num_layers_per_virtual_pipeline_stage=1"});
  EXPECT_NE(e.find("interleaved schedule needs pipeline_model_parallel_size > 1"), std::string::npos) << e;
  e = error_of(kMinimal, {"parallel.overlap_param_gather=true"});
  EXPECT_NE(e.find("needs use_distributed_optimizer"), std::string::npos) << e;
  e = error_of(kMinimal, {"parallel.distributed_backend='mpi'"});
  EXPECT_NE(e.find("not one of nccl, gloo, auto"), std::string::npos) << e;
  // Sizes above one parse: whether they fit the world is checked when the ranks start.
  EXPECT_EQ(error_of(kMinimal, {"parallel.tensor_model_parallel_size=2", "parallel.sequence_parallel=true"}), "");
}

TEST(Recipe, MissingFileIsAClearError) {
  try {
    megahost::core::load_recipe("/nonexistent/recipe.toml");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/recipe.toml: cannot open recipe"), std::string::npos);
  }
}
