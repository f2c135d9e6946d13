// megahost bench RECIPE [--set section.key=value]... [--warmup N] [--iters N] [--peak-tflops 989]
//                [--label NAME] [--json FILE] [--profile] [--tf32]
//
// Trains the recipe exactly as `megahost run` does (core::train) for warmup + iters iterations and
// reports the speed of the timed ones the way /work/shared/bench/gpt_baseline.py does:
// ms/iteration, tokens/s, model TFLOP/s per GPU (Megatron's count: FORMATS.md §5 for GPT-2 shapes;
// padded vocabulary), MFU and peak memory. The timed iterations run back to back as in
// gpt_baseline.py (a device synchronize before the first and after the last, none between); on CUDA
// each iteration's time is the GPU timeline between events recorded at the iteration ends (idle
// gaps included), so their mean is the window's time over the iterations. --sync-each-iteration
// waits for the GPU at both ends of every iteration instead (each iteration then also pays the
// queue's drain and refill).
// Under `megahost launch` every rank trains; rank 0 prints, per-GPU figures divide by the world.
#include <ATen/Context.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "commands.h"
#include "common.h"
#include "kernel_groups.h"
#include "megahost/core/engine/trainer.h"
#include "megahost/core/error.h"
#include "megahost/core/parallel/world.h"
#include "megahost/sdk/compat.h"

#if defined(MH_HOST_KINETO)
#include "profile_summary.h"
#endif

#if defined(MH_BENCH_WITH_CUDA)
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#endif

namespace megahost::host {

namespace {

using Clock = std::chrono::steady_clock;
constexpr int kProfiledIterations = 3;
constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

// Waits for the work queued on this rank's GPU (no-op on CPU, where ops run synchronously).
void device_synchronize(const core::TrainStartInfo& info) {
#if defined(MH_BENCH_WITH_CUDA)
  if (info.cuda) {
    c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(info.device_index));
    c10::cuda::device_synchronize();
  }
#else
  (void)info;
#endif
}

// Marks the ends of the timed iterations without waiting for the GPU: CUDA events on the rank's
// current stream, or the host clock on CPU (where ops run synchronously).
class IterationMarks {
 public:
  explicit IterationMarks(const core::TrainStartInfo& info) : info_(info) {}
  void mark() {
#if defined(MH_BENCH_WITH_CUDA)
    if (info_.cuda) {
      const auto device = static_cast<c10::DeviceIndex>(info_.device_index);
      events_.emplace_back(cudaEventDefault);  // timing on
      events_.back().record(at::cuda::getCurrentCUDAStream(device));
      return;
    }
#endif
    host_.push_back(Clock::now());
  }
  // The times between consecutive marks (ms); call after the GPU finished the last one.
  std::vector<double> intervals_ms() {
    std::vector<double> ms;
#if defined(MH_BENCH_WITH_CUDA)
    for (size_t i = 1; i < events_.size(); ++i) ms.push_back(static_cast<double>(events_[i - 1].elapsed_time(events_[i])));
#endif
    for (size_t i = 1; i < host_.size(); ++i)
      ms.push_back(std::chrono::duration<double, std::milli>(host_[i] - host_[i - 1]).count());
    return ms;
  }

