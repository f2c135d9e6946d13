// End-to-end suites over real Brown text (the BERT and T5 e2e tests): the golden paragraphs as a
// jsonl corpus, `megahost preprocess` of it with the golden uncased WordPiece vocabulary, and a
// fixture that trains a recipe (run or launch) and reads its metrics file, or checks a refusal.
// Needs MEGAHOST_TEST_DATA_DIR and megahost_cli.h's definitions; links nlohmann_json.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "golden.h"
#include "megahost_cli.h"

namespace mhtest {

namespace brown {

// The golden strings' Brown paragraphs (the last `n` lines), one document each, as {"text": ...} lines.
inline void write_jsonl(const std::filesystem::path& out_path, size_t n = 150) {
  std::ifstream in(texts_jsonl());
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  std::ofstream out(out_path);
  for (size_t i = lines.size() - n; i < lines.size(); ++i)
    out << nlohmann::json{{"text", nlohmann::json::parse(lines[i]).at("text")}}.dump() << "\n";
}

}  // namespace brown

struct CliResult {
  int code = -1;
  std::string out;  // stdout and stderr
};

inline CliResult run_cli(const std::string& args) {
  CliResult r;
  r.code = run_megahost(args, &r.out);
  return r;
}

// `megahost preprocess` of a jsonl with the golden WordPiece vocabulary (lower case), one worker.
inline CliResult preprocess_wordpiece(const std::filesystem::path& input, const std::filesystem::path& output_prefix,
                                      bool split_sentences) {
  return run_cli("preprocess --input " + input.string() + " --output-prefix " + output_prefix.string() +
                 (split_sentences ? " --split-sentences" : "") + " --tokenizer-type BertWordPieceLowerCase " +
                 "--vocab-file " + brown::wordpiece_vocab() + " --workers 1");
}

// A metrics file's lines by iteration: training loss and grad norm, validation loss.
struct Metrics {
  std::map<int64_t, double> loss, grad_norm, valid;
};

inline Metrics read_metrics(const std::filesystem::path& path) {
  Metrics m;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    const nlohmann::json j = nlohmann::json::parse(line);
    const int64_t it = j.at("iteration").get<int64_t>();
    if (j.value("split", "") == "valid") m.valid[it] = j.at("lm_loss").get<double>();
    else {
      m.loss[it] = j.at("lm_loss").get<double>();
      m.grad_norm[it] = j.at("grad_norm").get<double>();
    }
  }
  return m;
}

// A suite over one recipe in its own temp folder. The suite's SetUpTestSuite calls
// make_dir(name) and writes recipe_; Suite is the deriving class (each suite its own statics).
template <class Suite>
class RecipeSuite : public ::testing::Test {
 protected:
  static inline std::filesystem::path dir_;
  static inline std::string recipe_;

