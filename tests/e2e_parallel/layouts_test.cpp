// Every parallel layout trains the tiny GPT to the same losses as one process, launched as a user
// would (`megahost launch --nproc-per-node N -- run recipe --set parallel.…`); wrong layouts are
// refused with Megatron's reasons before any work; a dying rank stops the others, named.
//
// Tolerance: fp32 on CPU; the layouts only reorder sums (TP partial products, DP/CP reductions,
// pipeline micro-batch order), so lm loss and grad norm agree to 1e-5 relative per iteration.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const std::string kMegahost = std::string(MEGAHOST_BINARY_DIR) + "/bin/megahost";
const std::string kGolden = std::string(MEGAHOST_TEST_DATA_DIR) + "/golden/gpt2_bpe_ids.jsonl";
constexpr double kRelTol = 1e-5;

struct Result {
  int code = -1;
  std::string out;
};

Result run(const std::string& args, const std::string& env = "") {
  Result r;
  FILE* p = popen((env + (env.empty() ? "" : " ") + kMegahost + " " + args + " 2>&1").c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) r.out.append(buf, n);
  const int status = pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

struct Metrics {
  std::map<int64_t, double> loss, grad_norm, valid;
};

Metrics read_metrics(const std::string& path) {
  Metrics m;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    const json j = json::parse(line);
    const int64_t it = j.at("iteration").get<int64_t>();
    if (j.value("split", "") == "valid") {
      m.valid[it] = j.at("lm_loss").get<double>();
    } else {
      m.loss[it] = j.at("lm_loss").get<double>();
      if (j.contains("grad_norm")) m.grad_norm[it] = j.at("grad_norm").get<double>();  // not with clip_grad = 0
    }
  }
  return m;
}

class Layouts : public ::testing::Test {
 protected:
  static fs::path dir_;
  static std::string recipe_;
  static Metrics reference_;

  // Once: a byte-level corpus from the golden English paragraphs, the recipe, one process's run.
  static void SetUpTestSuite() {
    // ctest runs every test in its own process, several at once: a folder per process.
    dir_ = fs::temp_directory_path() / ("megahost_e2e_parallel_" + std::to_string(::getpid()));
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
    // 4 layers (PP2 x 2 virtual stages of 1), 4 heads and 2 query groups (TP2), seq 32 (CP2: 4 chunks),
    // global batch 8 of micro-batches 2 (DP2: 2 per rank; interleaving needs a multiple of pp).
    {
    std::ofstream out(dir_ / "recipe.toml");
    out << "[model]\nplugin = 'gpt'\nnum_layers = 4\nhidden_size = 64\nnum_attention_heads = 4\n"
           "group_query_attention = true\nnum_query_groups = 2\nseq_length = 32\nmax_position_embeddings = 32\n"
           "hidden_dropout = 0.0\nattention_dropout = 0.0\n"
           "[tokenizer]\nplugin = 'byte-level'\n"
           "[data]\ndata_path = '" << (dir_ / "corpus_text_document").string() << "'\nsplit = '90,10,0'\n"
           "[optimizer]\nplugin = 'adamw'\nlr = 1e-3\nmin_lr = 1e-4\nweight_decay = 0.01\nclip_grad = 1.0\n"
           "[training]\nmicro_batch_size = 2\nglobal_batch_size = 8\ntrain_iters = 3\nlr_warmup_iters = 1\n"
           "eval_interval = 3\neval_iters = 1\nseed = 7\ndevice = 'cpu'\nnum_threads = 1\n"
           "[logging]\nlog_interval = 1\n"
           // Megatron pads the vocabulary to a multiple of make_vocab_size_divisible_by x TP: pad to
           // 512 at TP1 (256 x 1) and TP2 (256 x 2) alike so every layout trains the very same model.
           "[parallel]\nmake_vocab_size_divisible_by = 256\ndistributed_timeout_minutes = 1\n";
    }
    recipe_ = (dir_ / "recipe.toml").string();
    reference_ = train("single", 1, "");
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }

  // Trains on nproc ranks (1 = plain `run`) with extra --set flags; returns the metrics.
  static Metrics train(const std::string& name, int nproc, const std::string& sets, const std::string& env = "") {
    const std::string metrics = (dir_ / (name + ".jsonl")).string();
    const std::string args = "run " + recipe_ + " --set logging.metrics_file=" + metrics + " " + sets;
    Result r = run(nproc == 1 ? args : "launch --nproc-per-node " + std::to_string(nproc) + " -- " + args, env);
    EXPECT_EQ(r.code, 0) << name << ":\n" << r.out;
    return read_metrics(metrics);
  }