 private:
  const core::TrainStartInfo& info_;
#if defined(MH_BENCH_WITH_CUDA)
  std::vector<at::cuda::CUDAEvent> events_;
#endif
  std::vector<Clock::time_point> host_;
};

struct PeakMemory {
  std::string kind;  // what `bytes` measures
  double bytes = 0, reserved_bytes = 0;
};

// CUDA: the caching allocator's peak (= torch.cuda.max_memory_allocated()) and peak reserved;
// CPU: the process's max resident set size.
PeakMemory peak_memory(const core::TrainStartInfo& info) {
#if defined(MH_BENCH_WITH_CUDA)
  if (info.cuda) {
    const auto stats =
        c10::cuda::CUDACachingAllocator::getDeviceStats(static_cast<c10::DeviceIndex>(info.device_index));
    // index 0 = StatType::AGGREGATE in 1.13 and 2.x
    return {"cuda_max_allocated", static_cast<double>(stats.allocated_bytes[0].peak),
            static_cast<double>(stats.reserved_bytes[0].peak)};
  }
#else
  (void)info;
#endif
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return {"cpu_max_rss", static_cast<double>(ru.ru_maxrss) * 1024.0, 0.0};  // ru_maxrss is in KiB on Linux
}

// The timed iterations as the hooks saw them.
struct Timings {
  std::vector<double> ms;  // warm-up excluded
  std::vector<KernelTime> kernels;
  double first_loss = 0, last_loss = 0;
  bool any_loss = false;
};

struct BenchOptions {
  int warmup = 5, iters = 20;
  double peak_tflops = 989;
  std::string label, json_path;
  bool profile = false;
  bool sync_each_iteration = false;
};

nlohmann::json figures(const BenchOptions& o, const core::TrainStartInfo& info, const Timings& t,
                       const PeakMemory& mem) {
  std::vector<double> sorted = t.ms;
  std::sort(sorted.begin(), sorted.end());
  double sum = 0;
  for (double v : sorted) sum += v;
  const double mean_ms = sum / static_cast<double>(sorted.size());
  const size_t n = sorted.size();
  const double median = n % 2 == 1 ? sorted[n / 2] : 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]);
  const double world = static_cast<double>(std::max<int64_t>(1, info.world_size));
  const double tokens_per_iter = static_cast<double>(info.global_batch_size * info.seq_length);
  const double tokens_per_s = tokens_per_iter / (mean_ms / 1e3);
  const double tflops_per_gpu = info.model_flops_per_iteration / (mean_ms / 1e3) / 1e12 / world;
  nlohmann::json j = {{"label", o.label},
                      {"device", info.cuda ? "cuda" : "cpu"},
                      {"world_size", info.world_size},
                      {"warmup_iters", o.warmup},
                      {"timed_iters", sorted.size()},
                      {"timing", o.sync_each_iteration ? "synchronize each iteration" : "back to back, GPU events"},
                      {"global_batch_size", info.global_batch_size},
                      {"seq_length", info.seq_length},
                      {"padded_vocab_size", info.padded_vocab_size},
                      {"ms_per_iter", mean_ms},
                      {"ms_per_iter_min", sorted.front()},
                      {"ms_per_iter_max", sorted.back()},
                      {"ms_per_iter_median", median},
                      {"ms_each_iter", t.ms},  // in order: the spread's pattern (e.g. the GPU's clock dips)
                      {"tokens_per_iter", tokens_per_iter},
                      {"tokens_per_s", tokens_per_s},
                      {"tokens_per_s_per_gpu", tokens_per_s / world},
                      {"model_flops_per_iter", info.model_flops_per_iteration},
                      {"tflops_per_gpu", tflops_per_gpu},
                      {"peak_tflops", o.peak_tflops},
                      {"mfu", tflops_per_gpu / o.peak_tflops},
                      {"peak_memory_kind", mem.kind},
                      {"peak_memory_bytes", mem.bytes},
                      {"peak_reserved_bytes", mem.reserved_bytes},
                      {"loss_first", t.first_loss},
                      {"loss_last", t.last_loss}};
  return j;
}

void print_report(const nlohmann::json& f) {
  const bool cuda = f["device"] == "cuda";
  const double mem_gib = f["peak_memory_bytes"].get<double>() / kGiB;
  const double peak = f["peak_tflops"].get<double>();
  // One line in the style of gpt_baseline.py, then the details.
  std::printf("%-28s world=%d gbs=%lld T=%lld step=%8.1fms tok/s/gpu=%10.0f TFLOP/s=%6.1f MFU(%.0f)=%5.1f%% %s=%.1fGiB\n",
              f["label"].get<std::string>().c_str(), f["world_size"].get<int>(),
              static_cast<long long>(f["global_batch_size"].get<int64_t>()),
              static_cast<long long>(f["seq_length"].get<int64_t>()), f["ms_per_iter"].get<double>(),
              f["tokens_per_s_per_gpu"].get<double>(), f["tflops_per_gpu"].get<double>(), peak,
              100.0 * f["mfu"].get<double>(), cuda ? "mem" : "maxrss", mem_gib);
  std::printf("  ms/iteration     %.2f mean, %.2f min, %.2f max, %.2f median (%lld timed after %d warm-up)\n",
              f["ms_per_iter"].get<double>(), f["ms_per_iter_min"].get<double>(), f["ms_per_iter_max"].get<double>(),
              f["ms_per_iter_median"].get<double>(), static_cast<long long>(f["timed_iters"].get<int64_t>()),
              f["warmup_iters"].get<int>());
  std::printf("  tokens/s         %.0f total, %.0f per GPU (%.0f tokens/iteration)\n", f["tokens_per_s"].get<double>(),
              f["tokens_per_s_per_gpu"].get<double>(), f["tokens_per_iter"].get<double>());
  std::printf("  TFLOP/s per GPU  %.2f (model FLOPs/iteration %.4g, Megatron's count: FORMATS.md §5 for GPT-2 "
              "shapes, padded vocab %lld)\n",
              f["tflops_per_gpu"].get<double>(), f["model_flops_per_iter"].get<double>(),
              static_cast<long long>(f["padded_vocab_size"].get<int64_t>()));
  std::printf("  MFU              %.2f%% of %.0f TFLOP/s\n", 100.0 * f["mfu"].get<double>(), peak);
  if (cuda)
    std::printf("  peak memory      %.2f GiB allocated, %.2f GiB reserved (CUDA caching allocator, rank 0's GPU)\n",
                mem_gib, f["peak_reserved_bytes"].get<double>() / kGiB);
  else
    std::printf("  peak memory      %.2f GiB max RSS (process)\n", mem_gib);
  std::printf("  lm loss          %.4f -> %.4f (timed iterations)\n", f["loss_first"].get<double>(),
              f["loss_last"].get<double>());
  std::fflush(stdout);
}

