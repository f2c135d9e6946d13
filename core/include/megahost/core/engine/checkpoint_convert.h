// megahost core — Megatron's checkpoint format converter inside a run (--ckpt-convert-format,
// --ckpt-convert-save): `[checkpoint] ckpt_convert_format = "<format plugin id>"` and
// `ckpt_convert_save = "DIR"` make a run load its checkpoint as usual, write it again through
// that format plugin into DIR and stop without training.
#pragma once

#include <string>

#include "megahost/core/engine/checkpointing.h"
#include "megahost/core/plugins.h"
#include "megahost/core/recipe.h"

namespace megahost::core {

// True when the recipe sets ckpt_convert_format.
bool checkpoint_conversion_requested(const Recipe& r);

// Checks the two keys before any heavy work: both or neither; `load` set and holding a complete
// checkpoint; the format a known checkpoint plugin; DIR not the load folder; nothing that would
// write state the run did not load (finetune, no_load_optim, no_load_rng). Throws naming the key.
void check_checkpoint_conversion(const Recipe& r, const PluginRegistry& reg);

// Writes what the run loaded (state, parts) into ckpt_convert_save through ckpt_convert_format:
// the same layout-free folders a save writes (shards.json, meta.json, tracker file), published
// atomically. Logs what it did. The caller stops the run afterwards.
void convert_loaded_checkpoint(const Recipe& r, const PluginRegistry& reg, const TrainingState& state,
                               const CheckpointParts& parts, const std::string& recipe_text);

}  // namespace megahost::core