  // A fresh <tmp>/megahost_<name>_<pid>.
  static void make_dir(const std::string& name) {
    dir_ = std::filesystem::temp_directory_path() / ("megahost_" + name + "_" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  static void TearDownTestSuite() { std::filesystem::remove_all(dir_); }

  // Trains the recipe with `sets` on nproc processes (launch when > 1); the metrics file's lines.
  static Metrics train(const std::string& name, int nproc, const std::string& sets) {
    const std::filesystem::path metrics = dir_ / (name + ".jsonl");
    const std::string args = "run " + recipe_ + " --set logging.metrics_file=" + metrics.string() + " " + sets;
    const CliResult r = run_cli(nproc == 1 ? args : "launch --nproc-per-node " + std::to_string(nproc) + " -- " + args);
    EXPECT_EQ(r.code, 0) << name << ":\n" << r.out;
    return read_metrics(metrics);
  }

  // TP2 and DP2 (two processes) train the 3 iterations of the recipe as one process does: the same
  // losses, grad norms and validation losses within rel_tol (the layouts only reorder sums).
  static void expect_tp2_and_dp2_equal_one_process(double rel_tol) {
    const Metrics ref = train("single", 1, "");
    ASSERT_EQ(ref.loss.size(), 3u);
    for (const auto& [name, sets] : std::vector<std::pair<std::string, std::string>>{
             {"tp2", "--set parallel.tensor_model_parallel_size=2"}, {"dp2", ""}}) {
      const Metrics m = train(name, 2, sets);
      ASSERT_EQ(m.loss.size(), 3u) << name;
      for (const auto& [it, l] : ref.loss) {
        EXPECT_NEAR(m.loss.at(it), l, rel_tol * l) << name << " loss, iteration " << it;
        EXPECT_NEAR(m.grad_norm.at(it), ref.grad_norm.at(it), rel_tol * ref.grad_norm.at(it)) << name << " grad norm";
      }
      for (const auto& [it, l] : ref.valid) EXPECT_NEAR(m.valid.at(it), l, rel_tol * l) << name << " valid loss";
    }
  }

  // On a GPU (skipped without one): after the warm-up each micro-batch's forward and backward is one
  // replayed CUDA graph (cuda_graph_impl = "full_iteration"), with the LM head over every position
  // (the eager run's head reads only the labelled ones: the same loss through products of other
  // shapes) and dropout 0.1 drawing the eager run's masks. 8 iterations in bf16, with the math and
  // then the default attention: every logged loss within 2e-3 and gradient norm within 1e-2 of
  // the eager run's. tp = 2: two GPUs (skipped with fewer), the TP collectives inside the graph,
  // no attention dropout (drawn per TP rank, which graphs refuse); the hidden dropout stays.
  static void expect_cuda_graph_replays_follow_eager(int tp = 1) {
    std::string cuda = "--set training.device=cuda --set training.precision=bf16 --set training.train_iters=8"
                       " --set training.eval_interval=8 --set model.hidden_dropout=0.1";
    cuda += tp == 1 ? " --set model.attention_dropout=0.1"
                    : " --set model.attention_dropout=0.0 --set parallel.distributed_timeout_minutes=2"
                      " --set parallel.tensor_model_parallel_size=" + std::to_string(tp);
    const std::string prefix = tp == 1 ? "" : "launch --nproc-per-node " + std::to_string(tp) + " -- ";
    const CliResult probe = run_cli(prefix + "run " + recipe_ + " " + cuda + " --set training.train_iters=1");
    if (probe.out.find("has no CUDA device") != std::string::npos || probe.out.find("CUDA device(s)") != std::string::npos)
      GTEST_SKIP() << "needs a CUDA build and " << tp << " GPU(s)";
    ASSERT_EQ(probe.code, 0) << probe.out;
    const std::string graph = " --set model.cuda_graph_impl=full_iteration --set model.cuda_graph_warmup_steps=2";
    for (const std::string name : {"math", "auto"}) {
      const std::string sets = cuda + " --set model.attention_backend=" + name;
      const Metrics eager = train("eager_" + name, tp, sets);
      const std::filesystem::path metrics = dir_ / ("graph_" + name + ".jsonl");
      const CliResult r =
          run_cli(prefix + "run " + recipe_ + " --set logging.metrics_file=" + metrics.string() + " " + sets + graph);
      ASSERT_EQ(r.code, 0) << r.out;
      size_t recorded = 0;  // the recipe's 2 micro-batches per step share one graph (rank 0 says so)
      for (size_t at = r.out.find("recorded a CUDA graph"); at != std::string::npos;
           at = r.out.find("recorded a CUDA graph", at + 1))
        ++recorded;
      EXPECT_EQ(recorded, 1u) << r.out;
      const Metrics replayed = read_metrics(metrics);
      ASSERT_EQ(eager.loss.size(), 8u);
      ASSERT_EQ(replayed.loss.size(), 8u);
      double worst = 0;
      for (const auto& [it, l] : eager.loss) {
        const double g = eager.grad_norm.at(it);
        worst = std::max({worst, std::abs(replayed.loss.at(it) / l - 1), std::abs(replayed.grad_norm.at(it) / g - 1)});
        EXPECT_NEAR(replayed.loss.at(it), l, 2e-3 * l) << name << " attention: loss, iteration " << it;
        EXPECT_NEAR(replayed.grad_norm.at(it), g, 1e-2 * g) << name << " attention: grad norm, iteration " << it;
      }
      std::printf("graph against eager, tp %d, %s attention: largest relative difference %.2e\n", tp, name.c_str(),
                  worst);
    }
  }

  // `megahost <prefix><recipe> <sets>` fails and says every one of `words`; returns what it said.
  static std::string expect_refused(const std::string& sets, const std::vector<std::string>& words,
                                    const std::string& prefix = "run ") {
    const CliResult r = run_cli(prefix + recipe_ + " " + sets);
    EXPECT_NE(r.code, 0) << sets << ":\n" << r.out;
    for (const std::string& w : words) EXPECT_NE(r.out.find(w), std::string::npos) << "'" << w << "' in:\n" << r.out;
    return r.out;
  }
};

}  // namespace mhtest
