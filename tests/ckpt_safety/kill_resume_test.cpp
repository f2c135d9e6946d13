// Checkpoints never lose work, driven through the `megahost` binary as a user would:
//  - kill -9 at seeded random moments (saves every iteration, so many kills land inside a save):
//    afterwards `megahost ckpt verify` passes on the tracked checkpoint, and the next run resumes
//    from it with the uninterrupted run's losses; debris of killed saves is cleaned by the next save;
//  - resume falls back to the newest complete checkpoint when the tracker is missing, corrupt or
//    names an incomplete folder, naming what it skipped and why;
//  - async_save writes the very bytes a synchronous save writes (one and two processes), and a
//    write error in the background fails the run naming the checkpoint folder.
// Tiny byte-level GPT on the repository's golden texts (no fetched data needed).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const std::string kMegahost = std::string(MEGAHOST_BINARY_DIR) + "/bin/megahost";
constexpr double kRelTol = 1e-6;  // resumed losses: the same computation, only reloaded

struct Result {
  int code = -1;
  std::string out;
};

// Runs `sh -c "<prefix> megahost <args>"`, collecting stdout + stderr.
Result run(const std::string& args, const std::string& prefix = "") {
  Result r;
  FILE* p = popen((prefix + kMegahost + " " + args + " 2>&1").c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) r.out.append(buf, n);
  const int status = pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// iteration -> train lm loss; a line cut by a kill is skipped.
std::map<int64_t, double> train_losses(const std::string& file) {
  std::map<int64_t, double> out;
  std::ifstream in(file);
  for (std::string line; std::getline(in, line);) {
    const json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_object() && j.value("split", "") == "train") out[j.at("iteration").get<int64_t>()] = j["lm_loss"];
  }
  return out;
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The tracker's iteration, -1 when there is none.
int64_t tracked(const fs::path& save) {
  const fs::path t = save / "latest_checkpointed_iteration.txt";
  return fs::exists(t) ? std::stoll(read_text(t)) : -1;
}

fs::path iter_dir(const fs::path& save, int64_t it) {
  char name[32];
  std::snprintf(name, sizeof(name), "iter_%07lld", static_cast<long long>(it));
  return save / name;
}

// Leftovers of interrupted saves: staging folders and .tmp / .old entries.
std::vector<std::string> debris(const fs::path& save) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(save)) {
    const std::string n = e.path().filename().string();
    if (n.size() > 4 && (n.compare(n.size() - 4, 4, ".tmp") == 0 || n.compare(n.size() - 4, 4, ".old") == 0))
      out.push_back(n);
  }
  return out;
}

class CkptSafety : public ::testing::Test {
 protected:
  static fs::path dir_;
  static std::string recipe_;

  // Once per process (ctest runs each test in its own): corpus and recipe.
  static void SetUpTestSuite() {
    dir_ = fs::temp_directory_path() / ("megahost_ckpt_safety_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    {
      std::ifstream in(std::string(MEGAHOST_TEST_DATA_DIR) + "/golden/gpt2_bpe_ids.jsonl");
      std::ofstream out(dir_ / "corpus.jsonl");
      for (std::string line; std::getline(in, line);) out << json{{"text", json::parse(line)["text"]}}.dump() << "\n";
    }
    const Result pre = run("preprocess --input " + (dir_ / "corpus.jsonl").string() + " --output-prefix " +
                           (dir_ / "corpus").string() + " --tokenizer-type ByteLevelTokenizer --append-eod --workers 1");
    ASSERT_EQ(pre.code, 0) << pre.out;
    // Saves every iteration; the model is large enough (~0.8 M parameters, ~10 MB with Adam's
    // state) that a save takes a good share of each iteration, so random kills land inside saves.
    std::ofstream out(dir_ / "recipe.toml");
    out << "[model]\nplugin = 'gpt'\nnum_layers = 2\nhidden_size = 160\nnum_attention_heads = 4\n"
           "seq_length = 32\nhidden_dropout = 0.1\nattention_dropout = 0.1\n"
           "[tokenizer]\nplugin = 'byte-level'\n"
           "[data]\ndata_path = '" << (dir_ / "corpus_text_document").string() << "'\nsplit = '90,10,0'\n"
           "[optimizer]\nplugin = 'adamw'\nlr = 1e-3\n"
           "[training]\nmicro_batch_size = 2\nglobal_batch_size = 4\ntrain_iters = 60\neval_interval = 1000\n"
           "eval_iters = 0\nseed = 42\ndevice = 'cpu'\nnum_threads = 1\n"
           "[checkpoint]\nsave_interval = 1\nkeep_last_n = 2\n"
           "[logging]\nlog_interval = 1\n";
    out.close();
    recipe_ = (dir_ / "recipe.toml").string();
  }
  static void TearDownTestSuite() {
    if (!::testing::UnitTest::GetInstance()->Failed()) fs::remove_all(dir_);
  }

