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

// Runs `megahost ARGS` from the repository root; returns the exit code (-1 when it did not exit)
// and appends stdout and stderr to *out.
inline int run_megahost(const std::string& args, std::string* out) {
  const std::string cmd = "cd " + std::string(MEGAHOST_SOURCE_DIR) + " && " + megahost_binary() + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return -1;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out->append(buf, n);
  const int status = pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace mhtest
