// megahost core — the training engine: Megatron's loop (micro-batches with gradient accumulation,
// LR warmup/decay, clipping, evaluation, checkpoints, resume) over plugin instances.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "megahost/core/plugins.h"
#include "megahost/core/recipe.h"

namespace megahost::core {

struct TrainSummary {
  int64_t start_iteration = 0;  // iteration resumed from (0 = fresh)
  int64_t last_iteration = 0;
  std::optional<double> first_valid_loss, last_valid_loss;
  double last_train_loss = 0;
  bool interrupted = false;  // stopped by a signal or exit_interval (checkpoint saved)
};

// Checks every plugin section of the recipe against its plugin's schema (no instance created).
void validate_plugin_sections(const Recipe& recipe, const PluginRegistry& reg);

// What the engine worked out before the first iteration (for benchmarks: `megahost bench`).
struct TrainStartInfo {
  int64_t global_batch_size = 0, seq_length = 0, padded_vocab_size = 0, world_size = 1;
  double model_flops_per_iteration = 0;  // FORMATS.md §5 with the padded vocabulary; 0 if unknown
  bool cuda = false;
  int device_index = -1;  // this rank's CUDA device, -1 on CPU
};

// Optional callbacks into the loop; iterations count from 1. on_iteration_end runs after the
// optimizer step and before any logging, evaluation or checkpoint of that iteration.
struct TrainHooks {
  std::function<void(const TrainStartInfo&)> on_start;
  std::function<void(int64_t iteration)> on_iteration_start;
  std::function<void(int64_t iteration, double loss)> on_iteration_end;
};

TrainSummary train(const Recipe& recipe, const PluginRegistry& reg, const TrainHooks& hooks = {});

// Loads the model (and latest checkpoint from [checkpoint] load, else save) and continues a
// prompt greedily. Returns the generated text (without the prompt).
std::string generate(const Recipe& recipe, const PluginRegistry& reg, const std::string& prompt,
                     int64_t max_new_tokens);

}  // namespace megahost::core
