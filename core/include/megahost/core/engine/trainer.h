// megahost core — the training engine: Megatron's loop (micro-batches with gradient accumulation,
// LR warmup/decay, clipping, evaluation, checkpoints, resume) over plugin instances.
#pragma once

#include <cstdint>
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

TrainSummary train(const Recipe& recipe, const PluginRegistry& reg);

// Loads the model (and latest checkpoint from [checkpoint] load, else save) and continues a
// prompt greedily. Returns the generated text (without the prompt).
std::string generate(const Recipe& recipe, const PluginRegistry& reg, const std::string& prompt,
                     int64_t max_new_tokens);

}  // namespace megahost::core
