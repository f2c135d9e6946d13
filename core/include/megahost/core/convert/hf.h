// megahost core — `megahost convert` through a converter plugin (mh.converter/1): a foreign
// checkpoint (Hugging Face safetensors through the `hf` converter: GPT2LMHeadModel,
// LlamaForCausalLM, MistralForCausalLM; any third party's converter alike) <-> megahost
// checkpoints of the gpt model plugin, as Megatron's tools/checkpoint loaders and savers. Streams
// tensor by tensor: at most one rule's tensors (one layer's q/k/v, gate/up) are in memory.
#pragma once

#include <string>

#include "megahost/core/plugins.h"

namespace megahost::core {

struct HfConvertOptions {
  std::string checkpoint_plugin = "megahost-tensors";  // the megahost side's format plugin
  int64_t make_vocab_size_divisible_by = 128;          // Megatron's padding of the vocabulary (x target_tp)
  // foreign -> megahost: the layout the checkpoint is written for (rank folders of tp x pp ranks,
  // as that run saves them). Any layout loads any megahost checkpoint; this only saves the resharding.
  int target_tp = 1, target_pp = 1;
};
using ConvertOptions = HfConvertOptions;

// Folder `dir` read by converter `converter_id` -> out_dir/recipe.toml (the converter's [model]
// and [tokenizer] tables + [parallel], [checkpoint]) + out_dir/iter_0000000 + the tracker file.
// The converter's metadata blobs are kept as "<id>/<name>" for the way back. Returns a one-line
// summary. Throws core::Error naming the file and tensor, with a HINT.
std::string convert_foreign_to_megahost(const PluginRegistry& reg, const std::string& converter_id,
                                        const std::string& dir, const std::string& out_dir,
                                        const ConvertOptions& opts = {});

// megahost save folder (its latest iteration) or one iter_* folder, any layout -> out_dir written
// by converter `converter_id` (for hf: config.json + model.safetensors + tokenizer files).
std::string convert_megahost_to_foreign(const PluginRegistry& reg, const std::string& converter_id,
                                        const std::string& mh_dir, const std::string& out_dir,
                                        const ConvertOptions& opts = {});

// The `hf` converter (plugins/converters/hf).
std::string convert_hf_to_megahost(const PluginRegistry& reg, const std::string& hf_dir, const std::string& out_dir,
                                   const HfConvertOptions& opts = {});
std::string convert_megahost_to_hf(const PluginRegistry& reg, const std::string& mh_dir, const std::string& out_dir,
                                   const HfConvertOptions& opts = {});

}  // namespace megahost::core
