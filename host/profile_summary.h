// Kineto (libtorch's profiler) over a few training iterations: the GPU kernels they ran.
// Compiled only for a libtorch >= 2.0 with CUDA (host/CMakeLists.txt defines MH_HOST_KINETO);
// `megahost bench --profile` refuses on other builds.
#pragma once

#include <vector>

#include "kernel_groups.h"

namespace megahost::host {

void kernel_profiler_prepare();                  // once, early: sets CUPTI up outside the timed window
void kernel_profiler_start();                    // records CUDA activity from now on
std::vector<KernelTime> kernel_profiler_stop();  // the GPU activities (kernels, copies) since start

}  // namespace megahost::host
