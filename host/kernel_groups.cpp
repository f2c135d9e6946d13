#include "kernel_groups.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <map>

namespace megahost::host {

namespace {

bool has_any(const std::string& s, std::initializer_list<const char*> parts) {
  for (const char* p : parts)
    if (s.find(p) != std::string::npos) return true;
  return false;
}

// "mh_" at the start of a name part: "mh_layernorm_fwd", "void megahost::mh_gelu<float>(...)";
// not inside a word ("ohm_x").
bool has_megahost_part(const std::string& s) {
  for (size_t p = s.find("mh_"); p != std::string::npos; p = s.find("mh_", p + 1)) {
    const char before = p == 0 ? ' ' : s[p - 1];
    if (!std::isalnum(static_cast<unsigned char>(before)) && before != '_') return true;
  }
  return false;
}

std::string shortened(const std::string& name, size_t width) {
  return name.size() <= width ? name : name.substr(0, width - 3) + "...";
}

}  // namespace

const char* kernel_group_name(KernelGroup g) {
  switch (g) {
    case KernelGroup::kMatmul: return "matmuls (gemm, cutlass, cublas, xmma, nvjet)";
    case KernelGroup::kAttention: return "attention (flash, fmha, cudnn, sdpa)";
    case KernelGroup::kFusedMegahost: return "fused megahost kernels (mh_*)";
    case KernelGroup::kCommunication: return "communication (nccl)";
    case KernelGroup::kOptimizer: return "optimizer (adam, multi_tensor)";
    case KernelGroup::kCopy: return "copies (memcpy, memset)";
    case KernelGroup::kOther: return "elementwise and reductions (the rest)";
  }
  return "?";
}

KernelGroup classify_kernel(std::string_view name) {
  std::string s(name);
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (has_any(s, {"nccl"})) return KernelGroup::kCommunication;
  if (has_any(s, {"adam", "multi_tensor"})) return KernelGroup::kOptimizer;
  if (has_megahost_part(s)) return KernelGroup::kFusedMegahost;
  // Before matmuls: memory-efficient attention kernels carry "cutlass" in their names.
  if (has_any(s, {"flash", "fmha", "cudnn", "sdpa", "attention"})) return KernelGroup::kAttention;
  if (has_any(s, {"gemm", "gemv", "cutlass", "cublas", "xmma", "nvjet", "splitkreduce"})) return KernelGroup::kMatmul;
  if (has_any(s, {"memcpy", "memset"})) return KernelGroup::kCopy;
  return KernelGroup::kOther;
}

std::vector<IdleGap> idle_gaps(const std::vector<KernelTime>& kernels) {
  std::vector<const KernelTime*> by_start;
  by_start.reserve(kernels.size());
  for (const KernelTime& k : kernels) {
    if (k.start_ns < 0) return {};
    by_start.push_back(&k);
  }
  std::sort(by_start.begin(), by_start.end(),
            [](const KernelTime* a, const KernelTime* b) { return a->start_ns < b->start_ns; });
  std::vector<IdleGap> gaps;
  const KernelTime* last_to_end = nullptr;  // the running kernel that ends last so far
  for (const KernelTime* k : by_start) {
    if (last_to_end != nullptr) {
      const double covered_to = last_to_end->start_ns + last_to_end->ns;
      if (k->start_ns > covered_to) gaps.push_back({k->start_ns - covered_to, last_to_end->name, k->name});
      if (k->start_ns + k->ns <= covered_to) continue;
    }
    last_to_end = k;
  }
  return gaps;
}

double idle_ns(const std::vector<KernelTime>& kernels) {
  for (const KernelTime& k : kernels)
    if (k.start_ns < 0) return -1;
  double idle = 0;
  for (const IdleGap& g : idle_gaps(kernels)) idle += g.ns;
  return idle;
}

std::string idle_gap_table(const std::vector<KernelTime>& kernels, int iterations, int top) {
  const std::vector<IdleGap> gaps = idle_gaps(kernels);
  const double per_iter = 1.0 / std::max(1, iterations);
  constexpr double kEdgesUs[] = {1, 2, 5, 20, 100};  // bucket upper edges; the last bucket is open
  constexpr int kBuckets = 6;
  double bucket_ns[kBuckets] = {};
  int64_t bucket_count[kBuckets] = {};
  std::map<std::string, std::pair<double, int64_t>> by_after;  // kernel after the gap -> (ns, gaps)
  for (const IdleGap& g : gaps) {
    int b = 0;
    while (b < kBuckets - 1 && g.ns >= kEdgesUs[b] * 1e3) ++b;
    bucket_ns[b] += g.ns;
    ++bucket_count[b];
    auto& [ns, n] = by_after[g.after];
    ns += g.ns;
    ++n;
  }
  std::string out = "GPU idle gaps by length (per iteration):\n";
  char buf[512];
  for (int b = 0; b < kBuckets; ++b) {
    char range[32];
    if (b == 0) std::snprintf(range, sizeof(range), "< %g us", kEdgesUs[0]);
    else if (b == kBuckets - 1) std::snprintf(range, sizeof(range), ">= %g us", kEdgesUs[b - 1]);
    else std::snprintf(range, sizeof(range), "%g-%g us", kEdgesUs[b - 1], kEdgesUs[b]);
    std::snprintf(buf, sizeof(buf), "  %-12s %8.1f gaps %8.3f ms/iter\n", range, bucket_count[b] * per_iter,
                  bucket_ns[b] * 1e-6 * per_iter);
    out += buf;
  }
  std::vector<std::pair<std::string, std::pair<double, int64_t>>> ranked(by_after.begin(), by_after.end());
  std::sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) { return a.second.first > b.second.first; });
  if (static_cast<int>(ranked.size()) > top) ranked.resize(static_cast<size_t>(top));
  std::snprintf(buf, sizeof(buf), "kernels started after the most idle time (top %zu):\n", ranked.size());
  out += buf;
  for (const auto& [name, t] : ranked) {
    std::snprintf(buf, sizeof(buf), "  %8.3f ms/iter %6.1f gaps/iter  %s\n", t.first * 1e-6 * per_iter,
                  t.second * per_iter, shortened(name, 110).c_str());
    out += buf;
  }
  return out;
}

