// The `megahost` binary: full and selective recompute leave every logged training loss unchanged
// (examples/gpt/tiny.toml as the README runs it, when its data is fetched; and a byte-level
// recipe on the repository's golden texts with dropout 0.1).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "../common/megahost_cli.h"

namespace fs = std::filesystem;

namespace {

const std::string kSource = MEGAHOST_SOURCE_DIR;

int run(const std::string& args, std::string* out) { return mhtest::run_megahost(args, out); }

// The train split's lm_loss per iteration, from a metrics file.
std::vector<double> train_losses(const std::string& file) {
  std::vector<double> out;
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    const auto m = nlohmann::json::parse(line);
    if (m.value("split", "") == "train" && m.contains("lm_loss")) out.push_back(m["lm_loss"].get<double>());
  }
  return out;
}

class RecomputeE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("megahost_recompute_" +
                                        std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    if (!HasFailure()) fs::remove_all(dir_);
  }
  // Trains `recipe` with `extra` --set flags into its own folder; returns the train losses.
  std::vector<double> train(const std::string& recipe, const std::string& name, const std::string& extra) {
    const std::string d = (dir_ / name).string();
    std::string out;
    const int code = run("run " + recipe + " --set checkpoint.save=" + d + " --set checkpoint.load=" + d +
                             " --set logging.metrics_file=" + d + ".jsonl --set logging.log_interval=1" + extra,
                         &out);
    EXPECT_EQ(code, 0) << out;
    return train_losses(d + ".jsonl");
  }
  static void expect_same(const std::vector<double>& got, const std::vector<double>& want, size_t n) {
    ASSERT_EQ(want.size(), n);
    ASSERT_EQ(got.size(), n);
    for (size_t i = 0; i < n; ++i) EXPECT_NEAR(got[i], want[i], 1e-6 * std::abs(want[i])) << "iteration " << i + 1;
  }
  fs::path dir_;
};

}  // namespace

TEST_F(RecomputeE2E, TinyGptFullUniformGivesTheSameLosses) {
  if (!fs::exists(kSource + "/.data/brown_text_document.bin") || !fs::exists(kSource + "/.data/npm/gpt2/package"))
    GTEST_SKIP() << "run scripts/fetch_data.sh for the Brown corpus and the GPT-2 files";
  const std::string iters = " --set training.train_iters=3";
  const auto plain = train("examples/gpt/tiny.toml", "plain", iters);
  const auto full = train("examples/gpt/tiny.toml", "full",
                          iters + " --set model.recompute_granularity=full --set model.recompute_method=uniform"
                                  " --set model.recompute_num_layers=1");
  expect_same(full, plain, 3);
}

// Byte-level tokens from the repository's golden texts (no fetched data needed), dropout 0.1.
TEST_F(RecomputeE2E, WithDropoutFullBlockAndSelectiveGiveTheSameLosses) {
  {
    std::ifstream in(std::string(MEGAHOST_TEST_DATA_DIR) + "/golden/gpt2_bpe_ids.jsonl");
    std::ofstream out(dir_ / "corpus.jsonl");
    std::string line;
    while (std::getline(in, line)) out << nlohmann::json{{"text", nlohmann::json::parse(line)["text"]}}.dump() << "\n";
  }
  std::string log;
  ASSERT_EQ(run("preprocess --input " + (dir_ / "corpus.jsonl").string() + " --output-prefix " +
                    (dir_ / "corpus").string() + " --tokenizer-type ByteLevelTokenizer --append-eod --workers 1",
                &log),
            0)
      << log;
  {
    std::ofstream out(dir_ / "recipe.toml");
    out << "[model]\nplugin = 'gpt'\nnum_layers = 2\nhidden_size = 64\nnum_attention_heads = 4\n"
           "seq_length = 32\nhidden_dropout = 0.1\nattention_dropout = 0.1\n"
           "[tokenizer]\nplugin = 'byte-level'\n"
           "[data]\ndata_path = '"
        << (dir_ / "corpus_text_document").string()
        << "'\nsplit = '90,10,0'\n"
           "[optimizer]\nplugin = 'adamw'\nlr = 1e-3\n"
           "[training]\nmicro_batch_size = 4\nglobal_batch_size = 8\ntrain_iters = 3\neval_interval = 100\n"
           "eval_iters = 1\nseed = 42\n";
  }
  const std::string recipe = (dir_ / "recipe.toml").string();
  const auto plain = train(recipe, "plain", "");
  expect_same(train(recipe, "uniform",
                    " --set model.recompute_granularity=full --set model.recompute_method=uniform"
                    " --set model.recompute_num_layers=2"),
              plain, 3);
  expect_same(train(recipe, "block",
                    " --set model.recompute_granularity=full --set model.recompute_method=block"
                    " --set model.recompute_num_layers=1"),
              plain, 3);
  expect_same(train(recipe, "selective", " --set model.recompute_activations=true"), plain, 3);
}
