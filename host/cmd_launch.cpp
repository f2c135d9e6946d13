// megahost launch --nproc-per-node N [--master-addr A] [--master-port P] -- <megahost args...>
//
// Starts N local ranks of this megahost executable with torchrun's environment (RANK,
// WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT); each rank then calls
// read_world_env() exactly as under `torchrun --no-python`.
//  - Output: rank 0's stdout/stderr pass through untouched; other ranks' lines are prefixed
//    "[rank k] " (same stream), so a one-rank log reads like a single-process run.
//  - SIGINT/SIGTERM are forwarded to every rank.
//  - When a rank fails (non-zero exit or a signal) the others get SIGTERM, then SIGKILL after
//    --grace-seconds; the launcher names the failed rank and why and exits with its exit code
//    (128 + signal for a signal).
//
// Hidden, for tests only: `megahost _dist-selftest [--fail-rank K] [--exit-code C]` joins the
// world from the environment, all-reduces (rank + 1) over "world" and checks the sum; rank K
// then exits with code C while the other ranks wait until they are stopped.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <ATen/ATen.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "commands.h"
#include "common.h"
#include "megahost/core/error.h"
#include "megahost/core/parallel/world.h"

namespace megahost::host {
namespace {

int g_signal_pipe[2] = {-1, -1};

void on_signal(int sig) {
  const int saved = errno;
  const unsigned char b = static_cast<unsigned char>(sig);
  [[maybe_unused]] ssize_t n = write(g_signal_pipe[1], &b, 1);
  errno = saved;
}

int free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  socklen_t len = sizeof(addr);
  int port = 0;
  if (fd >= 0 && bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0)
    port = ntohs(addr.sin_port);
  if (fd >= 0) close(fd);
  MH_CORE_CHECK(port > 0, "launch: found no free TCP port. HINT: pass --master-port");
  return port;
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return core::cat("exited with code ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return core::cat("was killed by signal ", WTERMSIG(status), " (", strsignal(WTERMSIG(status)), ")");
  return core::cat("ended with status ", status);
}

// One rank's piped stream (ranks > 0): complete lines are written with the prefix.
struct PrefixedStream {
  int fd = -1;
  FILE* to = nullptr;
  std::string prefix, pending;

