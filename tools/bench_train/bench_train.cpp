// megahost-bench-train — trains a recipe exactly as `megahost run` does (core::train: data,
// plugins, clipping, optimizer, logging) and reports its steady-state speed the way
// /work/shared/bench/gpt_baseline.py does: ms/iter (mean after warm-up), tokens/s, TFLOP/s
// (FORMATS.md §5, padded vocabulary, as the engine counts), MFU against a peak, and on CUDA the
// caching allocator's peak memory (= torch.cuda.max_memory_allocated()).
//
//   megahost-bench-train RECIPE [--set section.key=value]... [--warmup=5] [--peak-tflops=989]
//                        [--label=NAME] [--tf32]
//
// --tf32 lets cuBLAS run float32 matrix products on TF32 tensor cores (at::Context's
// float32 matmul precision "high"); megahost's default is full fp32.
// Forces logging.log_interval = 1 and writes the per-iteration figures to
// runs/bench_train/<label>.metrics.jsonl (replaced each run).
#include <ATen/Context.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "megahost/core/engine/trainer.h"
#include "megahost/core/plugins.h"
#include "megahost/core/recipe.h"

#if defined(MH_BENCH_WITH_CUDA)
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#endif

namespace core = megahost::core;

namespace {

struct Args {
  std::string recipe, label = "bench", peak_tflops = "989";
  std::vector<std::string> overrides;
  int warmup = 5;
  bool tf32 = false;
};

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr,
               "megahost-bench-train: %s\nusage: megahost-bench-train RECIPE [--set section.key=value]... "
               "[--warmup=5] [--peak-tflops=989] [--label=NAME] [--tf32]\n",
               why.c_str());
  std::exit(2);
}

Args parse_args(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string s = argv[i];
    auto value = [&](const std::string& flag) -> std::string {
      if (s.rfind(flag + "=", 0) == 0) return s.substr(flag.size() + 1);
      if (i + 1 >= argc) usage(flag + " needs a value");
      return argv[++i];
    };
    if (s == "--set" || s.rfind("--set=", 0) == 0) a.overrides.push_back(value("--set"));
    else if (s.rfind("--warmup", 0) == 0) a.warmup = std::stoi(value("--warmup"));
    else if (s.rfind("--peak-tflops", 0) == 0) a.peak_tflops = value("--peak-tflops");
    else if (s.rfind("--label", 0) == 0) a.label = value("--label");
    else if (s == "--tf32") a.tf32 = true;
    else if (s.rfind("--", 0) == 0) usage("unknown flag " + s);
    else if (a.recipe.empty()) a.recipe = s;
    else usage("more than one RECIPE: " + s);
  }
  if (a.recipe.empty()) usage("missing RECIPE");
  return a;
}

struct IterFigures {
  int64_t iteration = 0;
  double ms = 0, tokens_per_s = 0, tflops = 0, loss = 0;
};

std::vector<IterFigures> read_train_lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<IterFigures> out;
  for (std::string line; std::getline(in, line);) {
    const auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object() || j.value("split", "") != "train") continue;
    out.push_back({j.value("iteration", int64_t{0}), j.value("elapsed_ms", 0.0), j.value("tokens_per_s", 0.0),
                   j.value("tflops", 0.0), j.value("lm_loss", 0.0)});
  }
  return out;
}

// Peak bytes the CUDA caching allocator handed out (and reserved from the driver); 0 on CPU.
std::pair<double, double> cuda_peak_gib() {
#if defined(MH_BENCH_WITH_CUDA)
  if (at::hasCUDA()) {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(c10::cuda::current_device());
    const double gib = 1024.0 * 1024.0 * 1024.0;  // index 0 = StatType::AGGREGATE in 1.13 and 2.x
    return {static_cast<double>(stats.allocated_bytes[0].peak) / gib,
            static_cast<double>(stats.reserved_bytes[0].peak) / gib};
  }
#endif
  return {0.0, 0.0};
}

}  // namespace

int main(int argc, char** argv) {
  Args a = parse_args(argc, argv);
  const std::string metrics = "runs/bench_train/" + a.label + ".metrics.jsonl";
  std::filesystem::remove(metrics);  // the engine appends
  a.overrides.push_back("logging.log_interval=1");
  a.overrides.push_back("logging.metrics_file=" + metrics);
  try {
    core::Recipe recipe = core::load_recipe(a.recipe, a.overrides);
    spdlog::set_level(spdlog::level::from_str(recipe.get_string("logging", "log_level")));
    if (a.tf32) at::globalContext().setFloat32MatmulPrecision("high");
    std::vector<std::filesystem::path> extra(recipe.plugin_path.begin(), recipe.plugin_path.end());
    core::PluginRegistry registry(core::PluginRegistry::default_search_path(extra));
    core::train(recipe, registry);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "megahost-bench-train: error: %s\n", e.what());
    return 1;
  }

  std::vector<IterFigures> all = read_train_lines(metrics);
  std::vector<IterFigures> steady;
  for (const auto& f : all)
    if (f.iteration > a.warmup) steady.push_back(f);
  if (steady.empty()) {
    std::fprintf(stderr, "megahost-bench-train: no iterations after the %d warm-up ones in %s\nHINT: raise "
                 "training.train_iters (--set training.train_iters=25)\n", a.warmup, metrics.c_str());
    return 1;
  }
  double sum_ms = 0;
  std::vector<double> ms;
  for (const auto& f : steady) {
    sum_ms += f.ms;
    ms.push_back(f.ms);
  }
  std::sort(ms.begin(), ms.end());
  const double mean_ms = sum_ms / static_cast<double>(steady.size());
  // The engine logs tokens/s and TFLOP/s per iteration: their product with the time is the
  // iteration's tokens and FLOPs (72 B s l h^2 (1 + s/6h + V/12lh), padded V).
  const IterFigures& f0 = steady.front();
  const double tokens = f0.tokens_per_s * f0.ms / 1e3, flops = f0.tflops * 1e12 * f0.ms / 1e3;
  const double peak = std::stod(a.peak_tflops);
  const double tflops = flops / (mean_ms / 1e3) / 1e12;
  const auto [alloc_gib, reserved_gib] = cuda_peak_gib();
  std::printf("%-28s iters=%zu (after %d warm-up) step=%8.1fms (median %.1f) tok/s=%10.0f TFLOP/s=%6.1f "
              "MFU(%.0f)=%5.1f%% mem=%.1fGiB (reserved %.1fGiB) loss %.3f -> %.3f flops/iter=%.4g\n",
              a.label.c_str(), steady.size(), a.warmup, mean_ms, ms[ms.size() / 2], tokens / (mean_ms / 1e3),
              tflops, peak, 100.0 * tflops / peak, alloc_gib, reserved_gib, all.front().loss, all.back().loss, flops);
  return 0;
}
