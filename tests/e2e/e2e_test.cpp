// End-to-end tests of the `megahost` binary: preprocess -> train -> checkpoint -> resume ->
// generate, Megatron byte-compatibility, and bad inputs that must fail cleanly (exit != 0, no crash).
#include <gtest/gtest.h>
#include <signal.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "megahost/mh_version.h"

// The version every in-tree plugin reports: the headers it was built against.
static const std::string kAbiVersion = std::to_string(MH_ABI_VERSION_MAJOR) + "." +
                                       std::to_string(MH_ABI_VERSION_MINOR) + "." + std::to_string(MH_ABI_VERSION_PATCH);

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const std::string kMegahost = std::string(MEGAHOST_BINARY_DIR) + "/bin/megahost";
const std::string kGolden = std::string(MEGAHOST_TEST_DATA_DIR) + "/golden/gpt2_bpe_ids.jsonl";
const std::string kGpt2Dir = std::string(MEGAHOST_FETCHED_DATA_DIR) + "/npm/gpt2/package";

struct Result {
  int code = -1;
  bool crashed = false;
  std::string out;  // stdout + stderr
};

// Runs a shell command; the output is what it prints to stdout.
Result run_shell(const std::string& cmd) {
  Result r;
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) r.out.append(buf, n);
  const int status = pclose(p);
  r.crashed = WIFSIGNALED(status);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// Runs megahost; the output holds stdout and stderr, or stdout only.
Result run(const std::string& args, bool with_stderr = true, const std::string& env = "") {
  return run_shell(env + (env.empty() ? "" : " ") + kMegahost + " " + args + (with_stderr ? " 2>&1" : " 2>/dev/null"));
}

std::string read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

struct GoldenDoc {
  std::string text;
  std::vector<int32_t> ids;
};

std::vector<GoldenDoc> golden_docs() {
  std::vector<GoldenDoc> out;
  std::ifstream in(kGolden);
  std::string line;
  while (std::getline(in, line)) {
    json j = json::parse(line);
    out.push_back({j["text"].get<std::string>(), j["ids"].get<std::vector<int32_t>>()});
  }
  return out;
}

// A fresh folder per test.
class E2E : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() / (std::string("megahost_e2e_") + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    if (!HasFailure()) fs::remove_all(dir_);
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  // The golden texts as JSON lines: all 205 (55 edge cases, then 150 Brown paragraphs), or only
  // the Brown paragraphs (real English to learn from).
  std::string write_corpus(bool english_only = false) {
    std::ofstream out(path("corpus.jsonl"));
    const auto docs = golden_docs();
    for (size_t i = english_only ? docs.size() - 150 : 0; i < docs.size(); ++i)
      out << json{{"text", docs[i].text}}.dump() << "\n";
    return path("corpus.jsonl");
  }

  // Byte-level tokenizer: fast enough to train on 2 CPU cores in seconds.
  std::string preprocess_bytes() {
    Result r = run("preprocess --input " + write_corpus(true) + " --output-prefix " + path("corpus") +
                   " --tokenizer-type ByteLevelTokenizer --append-eod --workers 2");
    EXPECT_EQ(r.code, 0) << r.out;
    return path("corpus_text_document");
  }

  std::string write_recipe(const std::string& data_prefix, const std::string& extra = "") {
    std::ofstream out(path("recipe.toml"));
    out << "[model]\nplugin = 'gpt'\nnum_layers = 2\nhidden_size = 128\nnum_attention_heads = 4\n"
           "seq_length = 64\nmax_position_embeddings = 64\nhidden_dropout = 0.1\nattention_dropout = 0.1\n"
           "[tokenizer]\nplugin = 'byte-level'\n"
           "[data]\ndata_path = '" << data_prefix << "'\nsplit = '90,10,0'\n"
           "[optimizer]\nplugin = 'adamw'\nlr = 1e-3\nmin_lr = 1e-4\nweight_decay = 0.01\n"
           "[training]\nmicro_batch_size = 8\nglobal_batch_size = 16\ntrain_iters = 200\nlr_warmup_iters = 10\n"
           "lr_decay_style = 'cosine'\neval_interval = 50\neval_iters = 2\nseed = 42\n"
           "[checkpoint]\nsave = '" << path("ckpt") << "'\nload = '" << path("ckpt") << "'\nsave_interval = 1000\n"
           "[logging]\nlog_interval = 1\nmetrics_file = '" << path("metrics.jsonl") << "'\n"
        << extra;
    return path("recipe.toml");
  }

  fs::path dir_;
};

