// Only built with MH_HOST_KINETO (libtorch >= 2.0 with CUDA): the Kineto C++ API of
// torch/csrc/autograd/profiler_kineto.h.
#include "profile_summary.h"

#include <torch/csrc/autograd/profiler_kineto.h>

#include <set>

namespace megahost::host {

namespace {

namespace kineto = torch::autograd::profiler;
namespace prof = torch::profiler::impl;

prof::ProfilerConfig kineto_config() { return prof::ProfilerConfig(prof::ProfilerState::KINETO); }

const std::set<prof::ActivityType>& cuda_activity() {
  static const std::set<prof::ActivityType> a{prof::ActivityType::CUDA};
  return a;
}

// KinetoEvent has durationNs() in newer libtorch, durationUs() in 2.0/2.1.
template <class Event>
auto duration_ns(const Event& e, int) -> decltype(static_cast<double>(e.durationNs())) {
  return static_cast<double>(e.durationNs());
}
template <class Event>
double duration_ns(const Event& e, long) {
  return static_cast<double>(e.durationUs()) * 1e3;
}

// KinetoEvent's start: startNs() in newer libtorch, startUs() in older ones.
template <class Event>
auto start_ns(const Event& e, int) -> decltype(static_cast<double>(e.startNs())) {
  return static_cast<double>(e.startNs());
}
template <class Event>
double start_ns(const Event& e, long) {
  return static_cast<double>(e.startUs()) * 1e3;
}

}  // namespace

void kernel_profiler_prepare() { kineto::prepareProfiler(kineto_config(), cuda_activity()); }

void kernel_profiler_start() { kineto::enableProfiler(kineto_config(), cuda_activity()); }

std::vector<KernelTime> kernel_profiler_stop() {
  const std::unique_ptr<kineto::ProfilerResult> result = kineto::disableProfiler();
  std::vector<KernelTime> out;
  if (!result) return out;
  // CUDA activity also records runtime calls (cudaLaunchKernel, ...) on the CPU side: keep the
  // events that ran on the GPU.
  for (const kineto::KinetoEvent& e : result->events())
    if (e.deviceType() == c10::DeviceType::CUDA) out.push_back({e.name(), duration_ns(e, 0), start_ns(e, 0)});
  return out;
}

}  // namespace megahost::host
