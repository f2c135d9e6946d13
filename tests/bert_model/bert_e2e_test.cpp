// The bert plugin as a user runs it: `megahost preprocess --split-sentences` of real Brown text
// (the golden paragraphs) with the WordPiece vocabulary, `megahost run` of a tiny BERT recipe,
// `megahost launch` with TP2 and DP2 (same losses as one process), and the configurations that
// are refused, each with its reason.
//
// Tolerance for TP2 / DP2: fp32 on CPU, the layouts only reorder sums: 1e-5 relative per iteration.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "../common/megahost_cli.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const fs::path kGolden = fs::path(MEGAHOST_TEST_DATA_DIR) / "golden";
const std::string kVocab = (kGolden / "bert_wordpiece_uncased_vocab.txt").string();
constexpr double kRelTol = 1e-5;

struct Result {
  int code = -1;
  std::string out;
};

Result run(const std::string& args) {
  Result r;
  r.code = mhtest::run_megahost(args, &r.out);
  return r;
}

struct Metrics {
  std::map<int64_t, double> loss, grad_norm, valid;
};

Metrics read_metrics(const fs::path& path) {
  Metrics m;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    const json j = json::parse(line);
    const int64_t it = j.at("iteration").get<int64_t>();
    if (j.value("split", "") == "valid") m.valid[it] = j.at("lm_loss").get<double>();
    else {
      m.loss[it] = j.at("lm_loss").get<double>();
      m.grad_norm[it] = j.at("grad_norm").get<double>();
    }
  }
  return m;
}

class BertE2E : public ::testing::Test {
 protected:
  static fs::path dir_;
  static std::string recipe_;

  static void SetUpTestSuite() {
    dir_ = fs::temp_directory_path() / ("megahost_bert_e2e_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    {
      // The golden strings' Brown paragraphs (the last 150 lines), one document each.
      std::ifstream in(kGolden / "bert_wordpiece_lower_ids.jsonl");
      std::vector<std::string> lines;
      for (std::string l; std::getline(in, l);) lines.push_back(l);
      std::ofstream out(dir_ / "brown.jsonl");
      for (size_t i = lines.size() - 150; i < lines.size(); ++i)
        out << json{{"text", json::parse(lines[i]).at("text")}}.dump() << "\n";
    }
    const std::string common = " --tokenizer-type BertWordPieceLowerCase --vocab-file " + kVocab + " --workers 1";
    Result pre = run("preprocess --input " + (dir_ / "brown.jsonl").string() + " --output-prefix " +
                     (dir_ / "brown").string() + " --split-sentences" + common);
    ASSERT_EQ(pre.code, 0) << pre.out;
    pre = run("preprocess --input " + (dir_ / "brown.jsonl").string() + " --output-prefix " +
              (dir_ / "brown").string() + common);  // not split: brown_text_document
    ASSERT_EQ(pre.code, 0) << pre.out;
    std::ofstream out(dir_ / "bert.toml");
    out << "[model]\nplugin = 'bert'\nnum_layers = 2\nhidden_size = 64\nnum_attention_heads = 4\nseq_length = 64\n"
           "max_position_embeddings = 64\nhidden_dropout = 0.0\nattention_dropout = 0.0\n"
           "[tokenizer]\nplugin = 'BertWordPieceLowerCase'\nvocab_file = '" << kVocab << "'\n"
           "[data]\ndata_path = '" << (dir_ / "brown_text_sentence").string() << "'\nsplit = '90,10,0'\n"
           "[optimizer]\nplugin = 'adamw'\nlr = 2e-3\nmin_lr = 2e-4\nweight_decay = 0.01\nclip_grad = 1.0\n"
           "[training]\nmicro_batch_size = 4\nglobal_batch_size = 8\ntrain_iters = 3\nlr_warmup_iters = 1\n"
           "eval_interval = 3\neval_iters = 1\nseed = 7\ndevice = 'cpu'\nnum_threads = 1\n"
           "[logging]\nlog_interval = 1\n"
           // 12131 ids padded to 12288 at TP1 (256 x 1) and TP2 (256 x 2) alike: the very same model.
           "[parallel]\nmake_vocab_size_divisible_by = 256\ndistributed_timeout_minutes = 1\n";
    recipe_ = (dir_ / "bert.toml").string();
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }

  static Metrics train(const std::string& name, int nproc, const std::string& sets) {
    const fs::path metrics = dir_ / (name + ".jsonl");
    const std::string args = "run " + recipe_ + " --set logging.metrics_file=" + metrics.string() + " " + sets;
    const Result r = run(nproc == 1 ? args : "launch --nproc-per-node " + std::to_string(nproc) + " -- " + args);
    EXPECT_EQ(r.code, 0) << name << ":\n" << r.out;
    return read_metrics(metrics);
  }

