// megahost SDK — Megatron-Core's pre-norm TransformerLayer and the TransformerBlock (a stack of
// layers plus final_layernorm).
//
//   h = x + dropout(self_attention(input_layernorm(x)))
//   y = h + dropout(mlp(pre_mlp_layernorm(h)))
//
// The dropouts are megahost/sdk/parallel/random.h's hidden_dropout: per TP rank under sequence
// parallelism, the default generator otherwise.
//
// Hidden states are [s, b, hidden] (sequence first, as Megatron: sequence parallelism splits dim 0).
//
// Full activation recompute (cfg.recompute_granularity = Full, only when training) checkpoints
// the block's layers as Megatron-Core's TransformerBlock._checkpointed_forward: uniform = groups
// of recompute_num_layers layers (the last group may be shorter), block = the first
// recompute_num_layers layers of this stage one by one, the rest as usual.
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>
#include <optional>
#include <utility>
#include <string>
#include <vector>

#include "megahost/sdk/nn/attention.h"
#include "megahost/sdk/nn/mlp.h"
#include "megahost/sdk/nn/norm.h"
#include "megahost/sdk/nn/params.h"
#include "megahost/sdk/nn/transformer_config.h"
#include "megahost/sdk/parallel/random.h"

namespace megahost::sdk::nn {

// The residual stream between layers with its last add not done yet: residual + delta
// (+ delta_bias), added inside the next layer's fused add + norm. delta undefined: residual
// alone. delta_bias [hidden]: the sub-layer's output bias its linear skipped (Megatron's
// skip_bias_add), undefined when the bias is inside delta. added_bias (with delta undefined): the
// residual already holds the last sub-layer's output and bias, added by its product
// (fused::linear_add); the next norm sums the bias's gradient. delta_dropout > 0: delta (+
// delta_bias) is dropped out as it is added (hidden dropout inside the next fused add + norm,
// drawn from hidden_dropout_generator(delta_dropout, parallel)).
struct DeferredResidual {
  at::Tensor residual, delta, delta_bias, added_bias;
  double delta_dropout = 0.0;
  std::shared_ptr<const parallel::ParallelContext> parallel;  // whose generator delta_dropout draws from
  at::Tensor materialize() const;  // [s, b, hidden]
  // (norm(x), x) for the stream x this stands for, the pending add (and its dropout) done inside
  // the norm's fused pass: what a pre-norm sub-layer reads, and the stream it adds to.
  std::pair<at::Tensor, at::Tensor> norm_with(const Norm& norm) const;
};

// Where a layer's hidden dropout of probability p (0 when not training) goes, for sub-layer
// outputs like `activation`: on CUDA inside the next fused add + norm, with the output biases of
// linear_proj / linear_fc2 folded into that add (in_norm, fold_bias; MEGAHOST_FUSED_DROPOUT=0
// keeps libtorch's dropout and the biases in the products); elsewhere libtorch's dropout before
// a plain add.
struct HiddenDropoutPlan {
  bool in_norm = false;    // the dropout is drawn inside the next fused add + norm
  bool fold_bias = false;  // the sub-layers skip their output biases (skip_bias_add) for that add
  double norm_p = 0.0;     // the DeferredResidual::delta_dropout to hand on
};
HiddenDropoutPlan plan_hidden_dropout(double p, const at::Tensor& activation);

// The generator a hidden dropout of probability p draws from while the returned scope lives:
// under sequence parallelism (tp > 1) each TP rank holds other tokens and draws from its own
// generator (Megatron's rng tracker fork, as parallel::hidden_dropout); otherwise the scope is
// empty and the thread's default generator stays. A fused add + norm's dropout reads it.
std::optional<parallel::ScopedDefaultGenerator> hidden_dropout_generator(double p,
                                                                        const parallel::ParallelContext* parallel,
                                                                        const at::Device& device);

class TransformerLayer {
 public:
  // prefix: "decoder.layers.<N>" with N the GLOBAL layer index.
  TransformerLayer(ParamRegistry& reg, const std::string& prefix, const TransformerConfig& cfg);
  // x [s, b, hidden]; rotary_freqs and key_padding [b, s] (attn_mask_type = Padding) as
  // SelfAttention::forward -> [s, b, hidden]
  at::Tensor forward(const at::Tensor& x, const at::Tensor& rotary_freqs, bool training,
                     const at::Tensor& key_padding = at::Tensor()) const;
  // The same with the residual adds at the layer's edges left to a fused add + norm: a stack of
  // layers adds each layer's MLP output (and, without dropout, the output biases of linear_proj
  // and linear_fc2) inside the next norm.
  DeferredResidual forward_deferred(const DeferredResidual& in, const at::Tensor& rotary_freqs, bool training,
                                    const at::Tensor& key_padding = at::Tensor()) const;

  Norm input_layernorm;
  SelfAttention self_attention;
  Norm pre_mlp_layernorm;
  MLP mlp;

 private:
  double hidden_dropout_;
  bool residual_in_products_;  // tp = 1: the residual adds may go into the output products
  std::shared_ptr<const parallel::ParallelContext> parallel_;
};

class TransformerBlock {
 public:
  // Builds layers [first_layer, first_layer + num_local_layers) named "<prefix>.layers.N";
  // with_final_layernorm adds "<prefix>.final_layernorm" (the last pipeline stage).
  TransformerBlock(ParamRegistry& reg, const std::string& prefix, const TransformerConfig& cfg,
                   int64_t first_layer, int64_t num_local_layers, bool with_final_layernorm);
  // key_padding [b, s] bool: the real tokens, for attn_mask_type = Padding (undefined: all real)
  at::Tensor forward(const at::Tensor& x, const at::Tensor& rotary_freqs, bool training,
                     const at::Tensor& key_padding = at::Tensor()) const;

  std::vector<std::unique_ptr<TransformerLayer>> layers;
  std::unique_ptr<Norm> final_layernorm;  // null when not the last stage

 private:
  // layers [begin, end) in order: x [s, b, hidden] -> [s, b, hidden]
  at::Tensor forward_layers(size_t begin, size_t end, const at::Tensor& x, const at::Tensor& rotary_freqs,
                            const at::Tensor& key_padding, bool training) const;
  // The same with the last add not done (TransformerLayer::forward_deferred).
  DeferredResidual forward_span(size_t begin, size_t end, const at::Tensor& x, const at::Tensor& rotary_freqs,
                                const at::Tensor& key_padding, bool training) const;

  // Names layer i's parameters to the host's gate (ParamRegistry::gate) before it runs
  // (forward_span also names what follows the registry's last layer after it).
  void gate_layer(size_t i) const;

  std::shared_ptr<const parallel::ParallelContext> parallel_;
  RecomputeGranularity recompute_granularity_ = RecomputeGranularity::None;
  RecomputeMethod recompute_method_ = RecomputeMethod::None;
  int64_t recompute_num_layers_ = 0;
  ParamRegistry* reg_ = nullptr;
  std::vector<std::pair<size_t, size_t>> layer_params_;  // per layer: [first, first + count) in reg_
};

}  // namespace megahost::sdk::nn
