// The `megahost` executable: a launcher that links nothing of libtorch. It sets the process-wide
// settings that libraries read when they are loaded, then loads the CLI (libmegahost_cli.so, which
// brings libtorch and its OpenMP runtime) and hands it argc/argv.
//
// It also keeps glibc's malloc from handing large blocks back to the kernel
// (megahost/core/malloc_policy.h).
//
// Why a launcher: libgomp reads OMP_WAIT_POLICY once, when it is loaded. The executable used to
// set the policy and execute itself again, which loaded and initialised libtorch twice: ~0.8 s of
// every command's start on the CI machine (`megahost --version` took 1.3 s). Loading the CLI after
// setenv() reads the policy once and pays the load once.
#include <dlfcn.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "megahost/core/malloc_policy.h"

#ifndef MEGAHOST_CLI_RELATIVE_PATH
#error "MEGAHOST_CLI_RELATIVE_PATH (from the executable's folder to libmegahost_cli.so) is set by host/CMakeLists.txt"
#endif

namespace {

constexpr int kExitLaunchFailed = 127;  // as a shell reports a command it could not start

// Folder of this executable (resolved through symlinks), or "" when /proc is unavailable.
std::string executable_dir() {
  char buf[PATH_MAX];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return "";
  buf[n] = '\0';
  std::string path(buf);
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? std::string(".") : path.substr(0, slash);
}

}  // namespace

int main(int argc, char** argv) {
  // libtorch's OpenMP threads spin-wait by default; on a shared or oversubscribed CPU that made a
  // tiny GPT ~100x slower (docs/performance.md). A policy the user chose is kept.
  setenv("OMP_WAIT_POLICY", "PASSIVE", /*overwrite=*/0);
  megahost::core::keep_freed_memory_in_the_heap();

  const std::string dir = executable_dir();
  if (dir.empty()) {
    std::fprintf(stderr, "megahost: cannot read /proc/self/exe (%s); the launcher needs /proc to find "
                 "its CLI library\n", std::strerror(errno));
    return kExitLaunchFailed;
  }
  const std::string cli = dir + "/" + MEGAHOST_CLI_RELATIVE_PATH;
  // RTLD_LOCAL: the CLI's symbols stay out of the global scope, as they were when the CLI was the
  // executable, so plugins loaded later bind their own copies of inline code.
  void* handle = dlopen(cli.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    std::fprintf(stderr, "megahost: cannot load %s: %s\n  hint: the executable and its CLI library "
                 "are installed together (cmake --install); a moved executable alone cannot run\n",
                 cli.c_str(), dlerror());
    return kExitLaunchFailed;
  }
  using CliMain = int (*)(int, char**);
  auto cli_main = reinterpret_cast<CliMain>(dlsym(handle, "megahost_cli_main"));
  if (cli_main == nullptr) {
    std::fprintf(stderr, "megahost: %s has no megahost_cli_main: %s\n  hint: it is from another "
                 "build; rebuild or reinstall megahost\n", cli.c_str(), dlerror());
    return kExitLaunchFailed;
  }
  return cli_main(argc, argv);
}
