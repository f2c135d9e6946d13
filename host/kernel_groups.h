// Where the GPU time of a training iteration goes: GPU kernel names sorted into a few groups
// (matmuls, attention, megahost's fused kernels, ...), summed, and printed as a table.
// Plain code, no profiler: `megahost bench --profile` feeds it Kineto's events (profile_summary.h).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace megahost::host {

enum class KernelGroup { kMatmul, kAttention, kFusedMegahost, kCommunication, kOptimizer, kCopy, kOther };

constexpr int kNumKernelGroups = 7;

const char* kernel_group_name(KernelGroup g);

// The group of one kernel, from its (demangled) name. First match wins, in this order:
// communication (nccl), optimizer (adam, multi_tensor), fused megahost (a name part starting
// with mh_), attention (flash, fmha, cudnn, sdpa, attention), matmul (gemm, gemv, cutlass,
// cublas, xmma, nvjet, splitKreduce), copies (memcpy, memset), everything else.
KernelGroup classify_kernel(std::string_view name);

// One GPU activity as a profiler reports it.
struct KernelTime {
  std::string name;
  double ns = 0;        // its duration on the GPU
  double start_ns = 0;  // when it started (any fixed origin; -1: unknown)
};

// The GPU's idle time inside the span of `kernels` (first start to last end, minus the union of
// their intervals): time the queue ran dry. Negative when some start time is unknown.
double idle_ns(const std::vector<KernelTime>& kernels);

// One stretch with nothing running, and the kernels on either side of it.
struct IdleGap {
  double ns = 0;
  std::string before, after;  // the last kernel to end before it, the first to start after it
};

// Every idle stretch of `kernels` (empty when some start time is unknown), in time order.
std::vector<IdleGap> idle_gaps(const std::vector<KernelTime>& kernels);

// Where the idle time is: the gaps by length (count and ms/iteration per bucket), then the `top`
// kernels that started after the most idle time (a launch that came late, or a host wait before it).
std::string idle_gap_table(const std::vector<KernelTime>& kernels, int iterations, int top = 10);

// The table `megahost bench --profile` prints: per group ms/iteration and % of the summed GPU
// time, the GPU's idle time between them, then the `top` kernels by time. `iterations` is how many iterations `kernels` cover.
std::string kernel_time_table(const std::vector<KernelTime>& kernels, int iterations, int top = 15);

}  // namespace megahost::host
