// Internal: the c10d process group behind a core::Group (process_group.cpp, world.cpp).
#pragma once

#include <chrono>

#include "megahost/core/parallel/process_group.h"
#include "megahost/sdk/compat.h"

namespace megahost::core {

struct Group::Backend {
  c10::intrusive_ptr<compat::C10dBackend> pg;
  bool nccl = false;  // NCCL has reduce-scatter, all-gather into one tensor and AVG natively
  Backend() = default;
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;
  ~Backend() {
    try {
      if (pg) compat::shutdown_backend(*pg, nccl);
    } catch (...) {  // a destructor: the communicators go with the process anyway
    }
  }
};

}  // namespace megahost::core
