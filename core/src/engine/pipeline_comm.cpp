// The schedules' p2p over the "pp" group of core::ParallelRuntime.
#include "megahost/core/engine/schedules.h"

namespace megahost::core {

// The runtime's groups are not available yet: no pipeline ranks (pp = 1).
std::unique_ptr<PipelineComm> pipeline_comm_from_runtime() { return nullptr; }

}  // namespace megahost::core