std::vector<json> read_metrics(const std::string& file) {
  std::vector<json> out;
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) out.push_back(json::parse(line));
  return out;
}

}  // namespace

TEST(Cli, VersionAndHelpForEveryCommand) {
  Result v = run("--version");
  EXPECT_EQ(v.code, 0);
  const std::string abi = "(plugin ABI " + std::to_string(MH_ABI_VERSION_MAJOR) + "." +
                          std::to_string(MH_ABI_VERSION_MINOR) + ")";
  EXPECT_EQ(v.out.rfind("megahost ", 0), 0u) << v.out;
  EXPECT_NE(v.out.find(abi), std::string::npos) << v.out;  // the ABI the host was built against
  for (const char* cmd : {"run", "plugins", "preprocess", "generate", "ckpt"}) {
    Result h = run(std::string(cmd) + " --help");
    EXPECT_EQ(h.code, 0) << cmd << ": " << h.out;
    EXPECT_NE(h.out.find("Usage"), std::string::npos) << cmd << ": " << h.out;
  }
  EXPECT_EQ(run("frobnicate").code, 2);
  EXPECT_EQ(run("").code, 2);
}

// The `megahost` executable is a launcher that loads its CLI library by a path relative to
// itself (host/launcher/): copied away from it, it says what is missing and fails as a shell
// reports a command it could not start.
TEST(Cli, LauncherWithoutItsLibraryFailsWithAHint) {
  const fs::path dir = fs::temp_directory_path() / ("mh_launcher_" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir / "bin");
  fs::copy_file(kMegahost, dir / "bin/megahost");
  const Result r = run_shell((dir / "bin/megahost").string() + " --version 2>&1");
  EXPECT_FALSE(r.crashed) << r.out;
  EXPECT_EQ(r.code, 127) << r.out;
  EXPECT_NE(r.out.find("libmegahost_cli.so"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("hint:"), std::string::npos) << r.out;
  fs::remove_all(dir);
}

TEST(Cli, PluginsJsonListsAllFiveKindsIncludingTheCPlugin) {
  Result r = run("plugins --json");
  ASSERT_EQ(r.code, 0) << r.out;
  json j = json::parse(r.out);
  std::map<std::string, int> kinds;
  bool c_plugin = false;
  for (const auto& p : j["plugins"]) {
    kinds[p["kind"]]++;
    if (p["id"] == "byte-level") c_plugin = true;
    EXPECT_EQ(p["abi_version"], kAbiVersion);
    EXPECT_TRUE(p.contains("path") && p.contains("version"));
  }
  for (const char* k : {"model", "tokenizer", "dataset", "checkpoint", "optimizer"}) EXPECT_GE(kinds[k], 1) << k;
  EXPECT_TRUE(c_plugin);
}

TEST(Cli, PluginPathEnvironmentVariableIsSearched) {
  const std::string cmd = std::string("MEGAHOST_PLUGIN_PATH=") + MEGAHOST_BAD_PLUGIN_DIR + " " + kMegahost +
                          " plugins --json 2>/dev/null";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  ASSERT_EQ(pclose(p), 0);
  json j = json::parse(out);
  EXPECT_EQ(j["refused"].size(), 2u) << out;
  bool listed = false;
  for (const auto& d : j["search_path"]) listed |= d == MEGAHOST_BAD_PLUGIN_DIR;
  EXPECT_TRUE(listed) << out;
}

TEST(Cli, PluginsShowsWhyABadLibraryWasRefused) {
  Result r = run(std::string("plugins --json --plugin-path ") + MEGAHOST_BAD_PLUGIN_DIR);
  ASSERT_EQ(r.code, 0) << r.out;
  json j = json::parse(r.out);
  std::string reasons;
  for (const auto& x : j["refused"]) reasons += x["reason"].get<std::string>() + "\n";
  EXPECT_NE(reasons.find("wrong ABI major"), std::string::npos) << reasons;
  EXPECT_NE(reasons.find("fingerprint mismatch"), std::string::npos) << reasons;
}

// Megatron writes <prefix>_text_document.{bin,idx}: tokens as uint16 (GPT-2 vocab < 65,500),
// EOD appended to non-empty documents, one sequence per document, empty documents still ending a
// document. The expected bytes are built here from Megatron's own ids (golden file) and the
// format table, independently of the writer.
TEST_F(E2E, PreprocessIsByteIdenticalToMegatron) {
  if (!fs::exists(kGpt2Dir + "/encoder.json")) GTEST_SKIP() << "run scripts/fetch_data.sh for the GPT-2 files";
  const auto docs = golden_docs();
  std::string bin;
  std::vector<int32_t> lengths;
  std::vector<int64_t> doc_index{0};
  for (const auto& d : docs) {
    if (!d.ids.empty()) {
      std::vector<int32_t> ids = d.ids;
      ids.push_back(50256);
      for (int32_t id : ids) {
        const uint16_t v = static_cast<uint16_t>(id);
        bin.append(reinterpret_cast<const char*>(&v), 2);
      }
      lengths.push_back(static_cast<int32_t>(ids.size()));
    }
    doc_index.push_back(static_cast<int64_t>(lengths.size()));
  }
  std::string idx("MMIDIDX\0\0", 9);
  auto put = [&idx](const auto& v) { idx.append(reinterpret_cast<const char*>(&v), sizeof(v)); };
  put(uint64_t{1});
  put(uint8_t{8});  // uint16
  put(static_cast<uint64_t>(lengths.size()));
  put(static_cast<uint64_t>(doc_index.size()));
  for (int32_t l : lengths) put(l);
  int64_t pointer = 0;
  for (int32_t l : lengths) {
    put(pointer);
    pointer += static_cast<int64_t>(l) * 2;
  }
  for (int64_t d : doc_index) put(d);

  const std::string input = write_corpus();
  for (int workers : {1, 2}) {
    const std::string prefix = path("gpt2_w" + std::to_string(workers));
    Result r = run("preprocess --input " + input + " --output-prefix " + prefix +
                   " --tokenizer-type GPT2BPETokenizer --vocab-file " + kGpt2Dir + "/encoder.json --merge-file " +
                   kGpt2Dir + "/vocab.bpe --append-eod --workers " + std::to_string(workers));
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_TRUE(read_bytes(prefix + "_text_document.bin") == bin) << "workers " << workers;
    EXPECT_TRUE(read_bytes(prefix + "_text_document.idx") == idx) << "workers " << workers;
  }
}

TEST_F(E2E, TrainLearnsThenGenerates) {
  const std::string data = preprocess_bytes();
  Result r = run("run " + write_recipe(data));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find(" iteration      200/     200 | consumed samples:         3200 |"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("validation loss at iteration 50 | lm loss value:"), std::string::npos) << r.out;
  std::vector<double> valid;
  double first_train = 0, last_train = 0;
  for (const auto& m : read_metrics(path("metrics.jsonl"))) {
    ASSERT_TRUE(m.contains("iteration") && m.contains("lm_loss"));
    if (m["split"] == "valid") valid.push_back(m["lm_loss"]);
    if (m["split"] == "train" && m["iteration"] == 1) first_train = m["lm_loss"];
    if (m["split"] == "train") last_train = m["lm_loss"];
  }
  ASSERT_GE(valid.size(), 4u);
  EXPECT_GT(first_train, 5.0);  // ~ln(384) at init
  EXPECT_LT(valid.back(), valid.front() - 0.15) << "validation loss must fall";
  EXPECT_LT(valid.back(), 2.8);  // below the ~3.0 nats of English byte frequencies alone
  EXPECT_LT(last_train, first_train - 2.5);
  EXPECT_TRUE(fs::exists(path("ckpt/latest_checkpointed_iteration.txt")));
  EXPECT_TRUE(fs::exists(path("ckpt/iter_0000200")));

  Result g = run("generate " + path("recipe.toml") + " --prompt 'The jury' --max-new-tokens 16", /*with_stderr=*/false);
  ASSERT_EQ(g.code, 0) << g.out;
  EXPECT_EQ(g.out.rfind("The jury", 0), 0u) << g.out;
  EXPECT_GT(g.out.size(), std::string("The jury\n").size()) << g.out;
}

// Megatron's --mock-data: a run with no corpus at all (the data path names nothing), learning
// the mock documents' counting pattern; BERT samples from mock data are refused with a hint.
TEST_F(E2E, MockDataTrainsWithoutACorpus) {
  const std::string recipe = write_recipe(path("no_corpus_here"));
  Result r = run("run " + recipe + " --set data.mock_data=true --set training.train_iters=40 --set training.eval_interval=20");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("data.data_path is not read: mock_data = true"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("mock data (train): built"), std::string::npos) << r.out;
  std::vector<double> valid;
  for (const auto& m : read_metrics(path("metrics.jsonl")))
    if (m["split"] == "valid") valid.push_back(m["lm_loss"]);
  ASSERT_GE(valid.size(), 2u);
  EXPECT_LT(valid.back(), valid.front() - 0.5) << "the counting pattern is easy to learn";

  Result bad = run("run " + recipe + " --set data.mock_data=true --set data.dataset=bert");
  EXPECT_NE(bad.code, 0) << bad.out;
  EXPECT_FALSE(bad.crashed) << bad.out;
  EXPECT_NE(bad.out.find("mock_data makes GPT documents"), std::string::npos) << bad.out;
}

// Swapping the tokenizer is one recipe line (here one --set) and no rebuild: the same recipe
// trains on byte-level data and on GPT-2 BPE data.
TEST_F(E2E, SwappingTheTokenizerIsOneLine) {
  if (!fs::exists(kGpt2Dir + "/encoder.json")) GTEST_SKIP() << "run scripts/fetch_data.sh for the GPT-2 files";
  const std::string bytes = preprocess_bytes();
  Result p = run("preprocess --input " + path("corpus.jsonl") + " --output-prefix " + path("bpe") +
                 " --tokenizer-type GPT2BPETokenizer --vocab-file " + kGpt2Dir + "/encoder.json --merge-file " +
                 kGpt2Dir + "/vocab.bpe --append-eod");
  ASSERT_EQ(p.code, 0) << p.out;
  const std::string recipe = write_recipe(bytes, "");
  const std::string common = " --set training.train_iters=2 --set training.eval_iters=0";
  Result a = run("run " + recipe + common);
  ASSERT_EQ(a.code, 0) << a.out;
  EXPECT_NE(a.out.find("vocab 257 padded to 384"), std::string::npos) << a.out;
  Result b = run("run " + recipe + common + " --set checkpoint.load=" + path("ckpt_bpe") + " --set checkpoint.save=" +
                 path("ckpt_bpe") + " --set data.data_path=" + path("bpe_text_document") +
                 " --set tokenizer.plugin=GPT2BPETokenizer --set tokenizer.vocab_file=" + kGpt2Dir +
                 "/encoder.json --set tokenizer.merge_file=" + kGpt2Dir + "/vocab.bpe");
  ASSERT_EQ(b.code, 0) << b.out;
  EXPECT_NE(b.out.find("vocab 50257 padded to 50304"), std::string::npos) << b.out;
}

// The recipe's plugin_path is searched too; a refused library is reported, not fatal.
TEST_F(E2E, RecipePluginPathIsSearched) {
  const std::string data = preprocess_bytes();
  const std::string body = read_bytes(write_recipe(data));
  {
    std::ofstream out(path("with_path.toml"));
    out << "plugin_path = ['" << MEGAHOST_BAD_PLUGIN_DIR << "']\n" << body;
  }
  Result r = run("run " + path("with_path.toml") + " --set training.train_iters=2 --set training.eval_iters=0");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("plugin library refused"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("wrong ABI major"), std::string::npos) << r.out;
}

// Stop after a checkpoint and resume: every logged figure equals the uninterrupted run's exactly
// (dropout on, so the RNG state must come back too).
TEST_F(E2E, ResumeIsExact) {
  const std::string data = preprocess_bytes();
  const std::string recipe = write_recipe(data);
  const std::string common = " --set training.train_iters=12 --set training.eval_interval=4";
  Result a = run("run " + recipe + common + " --set logging.metrics_file=" + path("a.jsonl") +
                 " --set checkpoint.save=" + path("ckpt_a") + " --set checkpoint.load=" + path("ckpt_a"));
  ASSERT_EQ(a.code, 0) << a.out;
  const std::string b_args = "run " + recipe + common + " --set logging.metrics_file=" + path("b.jsonl") +
                             " --set checkpoint.save=" + path("ckpt_b") + " --set checkpoint.load=" + path("ckpt_b");
  Result b1 = run(b_args + " --set training.exit_interval=6");
  ASSERT_EQ(b1.code, 0) << b1.out;
  EXPECT_NE(b1.out.find("exit_interval at iteration 6"), std::string::npos) << b1.out;
  Result b2 = run(b_args);
  ASSERT_EQ(b2.code, 0) << b2.out;
  EXPECT_NE(b2.out.find("resumed from"), std::string::npos) << b2.out;

  auto key = [](const json& m) { return m["split"].get<std::string>() + std::to_string(m["iteration"].get<int>()); };
  std::map<std::string, json> ma, mb;
  for (const auto& m : read_metrics(path("a.jsonl"))) ma[key(m)] = m;
  for (const auto& m : read_metrics(path("b.jsonl"))) mb[key(m)] = m;
  ASSERT_EQ(ma.size(), mb.size());
  for (const auto& [k, m] : ma) {
    ASSERT_TRUE(mb.count(k)) << k;
    EXPECT_EQ(m["lm_loss"].get<double>(), mb[k]["lm_loss"].get<double>()) << k;  // bit-exact
    if (m.contains("grad_norm")) EXPECT_EQ(m["grad_norm"].get<double>(), mb[k]["grad_norm"].get<double>()) << k;
  }
}

// The host's bound gradient buffers are not zeroed between iterations (ABI 1.6
// zero_grad_deferred: the next backward's first write of each gradient stores): every logged
// loss and gradient norm equals a run that zeroes them (MEGAHOST_DEFER_ZERO_GRAD=0), bit for bit,
// over iterations of two micro-batches each (the second one adds).
TEST_F(E2E, DeferredZeroGradIsExact) {
  const std::string data = preprocess_bytes();
  const std::string recipe = write_recipe(data);
  const std::string common = " --set training.train_iters=6 --set training.eval_interval=3";
  Result a = run("run " + recipe + common + " --set logging.metrics_file=" + path("deferred.jsonl") +
                 " --set checkpoint.save=" + path("ckpt_deferred") + " --set checkpoint.load=" + path("ckpt_deferred"));
  ASSERT_EQ(a.code, 0) << a.out;
  Result b = run("run " + recipe + common + " --set logging.metrics_file=" + path("zeroed.jsonl") +
                     " --set checkpoint.save=" + path("ckpt_zeroed") + " --set checkpoint.load=" + path("ckpt_zeroed"),
                 true, "MEGAHOST_DEFER_ZERO_GRAD=0");
  ASSERT_EQ(b.code, 0) << b.out;
  const auto ma = read_metrics(path("deferred.jsonl")), mb = read_metrics(path("zeroed.jsonl"));
  ASSERT_EQ(ma.size(), mb.size());
  ASSERT_GE(ma.size(), 6u);
  for (size_t i = 0; i < ma.size(); ++i) {
    SCOPED_TRACE(ma[i].dump());
    EXPECT_EQ(ma[i]["lm_loss"].get<double>(), mb[i]["lm_loss"].get<double>());
    if (ma[i].contains("grad_norm")) EXPECT_EQ(ma[i]["grad_norm"].get<double>(), mb[i]["grad_norm"].get<double>());
  }
}

// The clipping coefficient computed on the device (ABI 1.7 grad_scale_tensor: the host queues the
// step without waiting for the gradient norm) gives every logged loss and gradient norm of a run
// that reads the norm back first (MEGAHOST_CLIP_ON_DEVICE=0), bit for bit, with clipping active.
TEST_F(E2E, ClipOnDeviceIsExact) {
  const std::string data = preprocess_bytes();
  const std::string recipe = write_recipe(data);
  const std::string common = " --set training.train_iters=5 --set training.eval_interval=5 --set optimizer.clip_grad=0.05";
  Result a = run("run " + recipe + common + " --set logging.metrics_file=" + path("on_device.jsonl") +
                 " --set checkpoint.save=" + path("ckpt_on_device") + " --set checkpoint.load=" + path("ckpt_on_device"));
  ASSERT_EQ(a.code, 0) << a.out;
  Result b = run("run " + recipe + common + " --set logging.metrics_file=" + path("on_host.jsonl") +
                     " --set checkpoint.save=" + path("ckpt_on_host") + " --set checkpoint.load=" + path("ckpt_on_host"),
                 true, "MEGAHOST_CLIP_ON_DEVICE=0");
  ASSERT_EQ(b.code, 0) << b.out;
  const auto ma = read_metrics(path("on_device.jsonl")), mb = read_metrics(path("on_host.jsonl"));
  ASSERT_EQ(ma.size(), mb.size());
  ASSERT_GE(ma.size(), 5u);
  int clipped = 0;
  for (size_t i = 0; i < ma.size(); ++i) {
    SCOPED_TRACE(ma[i].dump());
    EXPECT_EQ(ma[i]["lm_loss"].get<double>(), mb[i]["lm_loss"].get<double>());
    if (!ma[i].contains("grad_norm")) continue;
    EXPECT_EQ(ma[i]["grad_norm"].get<double>(), mb[i]["grad_norm"].get<double>());
    clipped += ma[i]["grad_norm"].get<double>() > 0.05;
  }
  EXPECT_GE(clipped, 3);  // the coefficient was below 1: the comparison covers clipping
}

// clip_grad = 0 skips the gradient norm (nothing needs it) and trains exactly as a clip that never
// binds: every logged loss equal bit for bit; the log and metrics show no grad norm.
TEST_F(E2E, NoClipSkipsTheNorm) {
  const std::string data = preprocess_bytes();
  const std::string recipe = write_recipe(data);
  const std::string common = " --set training.train_iters=5 --set training.eval_interval=5";
  Result a = run("run " + recipe + common + " --set optimizer.clip_grad=0 --set logging.metrics_file=" +
                 path("no_clip.jsonl") + " --set checkpoint.save=" + path("ckpt_no_clip") +
                 " --set checkpoint.load=" + path("ckpt_no_clip"));
  ASSERT_EQ(a.code, 0) << a.out;
  Result b = run("run " + recipe + common + " --set optimizer.clip_grad=1e30 --set logging.metrics_file=" +
                 path("huge_clip.jsonl") + " --set checkpoint.save=" + path("ckpt_huge_clip") +
                 " --set checkpoint.load=" + path("ckpt_huge_clip"));
  ASSERT_EQ(b.code, 0) << b.out;
  EXPECT_EQ(a.out.find("grad norm:"), std::string::npos) << a.out;
  EXPECT_NE(b.out.find("grad norm:"), std::string::npos) << b.out;
  const auto ma = read_metrics(path("no_clip.jsonl")), mb = read_metrics(path("huge_clip.jsonl"));
  ASSERT_EQ(ma.size(), mb.size());
  int train_lines = 0;
  for (size_t i = 0; i < ma.size(); ++i) {
    SCOPED_TRACE(ma[i].dump());
    EXPECT_EQ(ma[i]["lm_loss"].get<double>(), mb[i]["lm_loss"].get<double>());
    if (ma[i]["split"] != "train") continue;
    ++train_lines;
    EXPECT_FALSE(ma[i].contains("grad_norm"));
    EXPECT_GT(mb[i]["grad_norm"].get<double>(), 0.0);
  }
  EXPECT_GE(train_lines, 5);
}

// SIGTERM (a scheduler's pre-emption) saves a checkpoint at the end of the current iteration and
// exits 0; the next run resumes from it.
TEST_F(E2E, SigtermSavesAndResumes) {
  const std::string data = preprocess_bytes();
  const std::string recipe = write_recipe(data);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const int devnull = ::open("/dev/null", O_WRONLY);
    dup2(devnull, 1);
    dup2(devnull, 2);
    execl(kMegahost.c_str(), "megahost", "run", recipe.c_str(), "--set", "training.train_iters=100000",
          "--set", "training.eval_iters=0", static_cast<char*>(nullptr));
    _exit(127);
  }
  // Wait until a few iterations are logged, then pre-empt.
  for (int i = 0; i < 6000 && read_metrics(path("metrics.jsonl")).size() < 3; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_GE(read_metrics(path("metrics.jsonl")).size(), 3u);
  kill(pid, SIGTERM);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status)) << "killed by a signal instead of saving";
  EXPECT_EQ(WEXITSTATUS(status), 0);
  const std::string tracker = read_bytes(path("ckpt/latest_checkpointed_iteration.txt"));
  ASSERT_FALSE(tracker.empty());
  const int saved = std::stoi(tracker);
  EXPECT_GE(saved, 3);
  Result r = run("run " + recipe + " --set training.train_iters=" + std::to_string(saved + 2) +
                 " --set training.eval_iters=0");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("resumed from"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("done at iteration " + std::to_string(saved + 2)), std::string::npos) << r.out;
}