  // `run` of the recipe saving to and resuming from `save`, metrics to `metrics`.
  static std::string run_args(const fs::path& save, const fs::path& metrics, const std::string& sets = "") {
    return "run " + recipe_ + " --set checkpoint.save=" + save.string() + " --set checkpoint.load=" + save.string() +
           " --set logging.metrics_file=" + metrics.string() + sets;
  }

  // The uninterrupted run's losses (saving nothing).
  static std::map<int64_t, double> reference(const std::string& sets = "") {
    const fs::path m = dir_ / ("reference" + std::to_string(std::hash<std::string>()(sets)) + ".jsonl");
    if (!fs::exists(m)) {
      const Result r = run("run " + recipe_ + " --set logging.metrics_file=" + m.string() + sets);
      EXPECT_EQ(r.code, 0) << r.out;
    }
    return train_losses(m.string());
  }

  static void expect_losses_match(const std::map<int64_t, double>& got, const std::map<int64_t, double>& want,
                                  const std::string& what) {
    for (const auto& [it, loss] : got) {
      ASSERT_TRUE(want.count(it)) << what << ": iteration " << it << " is not in the reference run";
      EXPECT_NEAR(loss, want.at(it), kRelTol * std::abs(want.at(it))) << what << ", iteration " << it;
    }
  }