std::string kernel_time_table(const std::vector<KernelTime>& kernels, int iterations, int top) {
  const double per_iter_ms = 1e-6 / std::max(1, iterations);  // ns summed over the iterations -> ms/iteration
  double total = 0;
  double group_ns[kNumKernelGroups] = {};
  std::map<std::string, std::pair<double, int64_t>> by_name;  // name -> (ns, calls)
  for (const KernelTime& k : kernels) {
    total += k.ns;
    group_ns[static_cast<int>(classify_kernel(k.name))] += k.ns;
    auto& [ns, calls] = by_name[k.name];
    ns += k.ns;
    ++calls;
  }
  auto pct = [&](double ns) { return total > 0 ? 100.0 * ns / total : 0.0; };
  std::string out;
  char buf[512];
  std::snprintf(buf, sizeof(buf),
                "GPU time by kernel group (%d profiled iterations; %% of the summed kernel time, "
                "streams may overlap):\n",
                iterations);
  out += buf;
  for (int g = 0; g < kNumKernelGroups; ++g) {
    std::snprintf(buf, sizeof(buf), "  %-46s %10.3f ms/iter %6.1f%%\n", kernel_group_name(static_cast<KernelGroup>(g)),
                  group_ns[g] * per_iter_ms, pct(group_ns[g]));
    out += buf;
  }
  std::snprintf(buf, sizeof(buf), "  %-46s %10.3f ms/iter %6.1f%%\n", "total", total * per_iter_ms, total > 0 ? 100.0 : 0.0);
  out += buf;
  if (const double idle = idle_ns(kernels); idle >= 0) {
    std::snprintf(buf, sizeof(buf), "  %-46s %10.3f ms/iter\n", "GPU idle between them (nothing running)",
                  idle * per_iter_ms);
    out += buf;
  }

  std::vector<std::pair<std::string, std::pair<double, int64_t>>> ranked(by_name.begin(), by_name.end());
  std::sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) { return a.second.first > b.second.first; });
  if (static_cast<int>(ranked.size()) > top) ranked.resize(static_cast<size_t>(top));
  std::snprintf(buf, sizeof(buf), "top %zu kernels by GPU time:\n", ranked.size());
  out += buf;
  for (const auto& [name, t] : ranked) {
    std::snprintf(buf, sizeof(buf), "  %10.3f ms/iter %6.1f%% %6.1f calls/iter  %s\n", t.first * per_iter_ms,
                  pct(t.first), static_cast<double>(t.second) / std::max(1, iterations), shortened(name, 110).c_str());
    out += buf;
  }
  return out;
}

}  // namespace megahost::host