  static void expect_same_as_single(const std::string& name, int nproc, const std::string& sets) {
    expect_same_run(reference_, train(name, nproc, sets), name);
  }
  static void expect_same_run(const Metrics& reference, const Metrics& m, const std::string& name) {
    ASSERT_EQ(m.loss.size(), 3u) << name;
    for (const auto& [it, ref] : reference.loss) {
      EXPECT_NEAR(m.loss.at(it), ref, kRelTol * std::abs(ref)) << name << " lm loss, iteration " << it;
      const double gn = reference.grad_norm.at(it);
      EXPECT_NEAR(m.grad_norm.at(it), gn, kRelTol * std::abs(gn)) << name << " grad norm, iteration " << it;
    }
    ASSERT_EQ(m.valid.size(), reference.valid.size()) << name;
    for (const auto& [it, ref] : reference.valid)
      EXPECT_NEAR(m.valid.at(it), ref, kRelTol * std::abs(ref)) << name << " valid loss, iteration " << it;
  }
};

fs::path Layouts::dir_;
std::string Layouts::recipe_;
Metrics Layouts::reference_;

TEST_F(Layouts, ReferenceLearns) {
  ASSERT_EQ(reference_.loss.size(), 3u);
  EXPECT_LT(reference_.loss.at(3), reference_.loss.at(1));
}