TEST_F(E2E, BadInputsFailCleanly) {
  const std::string data = preprocess_bytes();
  const std::string recipe = write_recipe(data);
  auto expect_error = [](const Result& r, const std::string& needle) {
    EXPECT_FALSE(r.crashed) << r.out;
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_NE(r.out.find(needle), std::string::npos) << "expected '" << needle << "' in:\n" << r.out;
  };
  expect_error(run("run " + path("missing.toml")), "cannot open recipe");
  expect_error(run("run " + recipe + " --set training.tain_iters=3"), "did you mean 'training.train_iters'");
  expect_error(run("run " + recipe + " --set model.num_layers=two"), "must be an integer");
  expect_error(run("run " + recipe + " --set model.hidden_sise=8"), "did you mean 'model.hidden_size'");
  expect_error(run("run " + recipe + " --set tokenizer.plugin=nope"), "no tokenizer plugin 'nope'");
  expect_error(run("run " + recipe + " --set data.data_path=" + path("nothing")), "nothing");

  // Truncated .idx.
  fs::copy_file(data + ".bin", path("trunc_text_document.bin"));
  fs::copy_file(data + ".idx", path("trunc_text_document.idx"));
  fs::resize_file(path("trunc_text_document.idx"), fs::file_size(path("trunc_text_document.idx")) - 5);
  expect_error(run("run " + recipe + " --set data.data_path=" + path("trunc_text_document")), "truncated");

  // Corrupt checkpoint: flip one byte of the stored tensors, then resume from it.
  Result t = run("run " + recipe + " --set training.train_iters=2 --set training.eval_iters=0");
  ASSERT_EQ(t.code, 0) << t.out;
  const fs::path tensors = path("ckpt/iter_0000002/tensors.bin");
  ASSERT_TRUE(fs::exists(tensors));
  {
    std::fstream f(tensors, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(100);
    char c = 0;
    f.read(&c, 1);
    f.seekp(100);
    c = static_cast<char>(c ^ 0x5a);
    f.write(&c, 1);
  }
  expect_error(run("run " + recipe + " --set training.train_iters=4 --set training.eval_iters=0"), "iter_0000002");

  // A tracker that names nothing sensible.
  { std::ofstream(path("ckpt/latest_checkpointed_iteration.txt")) << "garbage"; }
  expect_error(run("run " + recipe + " --set training.train_iters=4"), "corrupt tracker file");

  // Preprocess: invalid JSON names the line, and no partial output is left behind.
  {
    std::ofstream out(path("bad.jsonl"));
    out << "{\"text\": \"fine\"}\n{\"text\": \"also fine\"}\n{\"text\": broken}\n";
  }
  expect_error(run("preprocess --input " + path("bad.jsonl") + " --output-prefix " + path("bad") +
                   " --tokenizer-type byte-level"),
               "bad.jsonl:3");
  EXPECT_FALSE(fs::exists(path("bad_text_document.bin")));
  EXPECT_FALSE(fs::exists(path("bad_text_document.idx")));
  expect_error(run("preprocess --input " + path("none.jsonl") + " --output-prefix " + path("x") +
                   " --tokenizer-type byte-level"),
               "cannot open input");
  Result usage = run("preprocess --output-prefix x");
  EXPECT_EQ(usage.code, 2) << usage.out;
}

// finetune = true (Megatron's --finetune): the weights of `load`, but iteration 0, consumed samples
// 0 and a fresh optimizer; the run then saves its own checkpoints.
TEST_F(E2E, FinetuneLoadsWeightsOnly) {
  const std::string recipe = write_recipe(preprocess_bytes());
  const std::string common = " --set training.eval_iters=0 --set checkpoint.save_interval=1000";
  Result a = run("run " + recipe + common + " --set training.train_iters=30 --set logging.metrics_file=" +
                 path("a.jsonl"));
  ASSERT_EQ(a.code, 0) << a.out;
  Result f = run("run " + recipe + common + " --set training.train_iters=3 --set checkpoint.finetune=true" +
                 " --set checkpoint.save=" + path("ckpt_ft") + " --set logging.metrics_file=" + path("ft.jsonl"));
  ASSERT_EQ(f.code, 0) << f.out;
  EXPECT_NE(f.out.find("finetune: loaded the weights of"), std::string::npos) << f.out;
  double a_first = 0, a_last = 0, ft_first = 0;
  for (const auto& m : read_metrics(path("a.jsonl")))
    if (m["split"] == "train") (m["iteration"] == 1 ? a_first : a_last) = m["lm_loss"];
  std::vector<int64_t> ft_iters;
  for (const auto& m : read_metrics(path("ft.jsonl")))
    if (m["split"] == "train") {
      ft_iters.push_back(m["iteration"]);
      if (m["iteration"] == 1) ft_first = m["lm_loss"];
    }
  EXPECT_EQ(ft_iters, (std::vector<int64_t>{1, 2, 3}));  // starts at iteration 1, not 31
  ASSERT_GT(a_first, a_last + 1.0) << "the trained run must have learned something";
  EXPECT_LT(ft_first, a_last + 0.5) << "finetune starts from the trained weights";
  EXPECT_LT(ft_first, a_first - 1.0) << "not from a fresh initialisation";
  EXPECT_EQ(read_bytes(path("ckpt_ft/latest_checkpointed_iteration.txt")), "3\n");
  EXPECT_TRUE(fs::exists(path("ckpt_ft/iter_0000003")));
  EXPECT_EQ(read_bytes(path("ckpt/latest_checkpointed_iteration.txt")), "30\n");  // the source is untouched
}

TEST_F(E2E, KeepLastNKeepsTheNewest) {
  const std::string recipe = write_recipe(preprocess_bytes());
  Result r = run("run " + recipe + " --set training.train_iters=5 --set training.eval_iters=0" +
                 " --set checkpoint.save_interval=1 --set checkpoint.keep_last_n=2");
  ASSERT_EQ(r.code, 0) << r.out;
  std::vector<std::string> iters;
  for (const auto& e : fs::directory_iterator(path("ckpt")))
    if (e.path().filename().string().rfind("iter_", 0) == 0) iters.push_back(e.path().filename().string());
  std::sort(iters.begin(), iters.end());
  EXPECT_EQ(iters, (std::vector<std::string>{"iter_0000004", "iter_0000005"}));
  EXPECT_EQ(read_bytes(path("ckpt/latest_checkpointed_iteration.txt")), "5\n");
}

// ckpt inspect lists the tensors; ckpt verify passes on a good checkpoint and names the entry
// whose payload has one flipped byte.
TEST_F(E2E, CkptVerifyAndInspect) {
  const std::string recipe = write_recipe(preprocess_bytes());
  Result t = run("run " + recipe + " --set training.train_iters=2 --set training.eval_iters=0");
  ASSERT_EQ(t.code, 0) << t.out;
  Result ok = run("ckpt verify " + path("ckpt"));
  EXPECT_EQ(ok.code, 0) << ok.out;
  EXPECT_NE(ok.out.find("OK"), std::string::npos) << ok.out;

  const json index = json::parse(read_bytes(path("ckpt/iter_0000002/index.json")));
  json victim;
  for (const auto& e : index["entries"])
    if (e["kind"] != "blob" && e["name"].get<std::string>().rfind("model/", 0) == 0 && victim.is_null()) victim = e;
  ASSERT_FALSE(victim.is_null()) << index.dump();
  const std::string name = victim["name"];

  Result ins = run("ckpt inspect " + path("ckpt/iter_0000002"), /*with_stderr=*/false);
  ASSERT_EQ(ins.code, 0) << ins.out;
  EXPECT_NE(ins.out.find(name), std::string::npos) << ins.out;
  EXPECT_NE(ins.out.find("consumed_train_samples"), std::string::npos) << ins.out;
  Result js = run("ckpt inspect --json " + path("ckpt"), /*with_stderr=*/false);
  ASSERT_EQ(js.code, 0) << js.out;
  const json j = json::parse(js.out);
  ASSERT_EQ(j["folders"].size(), 1u);
  EXPECT_EQ(j["folders"][0]["meta"]["iteration"], 2);
  EXPECT_EQ(j["checkpoint_plugin"], "megahost-tensors");
  bool listed = false;
  for (const auto& e : j["folders"][0]["tensors"])
    if (e["name"] == name) listed = e["bytes"] == victim["nbytes"] && e["shape"] == victim["shape"];
  EXPECT_TRUE(listed) << js.out;

  {
    std::fstream f(path("ckpt/iter_0000002/tensors.bin"), std::ios::in | std::ios::out | std::ios::binary);
    const int64_t at = victim["offset"].get<int64_t>() + victim["nbytes"].get<int64_t>() / 2;
    f.seekp(at);
    char c = 0;
    f.read(&c, 1);
    f.seekp(at);
    c = static_cast<char>(c ^ 0x5a);
    f.write(&c, 1);
  }
  Result bad = run("ckpt verify " + path("ckpt"));
  EXPECT_FALSE(bad.crashed) << bad.out;
  EXPECT_EQ(bad.code, 1) << bad.out;
  EXPECT_NE(bad.out.find("entry '" + name + "'"), std::string::npos) << bad.out;
  EXPECT_NE(bad.out.find("iter_0000002"), std::string::npos) << bad.out;
  EXPECT_EQ(bad.out.find("OK"), std::string::npos) << bad.out;

  Result usage = run("ckpt frobnicate " + path("ckpt"));
  EXPECT_EQ(usage.code, 2) << usage.out;
  Result missing = run("ckpt verify " + path("nothing"));
  EXPECT_EQ(missing.code, 1) << missing.out;
}
