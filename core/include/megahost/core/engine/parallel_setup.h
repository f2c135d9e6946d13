// megahost core — a training run's parallel layout: the world from the environment (torchrun,
// Slurm, `megahost launch`) and the recipe's [parallel] sizes, checked with Megatron's reasons
// (naming the recipe key), then the runtime's groups; and the few cross-rank reductions the
// engine itself needs (the logged loss, barriers).
#pragma once

#include <cstdint>
#include <string>

#include "megahost/core/parallel/rank_layout.h"
#include "megahost/core/recipe.h"

namespace megahost::core {

struct ParallelSetup {
  ParallelSizes sizes;
  int rank = 0, world = 1, local_rank = 0;
  int tp_rank = 0, pp_rank = 0, dp_rank = 0, cp_rank = 0;
  int64_t layers_per_virtual_stage = 0;  // 0: no interleaving
  bool sequence_parallel = false;
  bool many() const { return world > 1; }
  bool logging_rank() const { return rank == world - 1; }  // Megatron prints on the last rank
  std::string layout() const;  // "tp2.pp1.cp1.dp2"
};

// Reads the world, checks the recipe's sizes against it and starts the runtime (a single
// process starts nothing). Errors name the [parallel] key and give a hint.
ParallelSetup start_parallel(const Recipe& r, bool use_cuda);

// The training loss as every rank should log it: the mean over this rank's micro-batch losses
// on the last pipeline stage, averaged over data parallel, then shared with every pipeline stage
// (non-last stages pass has_loss = false). NaN stays NaN everywhere, so all ranks stop together.
double reduce_logged_loss(double local_mean, bool has_loss);

// True on every rank when it is true on any (a stop signal that reached some ranks first).
bool reduce_any_flag(bool flag);

// Barrier over all ranks (no-op for one process).
void world_barrier();

}  // namespace megahost::core