  // kill -9 at seeded random moments, `kills` times; every kill must leave a verified tracked
  // checkpoint that the next run resumes from with the reference losses.
  static void kill_repeatedly(const std::string& name, int kills, const std::string& sets) {
    const auto want = reference();
    ASSERT_EQ(want.size(), 60u);
    const fs::path save = dir_ / name;
    std::mt19937 rng(20260229);
    // A quarter of the kills at any moment from the start (start-up, data, model, loading); the
    // rest at a random moment once training starts (metrics file opened), where saves take most
    // of the time (a save every iteration), so many land inside a save.
    std::uniform_real_distribution<double> any_moment_s(0.0, 2.0), training_s(0.0, 0.4);
    std::bernoulli_distribution from_start(0.25);
    int killed_with_debris = 0, killed = 0;
    for (int k = 0; k < kills; ++k) {
      const int64_t before = fs::exists(save) ? tracked(save) : -1;
      const fs::path metrics = dir_ / (name + "_" + std::to_string(k) + ".jsonl");
      const std::string cmd = "exec " + kMegahost + " " + run_args(save, metrics, sets) + " >" +
                              (dir_ / (name + "_" + std::to_string(k) + ".log")).string() + " 2>&1";
      const bool early = from_start(rng);
      const double delay = early ? any_moment_s(rng) : training_s(rng);
      const pid_t pid = ::fork();
      ASSERT_GE(pid, 0);
      if (pid == 0) {
        ::execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
        ::_exit(127);
      }
      const auto wait_for = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
          std::chrono::duration<double>(delay));
      auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
      bool waiting_for_training = !early;
      int status = 0;
      bool exited = false;
      if (early) deadline = std::chrono::steady_clock::now() + wait_for;
      while (std::chrono::steady_clock::now() < deadline) {
        if (::waitpid(pid, &status, WNOHANG) == pid) {
          exited = true;
          break;
        }
        if (waiting_for_training && fs::exists(metrics)) {
          waiting_for_training = false;
          deadline = std::chrono::steady_clock::now() + wait_for;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
      if (!exited) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &status, 0);
        ++killed;
      }
      const std::string log = read_text(dir_ / (name + "_" + std::to_string(k) + ".log"));
      if (exited) ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "run " << k << ":\n" << log;
      if (!fs::exists(save)) continue;  // killed before the first save started
      if (!debris(save).empty()) ++killed_with_debris;
      // The tracker names a complete, verified checkpoint.
      const int64_t now = tracked(save);
      if (now >= 0) {
        ASSERT_TRUE(fs::is_directory(iter_dir(save, now))) << "kill " << k << ": tracker names a missing folder";
        const Result v = run("ckpt verify " + save.string());
        ASSERT_EQ(v.code, 0) << "kill " << k << " (tracker " << now << "):\n" << v.out;
        ASSERT_GE(now, before) << "kill " << k << ": the tracked checkpoint went backwards";
      }
      // This run resumed from the checkpoint tracked before it and logged the reference losses.
      const auto got = train_losses(metrics.string());
      if (!got.empty()) {
        EXPECT_EQ(got.begin()->first, std::max<int64_t>(before, 0) + 1) << "kill " << k << ": resumed elsewhere\n" << log;
        expect_losses_match(got, want, name + " run " + std::to_string(k));
      }
    }
    std::cout << name << ": " << killed << " kills, " << killed_with_debris
              << " of them found an interrupted save's leftovers" << std::endl;
    // A last run trains to the end: the reference losses, and no leftovers remain.
    const fs::path metrics = dir_ / (name + "_final.jsonl");
    const Result last = run(run_args(save, metrics, sets));
    ASSERT_EQ(last.code, 0) << last.out;
    expect_losses_match(train_losses(metrics.string()), want, name + " final run");
    EXPECT_EQ(tracked(save), 60);
    EXPECT_EQ(debris(save), std::vector<std::string>{});
    EXPECT_EQ(run("ckpt verify " + save.string()).code, 0);
    int folders = 0;
    for (const auto& e : fs::directory_iterator(save)) folders += e.path().filename().string().rfind("iter_", 0) == 0;
    EXPECT_EQ(folders, 2) << "keep_last_n = 2";
  }
};

fs::path CkptSafety::dir_;
std::string CkptSafety::recipe_;

}  // namespace

TEST_F(CkptSafety, KillNineAtRandomMomentsLeavesATrackedCheckpointAndResumesExactly) {
  kill_repeatedly("sync", 12, "");
}

TEST_F(CkptSafety, KillNineDuringAsyncSavesLeavesTheLastPublishedCheckpoint) {
  kill_repeatedly("async", 6, " --set checkpoint.async_save=true");
}