  void flush_lines(bool all) {
    size_t start = 0, nl;
    while ((nl = pending.find('\n', start)) != std::string::npos) {
      std::fprintf(to, "%s%.*s\n", prefix.c_str(), static_cast<int>(nl - start), pending.data() + start);
      start = nl + 1;
    }
    pending.erase(0, start);
    if (all && !pending.empty()) {
      std::fprintf(to, "%s%s\n", prefix.c_str(), pending.c_str());
      pending.clear();
    }
    std::fflush(to);
  }
  // Reads what is there; false at end of stream.
  bool pump() {
    char buf[4096];
    const ssize_t n = read(fd, buf, sizeof(buf));
    if (n > 0) {
      pending.append(buf, static_cast<size_t>(n));
      flush_lines(false);
      return true;
    }
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) return true;
    flush_lines(true);
    close(fd);
    fd = -1;
    return false;
  }
};

struct Rank {
  pid_t pid = -1;
  bool running = false;
  int status = 0;
};

struct LaunchConfig {
  int nproc = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 0;
  int grace_seconds = 10;
  std::vector<std::string> args;  // the megahost command line of every rank
};

pid_t spawn_rank(const LaunchConfig& cfg, int rank, int out_fd, int err_fd) {
  const pid_t pid = fork();
  MH_CORE_CHECK(pid >= 0, "launch: fork failed for rank ", rank, ": ", std::strerror(errno));
  if (pid != 0) return pid;
  // Child.
  prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive a launcher that was killed
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  signal(SIGCHLD, SIG_DFL);
  setenv("RANK", std::to_string(rank).c_str(), 1);
  setenv("WORLD_SIZE", std::to_string(cfg.nproc).c_str(), 1);
  setenv("LOCAL_RANK", std::to_string(rank).c_str(), 1);
  setenv("LOCAL_WORLD_SIZE", std::to_string(cfg.nproc).c_str(), 1);
  setenv("MASTER_ADDR", cfg.master_addr.c_str(), 1);
  setenv("MASTER_PORT", std::to_string(cfg.master_port).c_str(), 1);
  unsetenv("TORCHELASTIC_USE_AGENT_STORE");  // rank 0 hosts the store, even when we run under torchrun
  if (out_fd >= 0) dup2(out_fd, STDOUT_FILENO);
  if (err_fd >= 0) dup2(err_fd, STDERR_FILENO);
  std::vector<char*> argv;
  static char name[] = "megahost";
  argv.push_back(name);
  for (const auto& a : cfg.args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  execv("/proc/self/exe", argv.data());
  std::fprintf(stderr, "megahost launch: rank %d: exec failed: %s\n", rank, std::strerror(errno));
  _exit(127);
}

int run_launch(const LaunchConfig& cfg) {
  MH_CORE_CHECK(pipe2(g_signal_pipe, O_CLOEXEC | O_NONBLOCK) == 0, "launch: pipe failed: ", std::strerror(errno));
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGCHLD, &sa, nullptr);

  std::vector<Rank> ranks(cfg.nproc);
  std::vector<PrefixedStream> streams;
  std::fflush(stdout);
  std::fflush(stderr);
  for (int r = 0; r < cfg.nproc; ++r) {
    int out[2] = {-1, -1}, err[2] = {-1, -1};
    if (r > 0) {
      MH_CORE_CHECK(pipe2(out, O_CLOEXEC) == 0 && pipe2(err, O_CLOEXEC) == 0, "launch: pipe failed: ", std::strerror(errno));
    }
    ranks[r].pid = spawn_rank(cfg, r, out[1], err[1]);
    ranks[r].running = true;
    if (r > 0) {
      close(out[1]);
      close(err[1]);
      const std::string prefix = core::cat("[rank ", r, "] ");
      streams.push_back(PrefixedStream{out[0], stdout, prefix, {}});
      streams.push_back(PrefixedStream{err[0], stderr, prefix, {}});
    }
  }

  using clock = std::chrono::steady_clock;
  int running = cfg.nproc, first_failed = -1, forwarded_signal = 0;
  bool kill_sent = false;
  clock::time_point kill_at{};
  auto stop_others = [&](int sig) {
    for (auto& rk : ranks)
      if (rk.running) kill(rk.pid, sig);
  };

  while (running > 0 || std::any_of(streams.begin(), streams.end(), [](auto& s) { return s.fd >= 0; })) {
    std::vector<pollfd> fds{{g_signal_pipe[0], POLLIN, 0}};
    std::vector<PrefixedStream*> polled;
    for (auto& s : streams)
      if (s.fd >= 0) {
        fds.push_back({s.fd, POLLIN, 0});
        polled.push_back(&s);
      }
    int wait_ms = -1;
    if (first_failed >= 0 && !kill_sent && running > 0)
      wait_ms = static_cast<int>(std::max<int64_t>(
          0, std::chrono::duration_cast<std::chrono::milliseconds>(kill_at - clock::now()).count()));
    if (running == 0) wait_ms = 1000;  // only draining the output of exited ranks now
    const int n = poll(fds.data(), fds.size(), wait_ms);
    if (n < 0 && errno != EINTR) break;
    if (n == 0 && running == 0) break;  // a rank's child process keeps a pipe open: give up on it

    for (size_t i = 1; i < fds.size(); ++i)
      if (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) polled[i - 1]->pump();

    unsigned char sigs[64];
    ssize_t got;
    while ((got = read(g_signal_pipe[0], sigs, sizeof(sigs))) > 0)
      for (ssize_t i = 0; i < got; ++i)
        if (sigs[i] == SIGINT || sigs[i] == SIGTERM) {
          forwarded_signal = sigs[i];
          stop_others(sigs[i]);
        }

    // Reap.
    for (int r = 0; r < cfg.nproc; ++r) {
      if (!ranks[r].running) continue;
      int st = 0;
      if (waitpid(ranks[r].pid, &st, WNOHANG) != ranks[r].pid) continue;
      ranks[r].running = false;
      ranks[r].status = st;
      --running;
      const bool ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
      if (!ok && first_failed < 0 && forwarded_signal == 0) {
        first_failed = r;
        std::fprintf(stderr, "megahost launch: rank %d (pid %d) %s; stopping the other ranks\n", r, ranks[r].pid,
                     describe_status(st).c_str());
        stop_others(SIGTERM);
        kill_at = clock::now() + std::chrono::seconds(cfg.grace_seconds);
      }
    }
    if (first_failed >= 0 && !kill_sent && running > 0 && clock::now() >= kill_at) {
      stop_others(SIGKILL);
      kill_sent = true;
    }
  }

  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  signal(SIGCHLD, SIG_DFL);
  if (first_failed < 0 && forwarded_signal != 0) {
    std::fprintf(stderr, "megahost launch: stopped by signal %d (%s), forwarded to every rank\n", forwarded_signal,
                 strsignal(forwarded_signal));
    return 128 + forwarded_signal;
  }
  if (first_failed < 0) return kExitOk;
  const int st = ranks[first_failed].status;
  std::fprintf(stderr, "megahost launch: failed: rank %d %s (first failure of %d ranks)\n", first_failed,
               describe_status(st).c_str(), cfg.nproc);
  if (WIFEXITED(st)) return WEXITSTATUS(st);
  return WIFSIGNALED(st) ? 128 + WTERMSIG(st) : kExitError;
}

}  // namespace