TEST_F(Layouts, TP2) { expect_same_as_single("tp2", 2, "--set parallel.tensor_model_parallel_size=2"); }
TEST_F(Layouts, TP2WithSequenceParallel) {
  expect_same_as_single("tp2sp", 2,
                        "--set parallel.tensor_model_parallel_size=2 --set parallel.sequence_parallel=true");
}
// Qwen3-style q/k norms (qk_layernorm): each TP rank norms its own heads with the shared
// weights, so their gradients are summed over TP; TP2 (and TP2 + SP) must train as one process.
TEST_F(Layouts, TP2WithQkLayernorm) {
  const std::string qwen3 = "--set model.qk_layernorm=true --set model.normalization=RMSNorm "
                            "--set model.position_embedding_type=rope --set model.swiglu=true "
                            "--set model.add_bias_linear=false";
  const Metrics one = train("qk_single", 1, qwen3);
  expect_same_run(one, train("qk_tp2", 2, qwen3 + " --set parallel.tensor_model_parallel_size=2"), "qk_tp2");
  expect_same_run(one,
                  train("qk_tp2sp", 2,
                        qwen3 + " --set parallel.tensor_model_parallel_size=2 --set parallel.sequence_parallel=true"),
                  "qk_tp2sp");
}
TEST_F(Layouts, PP2OneFOneB) { expect_same_as_single("pp2", 2, "--set parallel.pipeline_model_parallel_size=2"); }
TEST_F(Layouts, PP2Interleaved) {
  expect_same_as_single("pp2vp", 2,
                        "--set parallel.pipeline_model_parallel_size=2 "
                        "--set parallel.num_layers_per_virtual_pipeline_stage=1");
}
TEST_F(Layouts, DP2) { expect_same_as_single("dp2", 2, ""); }
TEST_F(Layouts, DP2OverlappedSmallBuckets) {
  expect_same_as_single("dp2ov", 2, "--set parallel.overlap_grad_reduce=true --set parallel.ddp_bucket_size=5000");
}
TEST_F(Layouts, DP2DistributedOptimizer) {
  expect_same_as_single("dp2do", 2,
                        "--set parallel.use_distributed_optimizer=true --set parallel.overlap_grad_reduce=true "
                        "--set parallel.overlap_param_gather=true --set parallel.ddp_bucket_size=5000");
}
// The gradient buffers left unzeroed between iterations (ABI 1.6 zero_grad_deferred) under the
// layouts that touch them most: reduce-scattered buckets with overlap, and interleaved pipeline
// stages (two model chunks per rank, several micro-batches each). Every figure equals a run that
// zeroes them (MEGAHOST_DEFER_ZERO_GRAD=0) exactly.
TEST_F(Layouts, DeferredZeroGradEqualsZeroing) {
  const std::string layouts[][2] = {
      {"do", "--set parallel.use_distributed_optimizer=true --set parallel.overlap_grad_reduce=true "
             "--set parallel.ddp_bucket_size=5000"},
      {"vp", "--set parallel.pipeline_model_parallel_size=2 --set parallel.num_layers_per_virtual_pipeline_stage=1"}};
  for (const auto& [name, sets] : layouts) {
    SCOPED_TRACE(name);
    const Metrics deferred = train(name + "-deferred", 2, sets);
    const Metrics zeroed = train(name + "-zeroed", 2, sets, "MEGAHOST_DEFER_ZERO_GRAD=0");
    ASSERT_EQ(deferred.loss.size(), 3u);
    EXPECT_EQ(deferred.loss, zeroed.loss);
    EXPECT_EQ(deferred.grad_norm, zeroed.grad_norm);
    EXPECT_EQ(deferred.valid, zeroed.valid);
  }
}
// clip_grad = 0 skips the gradient norm and its reductions over dp, tp and pp on every rank alike:
// under a pipeline and under the distributed optimizer the losses equal, bit for bit, those of a
// clip that never binds, and no grad norm is logged.
TEST_F(Layouts, NoClipSkipsTheNormOnEveryRank) {
  const std::string layouts[][2] = {
      {"pp2", "--set parallel.pipeline_model_parallel_size=2"},
      {"do", "--set parallel.use_distributed_optimizer=true --set parallel.overlap_grad_reduce=true "
             "--set parallel.ddp_bucket_size=5000"}};
  for (const auto& [name, sets] : layouts) {
    SCOPED_TRACE(name);
    const Metrics none = train(name + "-noclip", 2, sets + " --set optimizer.clip_grad=0");
    const Metrics huge = train(name + "-hugeclip", 2, sets + " --set optimizer.clip_grad=1e30");
    ASSERT_EQ(none.loss.size(), 3u);
    EXPECT_EQ(none.loss, huge.loss);
    EXPECT_EQ(none.valid, huge.valid);
    EXPECT_TRUE(none.grad_norm.empty());
    EXPECT_EQ(huge.grad_norm.size(), 3u);
  }
}
TEST_F(Layouts, CP2) { expect_same_as_single("cp2", 2, "--set parallel.context_parallel_size=2"); }
TEST_F(Layouts, TP2xPP2) {
  expect_same_as_single("tp2pp2", 4,
                        "--set parallel.tensor_model_parallel_size=2 --set parallel.pipeline_model_parallel_size=2");
}
TEST_F(Layouts, TP2xDP2) { expect_same_as_single("tp2dp2", 4, "--set parallel.tensor_model_parallel_size=2"); }
TEST_F(Layouts, PP2xDP2) { expect_same_as_single("pp2dp2", 4, "--set parallel.pipeline_model_parallel_size=2"); }

// Resume under the same layout continues exactly (checkpoints are saved per rank).
TEST_F(Layouts, TP2xDP2SavesAndResumes) {
  const std::string ckpt = (dir_ / "ckpt_tp2dp2").string();
  const std::string sets = "--set parallel.tensor_model_parallel_size=2 --set parallel.use_distributed_optimizer=true "
                           "--set checkpoint.save=" + ckpt + " --set checkpoint.load=" + ckpt;
  train("resume_a", 4, sets + " --set training.exit_interval=2");
  const Metrics b = train("resume_b", 4, sets);
  ASSERT_EQ(b.loss.count(3), 1u);
  EXPECT_NEAR(b.loss.at(3), reference_.loss.at(3), kRelTol * reference_.loss.at(3));

  // ckpt verify / inspect read every rank folder; a flipped byte is named with its rank folder.
  const Result ok = run("ckpt verify " + ckpt);
  EXPECT_EQ(ok.code, 0) << ok.out;
  const Result ins = run("ckpt inspect --json " + ckpt);  // stderr (warnings) comes before the JSON
  ASSERT_EQ(ins.code, 0) << ins.out;
  ASSERT_NE(ins.out.find("{\n"), std::string::npos) << ins.out;
  const json j = json::parse(ins.out.substr(ins.out.find("{\n")));
  ASSERT_EQ(j["folders"].size(), 4u) << ins.out;
  EXPECT_EQ(j["folders"][3]["meta"]["world_size"], 4);
  const std::string rank3 = ckpt + "/iter_0000003/rank_00003";  // train_iters = 3
  const json index = json::parse(std::ifstream(rank3 + "/index.json"));
  const json& victim = index["entries"][0];
  {
    std::fstream f(rank3 + "/tensors.bin", std::ios::in | std::ios::out | std::ios::binary);
    const int64_t at = victim["offset"].get<int64_t>();
    f.seekp(at);
    char c = 0;
    f.read(&c, 1);
    f.seekp(at);
    c = static_cast<char>(c ^ 0x5a);
    f.write(&c, 1);
  }
  const Result bad = run("ckpt verify " + ckpt);
  EXPECT_EQ(bad.code, 1) << bad.out;
  EXPECT_NE(bad.out.find("rank_00003: entry '" + victim["name"].get<std::string>() + "'"), std::string::npos)
      << bad.out;
}

