// `megahost launch`: ranks get torchrun's environment and join one world; a failing rank stops
// the others and is named. Uses the hidden test command `megahost _dist-selftest` (cmd_launch.cpp).
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>

namespace {

struct Result {
  int exit_code = -1;
  std::string output;  // stdout + stderr
};

// Runs megahost with `args` (and environment assignments `env`, e.g. "RANK=1 WORLD_SIZE=2").
Result run(const std::string& args, const std::string& env = "") {
  const std::string cmd = env + " " + std::string(MEGAHOST_BINARY_DIR) + "/bin/megahost " + args + " 2>&1";
  Result r;
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.output.append(buf.data(), n);
  const int st = pclose(p);
  r.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return r;
}

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// The self-test all-reduces on the CPU: it needs Gloo, which a PyTorch-wheel build lacks.
#if __has_include(<gloo/algorithm.h>)
#define SKIP_WITHOUT_GLOO()
#else
#define SKIP_WITHOUT_GLOO() GTEST_SKIP() << "no Gloo in this build (PyTorch wheel): CPU ranks cannot meet"
#endif

}  // namespace

TEST(Launch, GoodRunReturnsZeroAndPrefixesOtherRanks) {
  SKIP_WITHOUT_GLOO();
  const Result r = run("launch --nproc-per-node 3 -- _dist-selftest");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(has(r.output, "rank 0 of 3 (torchrun): all_reduce ok (sum 6)")) << r.output;
  EXPECT_TRUE(has(r.output, "[rank 1] rank 1 of 3 (torchrun): all_reduce ok")) << r.output;
  EXPECT_TRUE(has(r.output, "[rank 2] rank 2 of 3 (torchrun): all_reduce ok")) << r.output;
  EXPECT_FALSE(has(r.output, "[rank 0]")) << r.output;
}

TEST(Launch, FailingRankStopsTheOthersAndIsNamed) {
  SKIP_WITHOUT_GLOO();
  // Ranks 0 and 2 wait forever after the all-reduce: only the launcher can end them.
  const Result r = run("launch --nproc-per-node 3 --grace-seconds 5 -- _dist-selftest --fail-rank 1 --exit-code 3");
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_TRUE(has(r.output, "megahost launch: rank 1 (pid ")) << r.output;
  EXPECT_TRUE(has(r.output, "exited with code 3; stopping the other ranks")) << r.output;
  EXPECT_TRUE(has(r.output, "failed: rank 1 exited with code 3")) << r.output;
}

TEST(Launch, UsageErrors) {
  const Result none = run("launch --nproc-per-node 2");
  EXPECT_NE(none.exit_code, 0);
  EXPECT_TRUE(has(none.output, "no command after '--'")) << none.output;
  const Result missing = run("launch -- _dist-selftest");
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_TRUE(has(missing.output, "--nproc-per-node is required")) << missing.output;
}

TEST(Launch, BadWorldEnvironmentIsNamed) {
  const Result r = run("_dist-selftest");
  EXPECT_EQ(r.exit_code, 0) << r.output;  // no environment: a single process
  EXPECT_TRUE(has(r.output, "rank 0 of 1 (single)")) << r.output;
  const Result bad = run("_dist-selftest", "RANK=x WORLD_SIZE=2");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_TRUE(has(bad.output, "environment variable RANK='x'")) << bad.output;
}
