// Linked into every test executable (tests/CMakeLists.txt): the process settings `megahost` makes
// at start, so tests train on the CPU as the command does.
#include "megahost/core/malloc_policy.h"

namespace {

const bool kMallocPolicyApplied = (megahost::core::keep_freed_memory_in_the_heap(), true);

}  // namespace