int cmd_launch(int argc, char** argv) {
  int sep = 1;
  while (sep < argc && std::strcmp(argv[sep], "--") != 0) ++sep;
  cxxopts::Options options("megahost launch",
                           "Start N local ranks of megahost with torchrun's environment.\n"
                           "usage: megahost launch --nproc-per-node N [options] -- <megahost command...>");
  options.add_options()("nproc-per-node", "ranks to start", cxxopts::value<int>())(
      "master-addr", "MASTER_ADDR of the ranks", cxxopts::value<std::string>()->default_value("127.0.0.1"))(
      "master-port", "MASTER_PORT of the ranks (default: a free port)", cxxopts::value<int>()->default_value("0"))(
      "grace-seconds", "after a rank fails: seconds between SIGTERM and SIGKILL of the others",
      cxxopts::value<int>()->default_value("10"))("h,help", "show this help");
  cxxopts::ParseResult args;
  int code = 0;
  if (!parse_flags(options, sep, argv, args, code)) return code;
  return guarded("launch", [&] {
    LaunchConfig cfg;
    MH_CORE_CHECK(args.count("nproc-per-node") != 0, "launch: --nproc-per-node is required. HINT: e.g. "
                  "megahost launch --nproc-per-node 2 -- run recipe.toml");
    cfg.nproc = args["nproc-per-node"].as<int>();
    MH_CORE_CHECK(cfg.nproc >= 1 && cfg.nproc <= 1024, "launch: --nproc-per-node ", cfg.nproc,
                  " is out of range. HINT: 1 .. 1024");
    cfg.master_addr = args["master-addr"].as<std::string>();
    cfg.master_port = args["master-port"].as<int>();
    if (cfg.master_port == 0) cfg.master_port = free_port();
    cfg.grace_seconds = std::max(0, args["grace-seconds"].as<int>());
    for (int i = sep + 1; i < argc; ++i) cfg.args.emplace_back(argv[i]);
    MH_CORE_CHECK(!cfg.args.empty(), "launch: no command after '--'. HINT: megahost launch --nproc-per-node 2 -- "
                  "run recipe.toml");
    return run_launch(cfg);
  });
}

int cmd_dist_selftest(int argc, char** argv) {
  int fail_rank = -1, exit_code = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--fail-rank") == 0) fail_rank = std::atoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--exit-code") == 0) exit_code = std::atoi(argv[i + 1]);
  }
  return guarded("_dist-selftest", [&] {
    auto& rt = core::ParallelRuntime::get();
    const core::WorldEnv env = core::read_world_env();
    core::ParallelSizes sizes;
    sizes.world = env.world_size;
    rt.init(env, sizes, /*use_cuda=*/false, std::chrono::seconds(60));
    at::Tensor t = at::full({1}, static_cast<double>(env.rank + 1), at::kDouble);
    rt.group("world").all_reduce(t);
    const double want = env.world_size * (env.world_size + 1) / 2.0;
    MH_CORE_CHECK(t.item<double>() == want, "_dist-selftest: all_reduce gave ", t.item<double>(), ", want ", want);
    std::printf("rank %d of %d (%s): all_reduce ok (sum %g)\n", env.rank, env.world_size, env.source.c_str(), want);
    std::fflush(stdout);
    if (env.rank == fail_rank) {
      std::fprintf(stderr, "rank %d: exiting with code %d as asked\n", env.rank, exit_code);
      std::fflush(stderr);
      std::_Exit(exit_code);
    }
    if (fail_rank >= 0)
      for (;;) pause();  // wait to be stopped by the launcher
    rt.group("world").barrier();
    rt.shutdown();
    return kExitOk;
  });
}

}  // namespace megahost::host
