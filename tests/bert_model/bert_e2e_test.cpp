// The bert plugin as a user runs it: `megahost preprocess --split-sentences` of real Brown text
// (the golden paragraphs) with the WordPiece vocabulary, `megahost run` of a tiny BERT recipe,
// `megahost launch` with TP2, DP2, PP2 and PP2 x TP2 (same losses as one process), and the
// configurations that are refused, each with its reason.
//
// Tolerance for the layouts: fp32 on CPU, the layouts only reorder sums: 1e-5 relative per iteration.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <tuple>
#include <vector>

#include "../common/brown_e2e.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const std::string kVocab = mhtest::brown::wordpiece_vocab();
constexpr double kRelTol = 1e-5;

using mhtest::Metrics;

class BertE2E : public mhtest::RecipeSuite<BertE2E> {
 protected:
  static void SetUpTestSuite() {
    make_dir("bert_e2e");
    mhtest::brown::write_jsonl(dir_ / "brown.jsonl");
    mhtest::CliResult pre = mhtest::preprocess_wordpiece(dir_ / "brown.jsonl", dir_ / "brown", /*split=*/true);
    ASSERT_EQ(pre.code, 0) << pre.out;
    pre = mhtest::preprocess_wordpiece(dir_ / "brown.jsonl", dir_ / "brown", false);  // not split: brown_text_document
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
};

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

// The TFLOP/s line's model FLOPs come from the plugin (mh.model.flops/1): for this recipe, by hand
// (docs/models.md), per sample 2 x 22020096 (layers) + 1572864 (lm_head.dense) + 301989888
// (output layer at 64 positions, V 12288) + 24576 + 768 (pooler, binary head) = 347628288, x 8.
TEST_F(BertE2E, BenchCountsBertModelFlops) {
  const fs::path json = dir_ / "bench.json";
  const mhtest::CliResult r =
      mhtest::run_cli("bench " + recipe_ + " --warmup 0 --iters 1 --json " + json.string());
  ASSERT_EQ(r.code, 0) << r.out;
  std::ifstream in(json);
  EXPECT_DOUBLE_EQ(nlohmann::json::parse(in).at("model_flops_per_iter").get<double>(), 8 * 347628288.0);
}

// Megatron's --cuda-graph-impl full_iteration records on a GPU (CudaGraphReplaysFollowTheEagerRun);
// on the CPU the recipe is refused, naming the key.
TEST_F(BertE2E, CudaGraphsNeedACudaDevice) {
  expect_refused("--set model.cuda_graph_impl=full_iteration",
                 {"key 'model.cuda_graph_impl'", "needs a CUDA device", "cuda_graph_impl = \"none\""});
}

// On a GPU: the replayed graphs train as the eager run (brown_e2e.h), dropout on.
TEST_F(BertE2E, CudaGraphReplaysFollowTheEagerRun) { expect_cuda_graph_replays_follow_eager(); }

// On two GPUs: the same at tensor parallelism 2, the TP all-reduces recorded in the graph.
TEST_F(BertE2E, CudaGraphUnderTensorParallelismFollowsTheEagerRun) { expect_cuda_graph_replays_follow_eager(2); }

#ifdef MEGAHOST_TEST_HAVE_GLOO
TEST_F(BertE2E, TP2AndDP2EqualOneProcess) { expect_tp2_and_dp2_equal_one_process(kRelTol); }

// Pipeline stages (one encoder layer each): the first embeds, the last holds the heads and its
// copy of the tied word embeddings; every stage masks the same padding. PP2 alone, and PP2 x TP2
// on four processes, train the 3 iterations as one process does.
TEST_F(BertE2E, PP2AndPP2xTP2EqualOneProcess) {
  const Metrics ref = train("pp_single", 1, "");
  ASSERT_EQ(ref.loss.size(), 3u);
  for (const auto& [name, nproc, sets] : std::vector<std::tuple<std::string, int, std::string>>{
           {"pp2", 2, "--set parallel.pipeline_model_parallel_size=2"},
           {"pp2tp2", 4,
            "--set parallel.pipeline_model_parallel_size=2 --set parallel.tensor_model_parallel_size=2"}}) {
    const Metrics m = train(name, nproc, sets);
    ASSERT_EQ(m.loss.size(), 3u) << name;
    for (const auto& [it, l] : ref.loss) {
      EXPECT_NEAR(m.loss.at(it), l, kRelTol * l) << name << " loss, iteration " << it;
      EXPECT_NEAR(m.grad_norm.at(it), ref.grad_norm.at(it), kRelTol * ref.grad_norm.at(it)) << name << " grad norm";
    }
    ASSERT_EQ(m.valid.size(), ref.valid.size()) << name;
    for (const auto& [it, l] : ref.valid) EXPECT_NEAR(m.valid.at(it), l, kRelTol * l) << name << " valid loss";
  }
}

// The interleaved schedule: 4 layers, two chunks of one layer per rank (rank 0 holds layers 0
// and 2 with the embeddings, rank 1 layers 1 and 3 with the heads).
TEST_F(BertE2E, PP2InterleavedEqualsOneProcess) {
  const Metrics ref = train("vp_single", 1, "--set model.num_layers=4");
  const Metrics m = train("pp2vp", 2, "--set model.num_layers=4 --set parallel.pipeline_model_parallel_size=2 "
                                      "--set parallel.num_layers_per_virtual_pipeline_stage=1");
  ASSERT_EQ(ref.loss.size(), 3u);
  ASSERT_EQ(m.loss.size(), 3u);
  for (const auto& [it, l] : ref.loss) {
    EXPECT_NEAR(m.loss.at(it), l, kRelTol * l) << "loss, iteration " << it;
    EXPECT_NEAR(m.grad_norm.at(it), ref.grad_norm.at(it), kRelTol * ref.grad_norm.at(it)) << "grad norm";
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
  const mhtest::CliResult pre = mhtest::preprocess_wordpiece(dir_ / "single.jsonl", dir_ / "single", true);
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