// TP2 with dropout (attention dropout per TP rank): stopped at iteration 2 and resumed, iteration 3
// has the loss of the uninterrupted run (the per-rank masks derive from the checkpointed default
// generators). Tolerance 1e-6 relative: the same ops on the same data, only restarted.
TEST_F(Layouts, TP2WithDropoutResumesExactly) {
  const std::string sets = "--set parallel.tensor_model_parallel_size=2 --set model.hidden_dropout=0.1 "
                           "--set model.attention_dropout=0.1";
  const auto ckpt = [](const std::string& name) {
    const std::string d = (dir_ / name).string();
    return " --set checkpoint.save=" + d + " --set checkpoint.load=" + d;
  };
  const Metrics whole = train("dropout_whole", 2, sets + ckpt("ckpt_dropout_whole"));
  train("dropout_a", 2, sets + ckpt("ckpt_dropout_resumed") + " --set training.exit_interval=2");
  const Metrics resumed = train("dropout_b", 2, sets + ckpt("ckpt_dropout_resumed"));
  ASSERT_EQ(whole.loss.count(3), 1u);
  ASSERT_EQ(resumed.loss.count(3), 1u);
  EXPECT_NE(whole.loss.at(1), reference_.loss.at(1)) << "dropout was on";
  EXPECT_NEAR(resumed.loss.at(3), whole.loss.at(3), 1e-6 * whole.loss.at(3));
}

// Wrong layouts: refused before any work, with the reason.
TEST_F(Layouts, WrongLayoutsAreRefusedWithReasons) {
  Result r = run("launch --nproc-per-node 2 -- run " + recipe_ + " --set parallel.tensor_model_parallel_size=4");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("tensor_model_parallel_size"), std::string::npos) << r.out;
  r = run("launch --nproc-per-node 2 -- run " + recipe_ + " --set parallel.tensor_model_parallel_size=2 "
          "--set model.num_attention_heads=3 --set model.num_query_groups=3");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("num_attention_heads"), std::string::npos) << r.out;
  r = run("launch --nproc-per-node 2 -- run " + recipe_ + " --set parallel.pipeline_model_parallel_size=2 "
          "--set model.num_layers=3");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("divisible"), std::string::npos) << r.out;
  r = run("launch --nproc-per-node 2 -- run " + recipe_ + " --set training.global_batch_size=6");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("global batch size"), std::string::npos) << r.out;
  // CUDA graphs record tensor parallelism, but not a pipeline stage nor dropout drawn per TP rank
  // (refused for those reasons before the CPU device is).
  const std::string graph = " --set model.cuda_graph_impl=full_iteration";
  r = run("launch --nproc-per-node 2 -- run " + recipe_ + graph + " --set parallel.pipeline_model_parallel_size=2");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("pipeline and context parallelism are not recorded"), std::string::npos) << r.out;
  r = run("launch --nproc-per-node 2 -- run " + recipe_ + graph + " --set parallel.tensor_model_parallel_size=2 "
          "--set parallel.sequence_parallel=true --set model.hidden_dropout=0.1 --set model.attention_dropout=0.0");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("cannot record dropout drawn per TP rank"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("hidden_dropout = 0.1 under sequence_parallel"), std::string::npos) << r.out;
  r = run("launch --nproc-per-node 2 -- run " + recipe_ + graph + " --set parallel.tensor_model_parallel_size=2 "
          "--set model.hidden_dropout=0.1 --set model.attention_dropout=0.0");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("needs a CUDA device"), std::string::npos) << r.out;  // replicated dropout records
}

}  // namespace