// Iterations 1..3 saved (of train_iters 60, exit at 3); then each case damages a copy and resumes.
TEST_F(CkptSafety, ResumeFallsBackToTheNewestCompleteCheckpoint) {
  const auto want = reference();
  const fs::path base = dir_ / "fallback_base";
  Result r = run(run_args(base, dir_ / "fallback_base.jsonl",
                          " --set training.exit_interval=3 --set checkpoint.keep_last_n=0"));
  ASSERT_EQ(r.code, 0) << r.out;
  ASSERT_EQ(tracked(base), 3);
  ASSERT_TRUE(fs::is_directory(iter_dir(base, 2)));
  // Resumes a damaged copy for one iteration past the checkpoint it should pick; returns the output.
  auto resume = [&](const std::string& name, const std::function<void(const fs::path&)>& damage, int64_t expect_from) {
    const fs::path save = dir_ / name;
    fs::copy(base, save, fs::copy_options::recursive);
    damage(save);
    const fs::path m = dir_ / (name + ".jsonl");
    const Result res = run(run_args(save, m, " --set checkpoint.keep_last_n=0 --set training.exit_interval=" +
                                                 std::to_string(expect_from + 1)));
    EXPECT_EQ(res.code, 0) << name << ":\n" << res.out;
    const auto got = train_losses(m.string());
    EXPECT_EQ(got.size(), 1u) << name << ":\n" << res.out;
    if (!got.empty()) EXPECT_EQ(got.begin()->first, expect_from + 1) << name << ":\n" << res.out;
    expect_losses_match(got, want, name);
    return res.out;
  };
  auto has = [](const std::string& out, const std::string& what) { return out.find(what) != std::string::npos; };

  // The tracker's folder lost its index (a save that never committed): iteration 2 is used.
  std::string out = resume("no_index", [](const fs::path& s) { fs::remove(iter_dir(s, 3) / "index.json"); }, 2);
  EXPECT_TRUE(has(out, "iter_0000003 (named by the tracker)") && has(out, "index.json")) << out;
  EXPECT_TRUE(has(out, "iter_0000002, the newest complete checkpoint")) << out;
  // A truncated data file.
  out = resume("truncated", [](const fs::path& s) { fs::resize_file(iter_dir(s, 3) / "tensors.bin", 1000); }, 2);
  EXPECT_TRUE(has(out, "truncated")) << out;
  // No tracker: the newest complete folder, iteration 3.
  out = resume("no_tracker", [](const fs::path& s) { fs::remove(s / "latest_checkpointed_iteration.txt"); }, 3);
  EXPECT_TRUE(has(out, "latest_checkpointed_iteration.txt: missing")) << out;
  // The tracker names a folder that does not exist (pruned or deleted by hand).
  out = resume("tracker_ahead", [](const fs::path& s) {
    std::ofstream(s / "latest_checkpointed_iteration.txt") << "7\n";
  }, 3);
  EXPECT_TRUE(has(out, "iter_0000007 (named by the tracker): the folder is missing")) << out;
  // A tracker naming an older complete folder is the user's choice: it is honoured.
  resume("tracker_older", [](const fs::path& s) { std::ofstream(s / "latest_checkpointed_iteration.txt") << "1\n"; },
         1);
  // Nothing complete: the run refuses, naming every folder and why (never starts afresh silently).
  const fs::path none = dir_ / "none_complete";
  fs::copy(base, none, fs::copy_options::recursive);
  for (int it = 1; it <= 3; ++it) fs::remove(iter_dir(none, it) / "index.json");
  r = run(run_args(none, dir_ / "none_complete.jsonl"));
  EXPECT_NE(r.code, 0) << r.out;
  EXPECT_TRUE(has(r.out, "no complete checkpoint to resume from") && has(r.out, "iter_0000001")) << r.out;
  // A tracker that does not parse was written by hand (saves replace it atomically): an error.
  std::ofstream(none / "latest_checkpointed_iteration.txt") << "x\n";
  r = run(run_args(none, dir_ / "none_complete.jsonl"));
  EXPECT_NE(r.code, 0) << r.out;
  EXPECT_TRUE(has(r.out, "corrupt tracker file")) << r.out;
}

// keep_last_n holds from the start of a run, not only after its first save: a run killed between
// publishing a checkpoint and pruning the older ones left one too many, and a run resumed at
// train_iters saves nothing. The checkpoint a run resumed from is never pruned, even where a
// damaged newer folder pushed it out of the newest keep_last_n.
TEST_F(CkptSafety, KeepLastNHoldsFromTheStartOfARun) {
  const fs::path save = dir_ / "prune_at_start";
  const std::string four = " --set training.train_iters=4";
  Result r = run(run_args(save, dir_ / "prune_0.jsonl", four + " --set checkpoint.keep_last_n=0"));
  ASSERT_EQ(r.code, 0) << r.out;
  for (int it = 1; it <= 4; ++it) ASSERT_TRUE(fs::is_directory(iter_dir(save, it))) << it;
  const fs::path copy = dir_ / "prune_at_start_copy";
  fs::copy(save, copy, fs::copy_options::recursive);

  r = run(run_args(save, dir_ / "prune_1.jsonl", four));  // nothing left to train
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_FALSE(fs::exists(iter_dir(save, 1)));
  EXPECT_FALSE(fs::exists(iter_dir(save, 2)));
  EXPECT_TRUE(fs::is_directory(iter_dir(save, 3)));
  EXPECT_TRUE(fs::is_directory(iter_dir(save, 4)));
  EXPECT_EQ(tracked(save), 4);

  // 3 and 4 damaged: the run resumes from 2, which the newest two (3, 4) would push out.
  for (int it = 3; it <= 4; ++it) fs::remove(iter_dir(copy, it) / "index.json");
  r = run(run_args(copy, dir_ / "prune_2.jsonl", " --set training.train_iters=2"));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("iter_0000002, the newest complete checkpoint"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(iter_dir(copy, 1)));
  EXPECT_TRUE(fs::is_directory(iter_dir(copy, 2)));
}

