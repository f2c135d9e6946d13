// Internal: the c10d process group behind a core::Group (process_group.cpp, world.cpp).
#pragma once

#include <chrono>

#include "megahost/core/parallel/process_group.h"
#include "megahost/sdk/compat.h"

namespace megahost::core {

struct Group::Backend {
  c10::intrusive_ptr<compat::C10dBackend> pg;
  bool nccl = false;  // NCCL has reduce-scatter, all-gather into one tensor and AVG natively
};

}  // namespace megahost::core
