// megahost SDK — activation recompute (Megatron's --recompute-granularity / --recompute-method /
// --recompute-num-layers), and the checkpoint function behind it.
//
// checkpoint(fn, inputs) runs fn under no-grad and keeps only its inputs. In backward it runs fn
// again with grad enabled on detached copies of the inputs and back-propagates the incoming
// grads through that fresh graph (a re-entrant backward, as Megatron's CheckpointFunction):
// the input grads are returned, the parameter grads accumulate into the parameters' .grad (and
// their grad-accumulator hooks fire) exactly as without recompute.
//
// Dropout in the recompute draws the forward's masks: the default CPU generator, the default
// generator of the inputs' CUDA device, and a ScopedDefaultGenerator installed on the forward's
// thread are set back to their forward states for the recompute, then restored. The per-TP-rank
// generator of megahost/sdk/parallel/random.h is rebuilt from the default generator at each
// use, so restoring the default brings its masks back too (fn must build it inside).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "megahost/sdk/nn/transformer_config.h"

namespace megahost::sdk::nn {

using RecomputeFn = std::function<std::vector<at::Tensor>(const std::vector<at::Tensor>& inputs)>;

// Runs fn(inputs) and returns its outputs, keeping for backward only the inputs (undefined
// inputs are passed through as undefined). Without grad mode it is a plain call of fn.
std::vector<at::Tensor> checkpoint(RecomputeFn fn, const std::vector<at::Tensor>& inputs);

// The same for a function with one output.
at::Tensor checkpoint(const std::function<at::Tensor(const std::vector<at::Tensor>&)>& fn,
                      const std::vector<at::Tensor>& inputs);

// Recipe spellings: "none" | "selective" | "full"; "uniform" | "block". False if unknown.
bool parse_recompute_granularity(const std::string& s, RecomputeGranularity* out);
bool parse_recompute_method(const std::string& s, RecomputeMethod* out);

// A recompute setting Megatron-Core's TransformerConfig refuses: the key to blame, why, and a hint.
struct RecomputeIssue {
  std::string key;  // recompute_granularity | recompute_method | recompute_num_layers
  std::string message;
  std::string hint;
};

// Megatron-Core's checks (TransformerConfig.__post_init__, Megatron-LM's arguments.py):
// full needs recompute_method and 1 <= recompute_num_layers <= num_layers; selective takes
// neither recompute_method nor recompute_num_layers; without recompute neither is set.
std::optional<RecomputeIssue> find_recompute_issue(const TransformerConfig& cfg);

// find_recompute_issue as an sdk::Error ("<key>: <message>\nHINT: <hint>"); nothing if fine.
void check_recompute(const TransformerConfig& cfg);

}  // namespace megahost::sdk::nn
