// Multi-process GoogleTest harness: a TEST re-runs itself as `world` worker processes (torchrun's
// environment, a free MASTER_PORT) and fails when any worker fails, printing its output.
//
//   TEST(X, Y) {
//     if (!mp::is_worker()) {
//       // single-process reference, saved under mp::shared_dir()
//       mp::run_workers(2);
//       return;
//     }
//     // worker: ParallelRuntime::get().init(sizes, false, timeout); compute; EXPECT_...
//   }
//
// A worker's failed EXPECT/ASSERT makes it exit non-zero (gtest), which fails the parent's test.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace mp {

// True in a worker process (MH_MP_WORKER=1).
bool is_worker();
// RANK of this worker (0 in the parent).
int worker_rank();
// Runs this test (--gtest_filter=<current test>) in `world` processes of /proc/self/exe with
// RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR=127.0.0.1, MASTER_PORT=<free>,
// MH_MP_WORKER=1, MH_MP_DIR=shared_dir(), OMP_NUM_THREADS=1 (unless set) and `extra_env`.
// Waits for all (wall-clock limit: timeout_s, then kills all); records a test failure with the
// output of every failing worker. Must be called from a TEST body of the parent.
void run_workers(int world, const std::vector<std::pair<std::string, std::string>>& extra_env = {},
                 int timeout_s = 120);
// A fresh temporary folder for the current test, the same in the parent and its workers (the
// parent may write references there before run_workers). Removed when the workers succeed.
std::string shared_dir();

}  // namespace mp
