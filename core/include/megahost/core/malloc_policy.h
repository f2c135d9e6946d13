// megahost/core/malloc_policy.h — how glibc's malloc treats large blocks in megahost processes.
// Header-only and libc-only: the `megahost` launcher (which links no core) and the test
// executables call it at start.
#pragma once

#include <malloc.h>

#include <climits>
#include <cstdlib>
#include <cstring>

namespace megahost::core {

// glibc serves blocks above its mmap threshold (at most 32 MB) with a fresh mmap and unmaps them on
// free, and trims the heap's top: CPU training, which allocates the same large tensors (logits,
// gradients) every step, then page-faults and zero-fills them again each time. The tiny GPT spent
// most of its time there (4.6 s against 0.61 s per iteration, docs/performance.md). Freed memory
// stays in the heap for the next step instead, as a caching allocator keeps it. A user's own
// GLIBC_TUNABLES malloc settings win.
inline void keep_freed_memory_in_the_heap() {
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  if (tunables != nullptr && std::strstr(tunables, "glibc.malloc.") != nullptr) return;
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, INT_MAX);
}

}  // namespace megahost::core
