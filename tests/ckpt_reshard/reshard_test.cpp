// A checkpoint loads under any parallel layout, driven as a user would (`megahost launch -- run`,
// CPU, Gloo). A TP2 x DP2 run with the distributed optimizer (so optimizer state is saved as
// flat DP shards of TP slices) trains 4 iterations and saves at 2 and 4. Its iteration-2
// checkpoint resumed as TP1 (one process), as PP2 and as DP2 (distributed optimizer, other
// shards) logs iterations 3 and 4 with the uninterrupted run's losses and grad norms.
//
// Tolerance: 1e-5 relative, fp32 on CPU. The layouts only reorder sums (TP partial products, DP
// reductions, pipeline micro-batches); tests/e2e_parallel holds every layout to the same bound.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
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

const std::string kGolden = std::string(MEGAHOST_TEST_DATA_DIR) + "/golden/gpt2_bpe_ids.jsonl";
constexpr double kRelTol = 1e-5;
const std::string kTp2Dp2 = "--set parallel.tensor_model_parallel_size=2 --set parallel.use_distributed_optimizer=true";

using Result = mhtest::RunResult;
Result run(const std::string& args) { return mhtest::run_megahost_here(args); }

struct Metrics {
  std::map<int64_t, double> loss, grad_norm;
};

Metrics read_metrics(const std::string& path) {
  Metrics m;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    const json j = json::parse(line);
    if (j.value("split", "") == "valid") continue;
    const int64_t it = j.at("iteration").get<int64_t>();
    m.loss[it] = j.at("lm_loss").get<double>();
    m.grad_norm[it] = j.at("grad_norm").get<double>();
  }
  return m;
}

class Reshard : public ::testing::Test {
 protected:
  static fs::path dir_;
  static std::string recipe_;
  static Metrics reference_;

  static void SetUpTestSuite() {
    dir_ = fs::temp_directory_path() / ("megahost_ckpt_reshard_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    {
      std::ifstream in(kGolden);
      std::ofstream out(dir_ / "corpus.jsonl");
      std::vector<std::string> lines;
      for (std::string l; std::getline(in, l);) lines.push_back(l);
      for (size_t i = lines.size() - 150; i < lines.size(); ++i)
        out << json{{"text", json::parse(lines[i]).at("text")}}.dump() << "\n";
    }
    Result pre = run("preprocess --input " + (dir_ / "corpus.jsonl").string() + " --output-prefix " +
                     (dir_ / "corpus").string() + " --tokenizer-type ByteLevelTokenizer --append-eod --workers 1");
    ASSERT_EQ(pre.code, 0) << pre.out;
    // 4 heads in 2 query groups (TP2), 2 layers (PP2), global batch 8 of micro-batches 2 (DP2).
    // make_vocab_size_divisible_by = 256: the padded vocabulary is 512 at TP1 and TP2 alike, so
    // every layout trains the very same model (the vocabulary test changes it on purpose).
    {
      std::ofstream out(dir_ / "recipe.toml");
      out << "[model]\nplugin = 'gpt'\nnum_layers = 2\nhidden_size = 64\nnum_attention_heads = 4\n"
             "group_query_attention = true\nnum_query_groups = 2\nseq_length = 32\nmax_position_embeddings = 32\n"
             "hidden_dropout = 0.0\nattention_dropout = 0.0\n"
             "[tokenizer]\nplugin = 'byte-level'\n"
             "[data]\ndata_path = '" << (dir_ / "corpus_text_document").string() << "'\nsplit = '100,0,0'\n"
             "[optimizer]\nplugin = 'adamw'\nlr = 1e-3\nmin_lr = 1e-4\nweight_decay = 0.01\nclip_grad = 1.0\n"
             "[training]\nmicro_batch_size = 2\nglobal_batch_size = 8\ntrain_iters = 4\nlr_warmup_iters = 1\n"
             "eval_interval = 100\neval_iters = 0\nseed = 7\ndevice = 'cpu'\nnum_threads = 1\n"
             "[logging]\nlog_interval = 1\n"
             "[checkpoint]\nsave_interval = 2\n"
             "[parallel]\nmake_vocab_size_divisible_by = 256\ndistributed_timeout_minutes = 1\n";
    }
    recipe_ = (dir_ / "recipe.toml").string();
    reference_ = train("reference", 4, kTp2Dp2 + " --set checkpoint.save=" + (dir_ / "ref").string());
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }

  static Metrics train(const std::string& name, int nproc, const std::string& sets, Result* out = nullptr) {
    const std::string metrics = (dir_ / (name + ".jsonl")).string();
    const std::string args = "run " + recipe_ + " --set logging.metrics_file=" + metrics + " " + sets;
    Result r = run(nproc == 1 ? args : "launch --nproc-per-node " + std::to_string(nproc) + " -- " + args);
    if (out != nullptr) *out = r;
    else
      EXPECT_EQ(r.code, 0) << name << ":\n" << r.out;
    return read_metrics(metrics);
  }

  // A save folder holding only the reference's iteration 2 (tracker included).
  static std::string iteration2_copy(const std::string& name) {
    const fs::path d = dir_ / name;
    fs::create_directories(d);
    fs::copy(dir_ / "ref/iter_0000002", d / "iter_0000002", fs::copy_options::recursive);
    std::ofstream(d / "latest_checkpointed_iteration.txt") << "2\n";
    return d.string();
  }

  static void expect_continues_the_reference(const std::string& name, int nproc, const std::string& sets) {
    Result r;
    const Metrics m = train(name, nproc, sets + " --set checkpoint.load=" + iteration2_copy("ckpt_" + name), &r);
    ASSERT_EQ(r.code, 0) << name << ":\n" << r.out;
    EXPECT_NE(r.out.find("resharding every tensor"), std::string::npos) << r.out;
    ASSERT_EQ(m.loss.size(), 2u) << name << ":\n" << r.out;  // iterations 3 and 4
    for (int64_t it : {3, 4}) {
      const double ref = reference_.loss.at(it), gn = reference_.grad_norm.at(it);
      EXPECT_NEAR(m.loss.at(it), ref, kRelTol * std::abs(ref)) << name << " lm loss, iteration " << it;
      EXPECT_NEAR(m.grad_norm.at(it), gn, kRelTol * std::abs(gn)) << name << " grad norm, iteration " << it;
    }
  }
};

fs::path Reshard::dir_;
std::string Reshard::recipe_;
Metrics Reshard::reference_;

TEST_F(Reshard, ReferenceSavedFourRankFolders) {
  ASSERT_EQ(reference_.loss.size(), 4u);
  for (int r = 0; r < 4; ++r)
    EXPECT_TRUE(fs::exists(dir_ / "ref/iter_0000002" / ("rank_0000" + std::to_string(r)) / "index.json")) << r;
}

TEST_F(Reshard, ResumedAsTp1) { expect_continues_the_reference("tp1", 1, ""); }
TEST_F(Reshard, ResumedAsPp2) {
  expect_continues_the_reference("pp2", 2, "--set parallel.pipeline_model_parallel_size=2");
}
TEST_F(Reshard, ResumedAsDp2WithDistributedOptimizer) {
  expect_continues_the_reference("dp2", 2, "--set parallel.use_distributed_optimizer=true");
}

// The comparison has teeth: the same resume without the optimizer state (Adam starts afresh)
// leaves the tolerance at iteration 4.
TEST_F(Reshard, ResumedWithoutOptimizerStateDiffers) {
  Result r;
  const Metrics m = train("tp1_no_optim", 1, "--set checkpoint.no_load_optim=true --set checkpoint.load=" +
                                                 iteration2_copy("ckpt_tp1_no_optim"), &r);
  ASSERT_EQ(r.code, 0) << r.out;
  ASSERT_EQ(m.loss.count(4), 1u) << r.out;
  EXPECT_GT(std::abs(m.loss.at(4) - reference_.loss.at(4)), kRelTol * reference_.loss.at(4));
}

