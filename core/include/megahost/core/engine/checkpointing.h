// megahost core — checkpoint orchestration: what goes in, where (Megatron's iter_XXXXXXX folders
// and latest_checkpointed_iteration.txt tracker), atomic publish, and resume.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "megahost/core/instances.h"

namespace megahost::core {

struct TrainingState {
  int64_t iteration = 0;
  int64_t consumed_train_samples = 0;
};

// Writes model params, optimizer state, RNG state and metadata into <save>/iter_%07d, published
// atomically (staging folder + rename), then updates the tracker file atomically.
void save_checkpoint(CheckpointFormat& fmt, const std::string& save_dir, const TrainingState& state, Model& model,
                     Optimizer& opt, const Model::AbiParams& abi_params, const std::string& recipe_text);

// The latest iteration recorded in <dir>/latest_checkpointed_iteration.txt, or nullopt.
std::optional<int64_t> latest_checkpoint(const std::string& dir);

std::string iteration_dir(const std::string& dir, int64_t iteration);

struct LoadOptions {
  bool load_optimizer = true, load_rng = true;
};

// Loads the given iteration into the live model/optimizer storage. Throws naming the entry.
TrainingState load_checkpoint(CheckpointFormat& fmt, const std::string& dir, int64_t iteration, Model& model,
                              Optimizer* opt, const Model::AbiParams* abi_params, const LoadOptions& opts);

}  // namespace megahost::core
