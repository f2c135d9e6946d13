// megahost core — checkpoint orchestration: what goes in, where (Megatron's iter_XXXXXXX folders
// and latest_checkpointed_iteration.txt tracker), atomic publish, and resume.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "megahost/core/instances.h"

namespace megahost::core {

struct TrainingState {
  int64_t iteration = 0;
  int64_t consumed_train_samples = 0;
};

using StateVisitor = std::function<void(const std::string& name, at::Tensor t)>;

// What one rank contributes to (and takes from) a checkpoint.
struct CheckpointParts {
  std::vector<Model*> chunks;                       // this rank's model chunks (pipeline stages)
  std::function<void(const StateVisitor&)> visit_optimizer;  // live optimizer state; empty = none
  std::string optimizer_id;
  // Several processes: each rank writes <iter>/rank_%05d. Parameters (and replicated optimizer
  // state) come from the first rank of each data-parallel group only (model_source_rank);
  // sharded optimizer state (distributed optimizer) and RNG states from every rank.
  int rank = 0, world_size = 1;
  int model_source_rank = 0;       // the rank whose folder holds this rank's parameters
  bool optimizer_sharded = false;  // every rank holds its own optimizer state
  std::string layout;              // e.g. "tp2.pp1.cp1.dp2": a resume must use the same one
  std::function<void()> barrier;   // over all ranks (needed when world_size > 1)
};

// Writes model params, optimizer state, RNG state and metadata into <save>/iter_%07d, published
// atomically (staging folder + rename, after every rank has committed), then updates the
// tracker file atomically. keep_last_n > 0: then removes older iter_* folders beyond the newest
// keep_last_n (never the one the tracker names).
void save_checkpoint(CheckpointFormat& fmt, const std::string& save_dir, const TrainingState& state,
                     const CheckpointParts& parts, const std::string& recipe_text, int64_t keep_last_n = 0);

// Removes iter_* folders of save_dir beyond the newest keep_last_n, never the tracker's one.
void prune_checkpoints(const std::string& save_dir, int64_t keep_last_n);

// The latest iteration recorded in <dir>/latest_checkpointed_iteration.txt, or nullopt.
std::optional<int64_t> latest_checkpoint(const std::string& dir);

std::string iteration_dir(const std::string& dir, int64_t iteration);

struct LoadOptions {
  bool load_optimizer = true, load_rng = true;
};

// Loads the given iteration into the live model/optimizer storage. Throws naming the entry.
TrainingState load_checkpoint(CheckpointFormat& fmt, const std::string& dir, int64_t iteration,
                              const CheckpointParts& parts, const LoadOptions& opts);

}  // namespace megahost::core
