// The CLI over core (libmegahost_cli.so; the `megahost` executable is the launcher in
// host/launcher/, which sets the OpenMP policy and calls megahost_cli_main).
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>


#include <cstdio>
#include <cstring>
#include <string>

#include "commands.h"
#include "megahost/mh_version.h"

namespace {

constexpr const char* kUsage =
    "megahost — Megatron-LM rebuilt as a C++ host with plugins\n"
    "\n"
    "usage: megahost <command> [options]\n"
    "\n"
    "commands:\n"
    "  run RECIPE [--set section.key=value]...   train as the recipe says (resumes from checkpoint.load)\n"
    "  preprocess --input F --output-prefix P ...  JSON lines -> Megatron .bin/.idx (same flags as\n"
    "                                              Megatron's tools/preprocess_data.py)\n"
    "  generate RECIPE --prompt TEXT               greedy continuation from the latest checkpoint\n"
    "  data inspect PREFIX [--sample I ...]        counts, dtype, length histogram of a .bin/.idx dataset;\n"
    "                                              sequence, document or GPT sample i decoded\n"
    "  ckpt verify|inspect DIR [--json]          read every tensor and check checksums; list metadata\n"
    "                                              and tensors of a checkpoint (save folder or iter_*)\n"
    "  convert --model-type GPT --loader hf|megahost --saver megahost|hf --load-dir A --save-dir B\n"
    "                                              Hugging Face safetensors <-> megahost (GPT-2, Llama,\n"
    "                                              Mistral), as Megatron's tools/checkpoint/convert.py\n"
    "  bench RECIPE [--warmup N] [--iters N] [--json F] [--profile]\n"
    "                                              train briefly as `run` does: ms/iteration, tokens/s,\n"
    "                                              TFLOP/s per GPU, MFU, peak memory\n"
    "  plugins [--json]                            list plugins found, and libraries refused and why\n"
  "  launch --nproc-per-node N -- <command...>   run N local ranks of megahost (torchrun's environment)\n"
    "\n"
    "  megahost <command> --help    options of a command\n"
    "  megahost --version           version and ABI version\n";

}  // namespace

extern "C" __attribute__((visibility("default"))) int megahost_cli_main(int argc, char** argv) {
  using namespace megahost::host;
  // Diagnostics go to stderr; stdout carries the results (log lines, generated text, JSON).
  spdlog::set_default_logger(spdlog::stderr_color_mt("megahost"));
  spdlog::set_pattern("[%Y-%m-%d %H:%M:%S] [%^%l%$] %v");
  if (argc < 2 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0 ||
      std::strcmp(argv[1], "help") == 0) {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? kExitUsage : kExitOk;
  }
  const std::string cmd = argv[1];
  if (cmd == "--version" || cmd == "version") {
    std::printf("megahost %s (plugin ABI %d.%d)\n", MEGAHOST_VERSION, MH_ABI_VERSION_MAJOR, MH_ABI_VERSION_MINOR);
    return kExitOk;
  }
  // Each subcommand sees argv from its own name on.
  if (cmd == "run") return cmd_run(argc - 1, argv + 1);
  if (cmd == "plugins") return cmd_plugins(argc - 1, argv + 1);
  if (cmd == "preprocess") return cmd_preprocess(argc - 1, argv + 1);
  if (cmd == "generate") return cmd_generate(argc - 1, argv + 1);
  if (cmd == "data") return cmd_data(argc - 1, argv + 1);
  if (cmd == "ckpt") return cmd_ckpt(argc - 1, argv + 1);
  if (cmd == "convert") return cmd_convert(argc - 1, argv + 1);
  if (cmd == "launch") return cmd_launch(argc - 1, argv + 1);
  if (cmd == "bench") return cmd_bench(argc - 1, argv + 1);
  if (cmd == "_dist-selftest") return cmd_dist_selftest(argc - 1, argv + 1);  // hidden: launch tests
  std::fprintf(stderr, "megahost: unknown command '%s'\n\n%s", cmd.c_str(), kUsage);
  return kExitUsage;
}
