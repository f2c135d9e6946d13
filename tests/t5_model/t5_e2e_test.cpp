// The t5 plugin as a user runs it: `megahost preprocess --split-sentences` of real Brown text
// (the golden paragraphs) with the WordPiece vocabulary, `megahost run` of a tiny T5 recipe,
// `megahost launch` with TP2 and DP2 (same losses as one process), and the configurations that
// are refused, each with its reason.
//
// Tolerance for TP2 / DP2: fp32 on CPU, the layouts only reorder sums: 1e-5 relative per iteration.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "../common/brown_e2e.h"

namespace {

const std::string kVocab = mhtest::brown::wordpiece_vocab();
constexpr double kRelTol = 1e-5;

using mhtest::Metrics;

class T5E2E : public mhtest::RecipeSuite<T5E2E> {
 protected:
  static void SetUpTestSuite() {
    make_dir("t5_e2e");
    mhtest::brown::write_jsonl(dir_ / "brown.jsonl");
    const mhtest::CliResult pre = mhtest::preprocess_wordpiece(dir_ / "brown.jsonl", dir_ / "brown", true);
    ASSERT_EQ(pre.code, 0) << pre.out;
    std::ofstream out(dir_ / "t5.toml");
    out << "[model]\nplugin = 't5'\nnum_layers = 2\nhidden_size = 64\nnum_attention_heads = 4\nkv_channels = 16\n"
           "ffn_hidden_size = 256\nencoder_seq_length = 64\ndecoder_seq_length = 32\nmax_position_embeddings = 64\n"
           "hidden_dropout = 0.0\nattention_dropout = 0.0\n"
           "[tokenizer]\nplugin = 'BertWordPieceLowerCase'\nvocab_file = '" << kVocab << "'\nvocab_extra_ids = 100\n"
           "[data]\ndataset = 't5'\ndata_path = '" << (dir_ / "brown_text_sentence").string() << "'\nsplit = '90,10,0'\n"
           "[optimizer]\nplugin = 'adamw'\nlr = 2e-3\nmin_lr = 2e-4\nweight_decay = 0.01\nclip_grad = 1.0\n"
           "[training]\nmicro_batch_size = 4\nglobal_batch_size = 8\ntrain_iters = 3\nlr_warmup_iters = 1\n"
           "eval_interval = 3\neval_iters = 1\nseed = 7\ndevice = 'cpu'\nnum_threads = 1\n"
           "[logging]\nlog_interval = 1\n"
           // 12129 + [BOS] [EOS] + 100 sentinels = 12231 ids, padded to 12288 at TP1 (256) and TP2 (512) alike.
           "[parallel]\nmake_vocab_size_divisible_by = 256\ndistributed_timeout_minutes = 1\n";
    recipe_ = (dir_ / "t5.toml").string();
  }
};

TEST_F(T5E2E, TinyT5Learns) {
  // 150 iterations of 8 samples (~5 s on one core); validation on the held-out 10% of documents.
  const Metrics m = train("learn", 1, "--set training.train_iters=150 --set training.eval_interval=25 "
                                      "--set training.eval_iters=4 --set training.lr_warmup_iters=5");
  ASSERT_EQ(m.loss.size(), 150u);
  ASSERT_EQ(m.valid.size(), 6u);
  double first = 0, last = 0;
  for (int64_t i = 1; i <= 5; ++i) first += m.loss.at(i) / 5;
  for (int64_t i = 146; i <= 150; ++i) last += m.loss.at(i) / 5;
  std::printf("T5 lm loss: %.3f (iterations 1-5) -> %.3f (146-150); valid %.3f (25) -> %.3f (150)\n", first, last,
              m.valid.begin()->second, m.valid.rbegin()->second);
  EXPECT_LT(last, first - 3.0);  // ln(12288) = 9.4 at the start
  EXPECT_LT(m.valid.rbegin()->second, m.valid.begin()->second - 0.5);
}

// The TFLOP/s line's model FLOPs come from the plugin (mh.model.flops/1): for this recipe, by hand
// (docs/models.md), per sample 44040192 (2 encoder layers) + 33030144 (2 decoder layers with
// cross-attention) + 150994944 (output layer at 32 positions) = 228065280, x 8 samples.
TEST_F(T5E2E, BenchCountsT5ModelFlops) {
  const std::filesystem::path json = dir_ / "bench.json";
  const mhtest::CliResult r =
      mhtest::run_cli("bench " + recipe_ + " --warmup 0 --iters 1 --json " + json.string());
  ASSERT_EQ(r.code, 0) << r.out;
  std::ifstream in(json);
  EXPECT_DOUBLE_EQ(nlohmann::json::parse(in).at("model_flops_per_iter").get<double>(), 8 * 228065280.0);
}

// Megatron's --cuda-graph-impl full_iteration records on a GPU; on the CPU the recipe is refused,
// naming the key.
TEST_F(T5E2E, CudaGraphsNeedACudaDevice) {
  expect_refused("--set model.cuda_graph_impl=full_iteration",
                 {"key 'model.cuda_graph_impl'", "needs a CUDA device", "cuda_graph_impl = \"none\""});
}

// On a GPU: the replayed graphs train as the eager run (brown_e2e.h), dropout on.
TEST_F(T5E2E, CudaGraphReplaysFollowTheEagerRun) { expect_cuda_graph_replays_follow_eager(); }

// On two GPUs: the same at tensor parallelism 2, the TP all-reduces recorded in the graph.
TEST_F(T5E2E, CudaGraphUnderTensorParallelismFollowsTheEagerRun) { expect_cuda_graph_replays_follow_eager(2); }

#ifdef MEGAHOST_TEST_HAVE_GLOO
TEST_F(T5E2E, TP2AndDP2EqualOneProcess) { expect_tp2_and_dp2_equal_one_process(kRelTol); }

TEST_F(T5E2E, RefusesPipelineStages) {
  expect_refused("--set parallel.pipeline_model_parallel_size=2",
                 {"pipeline stages are not supported by the t5 plugin", "pipeline_model_parallel_size = 1"},
                 "launch --nproc-per-node 2 -- run ");
}
#endif

TEST_F(T5E2E, RefusesDecoderTooShortForTheSpans) {
  expect_refused("--set model.decoder_seq_length=8", {"decoder_seq_length = 8 is too small for the spans", "HINT"});
}

TEST_F(T5E2E, RefusesVocabularyWithoutEnoughSentinels) {
  expect_refused("--set tokenizer.vocab_extra_ids=0", {"0 sentinel tokens", "vocab_extra_ids = 100"});
  expect_refused("--set tokenizer.vocab_extra_ids=4", {"4 sentinel tokens", "up to 9 masked spans"});
}

TEST_F(T5E2E, RefusesInconsistentLengthsAndGptBatches) {
  expect_refused("--set model.max_position_embeddings=32",
                 {"encoder_seq_length (64) exceeds max_position_embeddings (32)", "HINT"});
  expect_refused("--set model.seq_length=128", {"seq_length (128) differs from encoder_seq_length (64)"});
  expect_refused("--set data.dataset=gpt", {"no tensor named 'text_enc'", "dataset = \"t5\""});
}

}  // namespace