// Same layout string (tp1.pp2.cp1.dp1), other stage assignment: a 4-layer PP2 run holds layers
// [0, 1] and [2, 3]; resumed with interleaving (one layer per virtual stage) rank 0 holds 0 and 2.
// Its folder lacks layer 2, so the load reshards and continues with the uninterrupted losses.
TEST_F(Reshard, ResumedWithInterleavingUnderTheSameLayoutString) {
  const std::string sets = "--set model.num_layers=4 --set parallel.pipeline_model_parallel_size=2 ";
  const std::string save = (dir_ / "pp2_whole").string();
  const Metrics whole = train("pp2_whole", 2, sets + "--set checkpoint.save=" + save);
  const fs::path resumed = dir_ / "pp2_resumed";
  fs::create_directories(resumed);
  fs::copy(fs::path(save) / "iter_0000002", resumed / "iter_0000002", fs::copy_options::recursive);
  std::ofstream(resumed / "latest_checkpointed_iteration.txt") << "2\n";
  Result r;
  const Metrics m = train("pp2_interleaved", 2, sets + "--set parallel.num_layers_per_virtual_pipeline_stage=1 "
                                                       "--set checkpoint.load=" + resumed.string(), &r);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("resharding every tensor"), std::string::npos) << r.out;
  ASSERT_EQ(m.loss.size(), 2u) << r.out;
  for (int64_t it : {3, 4})
    EXPECT_NEAR(m.loss.at(it), whole.loss.at(it), kRelTol * whole.loss.at(it)) << "iteration " << it;
}

// `megahost generate` is one process: it loads the 4-rank checkpoint through the same resharding.
TEST_F(Reshard, GenerateLoadsAMultiRankCheckpoint) {
  const Result r = run("generate " + recipe_ + " --set checkpoint.load=" + (dir_ / "ref").string() +
                       " --prompt 'The ' --max-new-tokens 4");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("resharding every tensor"), std::string::npos) << r.out;
}

// inspect shows each stored piece's place in its global tensor.
TEST_F(Reshard, InspectShowsGlobalShapesAndSlices) {
  const Result ins = run("ckpt inspect --json " + (dir_ / "ref/iter_0000002").string());
  ASSERT_EQ(ins.code, 0) << ins.out;
  const json j = json::parse(ins.out.substr(ins.out.find("{\n")));
  ASSERT_EQ(j["folders"].size(), 4u);
  bool saw_tp_slice = false, saw_flat = false;
  for (const json& t : j["folders"][1]["tensors"]) {  // rank 1: tp rank 1, dp rank 0
    if (t["name"] == "model/decoder.layers.0.self_attention.linear_qkv.weight") {
      saw_tp_slice = true;
      EXPECT_EQ(t["slice"]["global_shape"][0], 2 * t["shape"][0].get<int64_t>()) << t.dump();
      EXPECT_EQ(t["slice"]["offsets"][0], t["shape"][0]) << t.dump();
    }
    saw_flat = saw_flat || (t.contains("slice") && t["slice"].contains("flat"));
  }
  EXPECT_TRUE(saw_tp_slice) << ins.out;
  EXPECT_TRUE(saw_flat) << "distributed optimizer state is recorded as flat ranges\n" << ins.out;
  const Result text = run("ckpt inspect " + (dir_ / "ref/iter_0000002").string());
  EXPECT_NE(text.out.find("GLOBAL SHAPE"), std::string::npos) << text.out;
}

// make_vocab_size_divisible_by = 128: TP2 pads the vocabulary to 512 rows, TP1 to 384. The
// resume drops the padding rows, says so, and trains on.
TEST_F(Reshard, ChangedVocabularyPaddingIsTrimmed) {
  const std::string save = (dir_ / "vocab").string();
  const std::string sets = "--set parallel.make_vocab_size_divisible_by=128 --set training.train_iters=2 ";
  train("vocab_tp2", 2, sets + "--set parallel.tensor_model_parallel_size=2 --set checkpoint.save=" + save);
  Result r;
  const Metrics m =
      train("vocab_tp1", 1, "--set parallel.make_vocab_size_divisible_by=128 --set checkpoint.load=" + save, &r);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("has 512 rows (padded vocabulary) in the checkpoint and 384 in this layout"), std::string::npos)
      << r.out;
  ASSERT_EQ(m.loss.count(3), 1u) << r.out;
  EXPECT_TRUE(std::isfinite(m.loss.at(3)));
}