// async_save writes byte for byte what a synchronous save writes, and the losses are unchanged.
TEST_F(CkptSafety, AsyncSaveWritesTheSameCheckpointsAsSyncSave) {
  const std::string sets = " --set training.train_iters=3 --set checkpoint.keep_last_n=0";
  const fs::path sync = dir_ / "same_sync", async = dir_ / "same_async";
  Result r = run(run_args(sync, dir_ / "same_sync.jsonl", sets));
  ASSERT_EQ(r.code, 0) << r.out;
  r = run(run_args(async, dir_ / "same_async.jsonl", sets + " --set checkpoint.async_save=true"));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("in the background"), std::string::npos) << r.out;
  EXPECT_EQ(train_losses((dir_ / "same_async.jsonl").string()), train_losses((dir_ / "same_sync.jsonl").string()));
  EXPECT_EQ(tracked(async), 3);
  EXPECT_EQ(run("ckpt verify " + async.string()).code, 0);
  for (int it = 1; it <= 3; ++it)
    for (const char* f : {"index.json", "tensors.bin"})
      EXPECT_TRUE(read_text(iter_dir(async, it) / f) == read_text(iter_dir(sync, it) / f))
          << "iteration " << it << ": " << f << " differs";
}

// A write error in the background (file size limit: EFBIG on tensors.bin) fails the run at the
// next wait, naming the checkpoint folder; nothing is published.
TEST_F(CkptSafety, AsyncSaveWriteErrorFailsTheRunNamingTheFolder) {
  const fs::path save = dir_ / "write_error";
  fs::create_directories(save);
  // dash counts ulimit -f in 512-byte blocks: 128 KiB, far below one checkpoint (~10 MB).
  const Result r = run(run_args(save, dir_ / "write_error.jsonl",
                                " --set training.train_iters=3 --set checkpoint.async_save=true"),
                       "trap '' XFSZ; ulimit -f 256; ");
  EXPECT_NE(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("asynchronous save of iteration 1 failed"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("iter_0000001"), std::string::npos) << r.out;
  EXPECT_EQ(tracked(save), -1);
}

#ifdef MH_CKPT_SAFETY_MULTIPROCESS
// Two processes (data parallel, distributed optimizer: every rank writes its own shard): async
// rank folders equal the sync ones byte for byte, and a resume from them continues exactly.
TEST_F(CkptSafety, AsyncSaveTwoProcessesEqualsSyncSave) {
  const std::string sets = " --set training.train_iters=3 --set checkpoint.keep_last_n=0"
                           " --set parallel.use_distributed_optimizer=true";
  const fs::path sync = dir_ / "mp_sync", async = dir_ / "mp_async";
  Result r = run("launch --nproc-per-node 2 -- " + run_args(sync, dir_ / "mp_sync.jsonl", sets));
  ASSERT_EQ(r.code, 0) << r.out;
  r = run("launch --nproc-per-node 2 -- " +
          run_args(async, dir_ / "mp_async.jsonl", sets + " --set checkpoint.async_save=true"));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(tracked(async), 3);
  const Result v = run("ckpt verify " + async.string());
  EXPECT_EQ(v.code, 0) << v.out;
  for (int it = 1; it <= 3; ++it)
    for (const char* rank : {"rank_00000", "rank_00001"})
      for (const char* f : {"index.json", "tensors.bin"})
        EXPECT_TRUE(read_text(iter_dir(async, it) / rank / f) == read_text(iter_dir(sync, it) / rank / f))
            << "iteration " << it << " " << rank << ": " << f << " differs";
  EXPECT_EQ(train_losses((dir_ / "mp_async.jsonl").string()), train_losses((dir_ / "mp_sync.jsonl").string()));
}
#endif
