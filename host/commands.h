// megahost CLI — one function per subcommand; each parses its own flags (cxxopts).
#pragma once

namespace megahost::host {

int cmd_run(int argc, char** argv);
int cmd_plugins(int argc, char** argv);
int cmd_preprocess(int argc, char** argv);
int cmd_generate(int argc, char** argv);
int cmd_data(int argc, char** argv);
int cmd_ckpt(int argc, char** argv);           // cmd_ckpt.cpp
int cmd_convert(int argc, char** argv);        // cmd_convert.cpp
int cmd_launch(int argc, char** argv);         // cmd_launch.cpp
int cmd_bench(int argc, char** argv);          // cmd_bench.cpp
int cmd_dist_selftest(int argc, char** argv);  // cmd_launch.cpp, hidden: tests of launch

// Exit codes.
constexpr int kExitOk = 0;
constexpr int kExitError = 1;
constexpr int kExitUsage = 2;

}  // namespace megahost::host