// A checkpoint as saved before shards.json existed: the entry dropped from the folder's index
// (its bytes stay in tensors.bin as an unused gap, which the format allows).
void drop_shards_record(const fs::path& folder) {
  json index = json::parse(std::ifstream(folder / "index.json"));
  json kept = json::array();
  for (const json& e : index["entries"])
    if (e["name"] != "shards.json") kept.push_back(e);
  ASSERT_EQ(kept.size() + 1, index["entries"].size()) << folder;
  index["entries"] = kept;
  std::ofstream(folder / "index.json", std::ios::trunc) << index.dump(1);
}

// One process's folder holds every tensor whole: without shards.json it still reshards (here
// to TP2), and continues with the reference's losses (a TP1 run equals the TP2 x DP2 one).
TEST_F(Reshard, OldSingleProcessCheckpointReshards) {
  const std::string save = (dir_ / "old_single").string();
  train("old_single_tp1", 1, "--set training.train_iters=2 --set checkpoint.save=" + save);
  drop_shards_record(fs::path(save) / "iter_0000002");
  Result r;
  const Metrics m =
      train("old_single_tp2", 2, "--set parallel.tensor_model_parallel_size=2 --set checkpoint.load=" + save, &r);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("resharding every tensor"), std::string::npos) << r.out;
  ASSERT_EQ(m.loss.size(), 2u) << r.out;
  for (int64_t it : {3, 4})
    EXPECT_NEAR(m.loss.at(it), reference_.loss.at(it), kRelTol * reference_.loss.at(it)) << "iteration " << it;
}

// Several rank folders without shards.json: only the layout that saved them can load them, and
// another layout is refused naming the folder.
TEST_F(Reshard, OldMultiRankCheckpointIsRefusedUnderAnotherLayout) {
  const std::string ckpt = iteration2_copy("ckpt_old_multi");
  for (int r = 0; r < 4; ++r) drop_shards_record(fs::path(ckpt) / "iter_0000002" / ("rank_0000" + std::to_string(r)));
  Result r;
  train("old_multi_tp1", 1, "--set checkpoint.load=" + ckpt, &r);
  EXPECT_NE(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("rank_00000 has no shards.json"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("HINT: resume with the parallel layout that saved it"), std::string::npos) << r.out;
}

// A flipped byte in one rank folder: `ckpt verify` and the resharding load name the folder and entry.
TEST_F(Reshard, CorruptedShardIsNamedByVerifyAndLoad) {
  const std::string ckpt = iteration2_copy("ckpt_corrupt");
  const std::string rank1 = ckpt + "/iter_0000002/rank_00001";
  const json index = json::parse(std::ifstream(rank1 + "/index.json"));
  const json& victim = index["entries"][0];
  const std::string name = victim["name"].get<std::string>();
  ASSERT_EQ(name.rfind("model/", 0), 0u) << name;
  {
    std::fstream f(rank1 + "/tensors.bin", std::ios::in | std::ios::out | std::ios::binary);
    const int64_t at = victim["offset"].get<int64_t>();
    char c = 0;
    f.seekg(at);
    f.read(&c, 1);
    c = static_cast<char>(c ^ 0x5a);
    f.seekp(at);
    f.write(&c, 1);
  }
  const Result verify = run("ckpt verify " + ckpt);
  EXPECT_EQ(verify.code, 1) << verify.out;
  EXPECT_NE(verify.out.find("rank_00001: entry '" + name + "'"), std::string::npos) << verify.out;
  Result load;
  train("corrupt_tp1", 1, "--set checkpoint.load=" + ckpt, &load);
  EXPECT_NE(load.code, 0) << load.out;
  EXPECT_NE(load.out.find("rank_00001: entry '" + name + "'"), std::string::npos) << load.out;
}

}  // namespace
