// Tests that drive the `megahost` binary the way a user does: run it from the repository root.
// Needs the MEGAHOST_BINARY_DIR / MEGAHOST_SOURCE_DIR definitions of megahost_add_test.
#pragma once

#include <sys/wait.h>

#include <cstdio>
#include <string>

namespace mhtest {

inline const std::string& megahost_binary() {
  static const std::string path = std::string(MEGAHOST_BINARY_DIR) + "/bin/megahost";
  return path;
}

// Runs a shell command; returns its exit code (-1 when it did not exit) and appends stdout and
// stderr to *out.
inline int run_command(const std::string& cmd, std::string* out) {
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (p == nullptr) return -1;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out->append(buf, n);
  const int status = pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// Runs `megahost ARGS` from the repository root (as run_command).
inline int run_megahost(const std::string& args, std::string* out) {
  return run_command("cd " + std::string(MEGAHOST_SOURCE_DIR) + " && " + megahost_binary() + " " + args, out);
}

// Exit code and combined output of `megahost ARGS` run in the test's current folder.
struct RunResult {
  int code = -1;
  std::string out;
};
inline RunResult run_megahost_here(const std::string& args) {
  RunResult r;
  r.code = run_command(megahost_binary() + " " + args, &r.out);
  return r;
}

}  // namespace mhtest