  static void expect_refused(const std::string& sets, const std::vector<std::string>& words) {
    const Result r = run("run " + recipe_ + " " + sets);
    EXPECT_NE(r.code, 0) << sets << ":\n" << r.out;
    for (const std::string& w : words) EXPECT_NE(r.out.find(w), std::string::npos) << "'" << w << "' in:\n" << r.out;
  }
};

fs::path BertE2E::dir_;
std::string BertE2E::recipe_;

TEST_F(BertE2E, TinyBertLearns) {
  const Metrics m = train("learn", 1, "--set training.train_iters=80 --set training.eval_interval=40 "
                                      "--set training.eval_iters=2 --set training.lr_warmup_iters=5");
  ASSERT_EQ(m.loss.size(), 80u);
  double first = 0, last = 0;
  for (int64_t i = 1; i <= 5; ++i) first += m.loss.at(i) / 5;
  for (int64_t i = 76; i <= 80; ++i) last += m.loss.at(i) / 5;
  std::printf("lm + sentence-order loss: %.3f (iterations 1-5) -> %.3f (76-80); valid %.3f -> %.3f\n", first, last,
              m.valid.begin()->second, m.valid.rbegin()->second);
  EXPECT_LT(last, first - 1.5);
  EXPECT_LT(m.valid.rbegin()->second, m.valid.begin()->second);
}

#ifdef MEGAHOST_TEST_HAVE_GLOO
TEST_F(BertE2E, TP2AndDP2EqualOneProcess) {
  const Metrics ref = train("single", 1, "");
  ASSERT_EQ(ref.loss.size(), 3u);
  for (const auto& [name, sets] : std::vector<std::pair<std::string, std::string>>{
           {"tp2", "--set parallel.tensor_model_parallel_size=2"}, {"dp2", ""}}) {
    const Metrics m = train(name, 2, sets);
    ASSERT_EQ(m.loss.size(), 3u) << name;
    for (const auto& [it, l] : ref.loss) {
      EXPECT_NEAR(m.loss.at(it), l, kRelTol * l) << name << " loss, iteration " << it;
      EXPECT_NEAR(m.grad_norm.at(it), ref.grad_norm.at(it), kRelTol * ref.grad_norm.at(it)) << name << " grad norm";
    }
    for (const auto& [it, l] : ref.valid) EXPECT_NEAR(m.valid.at(it), l, kRelTol * l) << name << " valid loss";
  }
}
#endif

TEST_F(BertE2E, RefusesSeqLengthBeyondPositions) {
  expect_refused("--set model.max_position_embeddings=32", {"seq_length (64) exceeds max_position_embeddings (32)",
                                                            "HINT"});
}

TEST_F(BertE2E, RefusesBinaryHeadWithoutSentencePairs) {
  // A corpus preprocessed without --split-sentences has no sentences to pair.
  expect_refused("--set data.data_path=" + (dir_ / "brown_text_document").string(),
                 {"no document of the", "2 or more sentences", "--split-sentences", "bert_binary_head = false"});
  // A sentence-split corpus whose documents hold one sentence each has no pair either.
  {
    std::ofstream out(dir_ / "single.jsonl");
    for (int i = 0; i < 20; ++i) out << json{{"text", "A lone sentence number " + std::to_string(i) + " stands here."}}.dump() << "\n";
  }
  const Result pre = run("preprocess --input " + (dir_ / "single.jsonl").string() + " --output-prefix " +
                         (dir_ / "single").string() + " --split-sentences --tokenizer-type BertWordPieceLowerCase "
                         "--vocab-file " + kVocab + " --workers 1");
  ASSERT_EQ(pre.code, 0) << pre.out;
  expect_refused("--set data.data_path=" + (dir_ / "single_text_sentence").string(),
                 {"no document of the", "2 or more sentences"});
  // Without the binary head one sentence is a sample.
  const Metrics m = train("one_sentence", 1, "--set data.data_path=" + (dir_ / "single_text_sentence").string() +
                                           " --set model.bert_binary_head=false --set data.split=100/0/0");
  EXPECT_EQ(m.loss.size(), 3u);
}

TEST_F(BertE2E, RefusesVocabularyWithoutMask) {
  {
    std::ifstream in(kVocab);
    std::ofstream out(dir_ / "no_mask_vocab.txt");
    for (std::string l; std::getline(in, l);) out << (l == "[MASK]" ? "[MASKED]" : l) << "\n";
  }
  expect_refused("--set tokenizer.vocab_file=" + (dir_ / "no_mask_vocab.txt").string(), {"no [MASK] token", "HINT"});
}

TEST_F(BertE2E, RefusesGptBatchesAndUnsupportedParallelism) {
  expect_refused("--set data.dataset=gpt", {"no tensor named 'token_types'", "dataset = \"bert\""});
  expect_refused("--set data.dataset=bart", {"dataset = 'bart'", "HINT"});
  expect_refused("--set parallel.pipeline_model_parallel_size=1 --set model.num_attention_heads=3",
                 {"hidden_size (64) is not divisible by num_attention_heads (3)"});
}

}  // namespace
