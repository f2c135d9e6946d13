// megahost core — Hugging Face safetensors <-> megahost checkpoints for the gpt model plugin
// (GPT2LMHeadModel, LlamaForCausalLM, MistralForCausalLM), as Megatron's tools/checkpoint loaders
// and savers. Streams tensor by tensor: at most one layer's q/k/v (or gate/up) are in memory.
#pragma once

#include <string>

#include "megahost/core/plugins.h"

namespace megahost::core {

struct HfConvertOptions {
  std::string checkpoint_plugin = "megahost-tensors";  // the megahost side's format plugin
  int64_t make_vocab_size_divisible_by = 128;          // Megatron's padding of the vocabulary (x target_tp)
  // HF -> megahost: the layout the checkpoint is written for (rank folders of tp x pp ranks, as
  // that run saves them). Any layout loads any megahost checkpoint; this only saves the resharding.
  int target_tp = 1, target_pp = 1;
};

// HF folder (config.json + model.safetensors[.index.json]) -> out_dir/recipe.toml (gpt [model]
// keys from config.json, the folder's tokenizer) + out_dir/iter_0000000 + the tracker file.
// Returns a one-line summary. Throws core::Error naming the file and tensor, with a HINT.
std::string convert_hf_to_megahost(const PluginRegistry& reg, const std::string& hf_dir, const std::string& out_dir,
                                   const HfConvertOptions& opts = {});

// megahost save folder (its latest iteration) or one iter_* folder -> out_dir/config.json +
// model.safetensors (+ tokenizer files of the HF folder the checkpoint came from, when present).
std::string convert_megahost_to_hf(const PluginRegistry& reg, const std::string& mh_dir, const std::string& out_dir,
                                   const HfConvertOptions& opts = {});

}  // namespace megahost::core