// Usage errors before any work: message, hint, exit 2.
int refuse(const std::string& why, const std::string& hint) {
  std::fprintf(stderr, "megahost bench: %s\nHINT: %s\n", why.c_str(), hint.c_str());
  return kExitUsage;
}

}  // namespace

int cmd_bench(int argc, char** argv) {
  cxxopts::Options options("megahost bench",
                           "Train the recipe (as `megahost run`) for warm-up + timed iterations and report ms/iteration, "
                           "tokens/s, TFLOP/s per GPU, MFU and peak memory. No evaluation, no checkpoint.");
  add_recipe_options(options);
  options.add_options()("warmup", "untimed iterations first", cxxopts::value<int>()->default_value("5"))(
      "iters", "timed iterations", cxxopts::value<int>()->default_value("20"))(
      "peak-tflops", "the GPU's peak TFLOP/s for MFU (989: H100/H200 dense bf16)",
      cxxopts::value<double>()->default_value("989"))("label", "name on the result line (default: recipe file name)",
                                                        cxxopts::value<std::string>())(
      "json", "also write the figures to this JSON file", cxxopts::value<std::string>())(
      "profile", "then profile 3 more iterations with Kineto: GPU time by kernel group (libtorch >= 2.0 with CUDA)")(
      "tf32", "float32 matmuls on TF32 tensor cores (matmul precision \"high\"; default is full fp32)")(
      "sync-each-iteration", "wait for the GPU before and after every timed iteration (default: only around them all)");
  cxxopts::ParseResult args;
  int code = 0;
  if (!parse_flags(options, argc, argv, args, code)) return code;
  return guarded("bench", [&] {
    if (args.count("recipe") == 0) {
      std::fprintf(stderr, "megahost bench: missing RECIPE\n\n%s", options.help().c_str());
      return kExitUsage;
    }
    BenchOptions o;
    o.warmup = args["warmup"].as<int>();
    o.iters = args["iters"].as<int>();
    o.peak_tflops = args["peak-tflops"].as<double>();
    o.profile = args.count("profile") != 0;
    o.sync_each_iteration = args.count("sync-each-iteration") != 0;
    const std::string recipe_path = args["recipe"].as<std::string>();
    o.label = args.count("label") != 0 ? args["label"].as<std::string>()
                                       : std::filesystem::path(recipe_path).stem().string();
    if (args.count("json") != 0) o.json_path = args["json"].as<std::string>();
    if (o.warmup < 0) return refuse("--warmup " + std::to_string(o.warmup) + " must be >= 0", "e.g. --warmup 5");
    if (o.iters < 1) return refuse("--iters " + std::to_string(o.iters) + " must be >= 1", "e.g. --iters 20");
    if (!(o.peak_tflops > 0))
      return refuse("--peak-tflops must be > 0", "the GPU's dense peak, e.g. 989 for H100/H200 bf16");
    if (const auto dir = std::filesystem::path(o.json_path).parent_path(); !dir.empty() && !std::filesystem::is_directory(dir))
      return refuse("--json " + o.json_path + ": folder " + dir.string() + " does not exist",
                    "create it first, or give a path in an existing folder");
#if !defined(MH_HOST_KINETO)
    if (o.profile)
      return refuse(std::string("--profile needs a libtorch >= 2.0 with CUDA (Kineto's CUDA activity); this "
                                "megahost was built against libtorch ") +
                        TORCH_VERSION + " without it",
                    "drop --profile here, or run on a CUDA build (scripts/gpu_check.sh)");
#endif

    // Exactly `megahost run`, minus what would disturb or outlast the measurement.
    const int total_iters = o.warmup + o.iters + (o.profile ? kProfiledIterations : 0);
    const std::vector<std::string> forced = {"training.train_iters=" + std::to_string(total_iters),
                                             "training.eval_iters=0",
                                             "training.exit_interval=0",
                                             "logging.log_interval=1",
                                             "logging.metrics_file=\"\"",
                                             "checkpoint.save=\"\"",
                                             "checkpoint.load=\"\""};
    RecipeAndPlugins loaded = load_recipe_and_plugins(args, forced);
    spdlog::set_level(spdlog::level::from_str(loaded.recipe.get_string("logging", "log_level")));
    if (args.count("tf32") != 0) at::globalContext().setFloat32MatmulPrecision("high");

    core::TrainStartInfo info;
    Timings t;
    Clock::time_point t0;
    IterationMarks marks(info);
    const int64_t first_timed = o.warmup + 1, last_timed = o.warmup + o.iters;
    const auto timed = [&](int64_t it) { return it >= first_timed && it <= last_timed; };
    core::TrainHooks hooks;
    hooks.on_start = [&](const core::TrainStartInfo& i) {
      info = i;
#if defined(MH_HOST_KINETO)
      if (o.profile) {
        MH_CORE_CHECK(info.cuda, recipe_path, ": --profile records CUDA kernels but training.device is cpu",
                      "\nHINT: --set training.device=cuda, or drop --profile");
        kernel_profiler_prepare();
      }
#endif
    };
    hooks.on_iteration_start = [&](int64_t it) {
      if (o.sync_each_iteration || it == first_timed) device_synchronize(info);
      if (it == first_timed && !o.sync_each_iteration) marks.mark();
#if defined(MH_HOST_KINETO)
      if (o.profile && it == last_timed + 1) kernel_profiler_start();
#endif
      t0 = Clock::now();
    };
    hooks.on_iteration_end = [&](int64_t it, double loss) {
      if (timed(it)) {
        if (o.sync_each_iteration) {
          device_synchronize(info);
          t.ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
        } else {
          marks.mark();
          if (it == last_timed) {
            device_synchronize(info);
            t.ms = marks.intervals_ms();
          }
        }
        if (!t.any_loss) t.first_loss = loss;
        t.last_loss = loss;
        t.any_loss = true;
      }
#if defined(MH_HOST_KINETO)
      if (o.profile && it == last_timed + kProfiledIterations) {
        device_synchronize(info);
        t.kernels = kernel_profiler_stop();
      }
#endif
    };
    const core::TrainSummary s = core::train(loaded.recipe, *loaded.registry, hooks);
    MH_CORE_CHECK(!s.interrupted, "training stopped at iteration ", s.last_iteration,
                  " before the benchmark finished\nHINT: see the warning above (signal)");
    MH_CORE_CHECK(static_cast<int>(t.ms.size()) == o.iters, "timed ", t.ms.size(), " iterations, expected ",
                  o.iters, "\nHINT: the run ended at iteration ", s.last_iteration);

    const PeakMemory mem = peak_memory(info);
    if (core::read_world_env().rank != 0) return kExitOk;
    const nlohmann::json f = figures(o, info, t, mem);
    print_report(f);
    if (o.profile) {
      std::fputs(kernel_time_table(t.kernels, kProfiledIterations, 40).c_str(), stdout);
      std::fputs(idle_gap_table(t.kernels, kProfiledIterations).c_str(), stdout);
    }
    if (!o.json_path.empty()) {
      std::ofstream out(o.json_path);
      MH_CORE_CHECK(out.good(), o.json_path, ": cannot write --json\nHINT: check the folder exists and is writable");
      out << f.dump(2) << "\n";
    }
    return kExitOk;
  });
}

}  // namespace megahost::host
