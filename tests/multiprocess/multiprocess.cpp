// The multi-process harness (multiprocess.h): fork + exec of this test binary per rank.
#include "multiprocess.h"

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <cstring>
#include <map>
#include <optional>
#include <sstream>
#include <thread>

namespace mp {
namespace {

namespace fs = std::filesystem;

std::string current_test_name() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  return info ? std::string(info->test_suite_name()) + "." + info->name() : std::string();
}

// The parent's folder per test (created on first use).
std::map<std::string, std::string>& parent_dirs() {
  static std::map<std::string, std::string> dirs;
  return dirs;
}

int free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  int port = 0;
  if (fd >= 0 && bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0)
    port = ntohs(addr.sin_port);
  if (fd >= 0) close(fd);
  return port;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exit code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("signal ") + strsignal(WTERMSIG(status));
  return "status " + std::to_string(status);
}

}  // namespace

bool is_worker() {
  const char* v = std::getenv("MH_MP_WORKER");
  return v && std::string(v) == "1";
}

int worker_rank() {
  const char* v = is_worker() ? std::getenv("RANK") : nullptr;
  return v ? std::atoi(v) : 0;
}

std::string shared_dir() {
  if (is_worker()) {
    const char* v = std::getenv("MH_MP_DIR");
    return v ? v : "";
  }
  auto& dirs = parent_dirs();
  const std::string test = current_test_name();
  auto it = dirs.find(test);
  if (it != dirs.end()) return it->second;
  std::string tmpl = (fs::temp_directory_path() / "mh_mp_XXXXXX").string();
  if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mp::shared_dir: mkdtemp failed");
  dirs[test] = tmpl;
  return tmpl;
}

void run_workers(int world, const std::vector<std::pair<std::string, std::string>>& extra_env, int timeout_s) {
  ASSERT_FALSE(is_worker()) << "mp::run_workers is called from the parent only";
#if !__has_include(<gloo/algorithm.h>)
  // A PyTorch-wheel build (the GPU machine) has no gloo headers, so core has no CPU backend.
  GTEST_SKIP() << "no Gloo in this build: multi-process CPU tests run on the Debian build";
#endif
  const std::string test = current_test_name();
  ASSERT_FALSE(test.empty()) << "mp::run_workers must be called from a TEST body";
  const std::string dir = shared_dir();
  const int port = free_port();
  ASSERT_GT(port, 0) << "no free TCP port on 127.0.0.1";

  std::vector<pid_t> pids(world, -1);
  std::vector<std::string> logs(world);
  for (int r = 0; r < world; ++r) {
    logs[r] = dir + "/rank_" + std::to_string(r) + ".log";
    std::vector<std::pair<std::string, std::string>> env = {
        {"RANK", std::to_string(r)},           {"WORLD_SIZE", std::to_string(world)},
        {"LOCAL_RANK", std::to_string(r)},     {"LOCAL_WORLD_SIZE", std::to_string(world)},
        {"MASTER_ADDR", "127.0.0.1"},          {"MASTER_PORT", std::to_string(port)},
        {"MH_MP_WORKER", "1"},                 {"MH_MP_DIR", dir}};
    const pid_t pid = fork();
    ASSERT_GE(pid, 0) << "fork failed";
    if (pid == 0) {
      // Child: only async-signal-safe-ish work until exec (setenv is fine: one thread here).
      for (auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
      for (auto& [k, v] : extra_env) setenv(k.c_str(), v.c_str(), 1);
      setenv("OMP_NUM_THREADS", "1", 0);  // 2-4 ranks on a few shared cores
      setenv("OMP_WAIT_POLICY", "PASSIVE", 0);
      unsetenv("GTEST_OUTPUT");
      std::FILE* out = std::freopen(logs[r].c_str(), "w", stdout);
      if (out == nullptr || dup2(fileno(stdout), STDERR_FILENO) < 0) _exit(126);
      const std::string filter = "--gtest_filter=" + test;
      execl("/proc/self/exe", "test-worker", filter.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    pids[r] = pid;
  }

  // Wait for all; on the first failure give the others a grace period to fail on their own
  // (their own errors are the diagnosis), then stop them.
  using clock = std::chrono::steady_clock;
  const auto deadline = clock::now() + std::chrono::seconds(timeout_s);
  std::optional<clock::time_point> kill_at;
  std::vector<int> status(world, 0);
  std::vector<bool> done(world, false), killed(world, false);
  int remaining = world;
  bool timed_out = false;
  while (remaining > 0) {
    for (int r = 0; r < world; ++r) {
      if (done[r]) continue;
      int st = 0;
      if (waitpid(pids[r], &st, WNOHANG) == pids[r]) {
        done[r] = true;
        status[r] = st;
        --remaining;
        if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0) && !kill_at) kill_at = clock::now() + std::chrono::seconds(10);
      }
    }
    if (remaining == 0) break;
    const auto now = clock::now();
    if (now > deadline || (kill_at && now > *kill_at)) {
      timed_out = timed_out || now > deadline;
      for (int r = 0; r < world; ++r)
        if (!done[r] && !killed[r]) {
          kill(pids[r], SIGKILL);
          killed[r] = true;
        }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // polling the children, not a test wait
  }

  bool all_ok = true;
  std::ostringstream report;
  for (int r = 0; r < world; ++r) {
    const bool ok = WIFEXITED(status[r]) && WEXITSTATUS(status[r]) == 0;
    if (ok) continue;
    all_ok = false;
    report << "---- rank " << r << " of " << world << ": " << describe_status(status[r])
           << (killed[r] ? (timed_out ? " (killed: wall-clock limit " + std::to_string(timeout_s) + " s)"
                                      : " (killed after another rank failed)")
                         : "")
           << "; output (" << logs[r] << "):\n"
           << read_file(logs[r]) << "\n";
  }
  if (all_ok) {
    std::error_code ec;
    fs::remove_all(dir, ec);
    parent_dirs().erase(test);
  }
  EXPECT_TRUE(all_ok) << test << ": worker processes failed\n" << report.str();
}

}  // namespace mp
