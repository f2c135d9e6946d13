// megahost SDK — transformer layer and block (see megahost/sdk/nn/transformer.h).
#include "megahost/sdk/nn/transformer.h"

#include <ATen/TensorOperators.h>

#include "megahost/sdk/parallel/random.h"

namespace megahost::sdk::nn {

TransformerLayer::TransformerLayer(ParamRegistry& reg, const std::string& prefix, const TransformerConfig& cfg)
    : input_layernorm(reg, join_name(prefix, "input_layernorm"), cfg.hidden_size, cfg.normalization, cfg.norm_epsilon,
                      sequence_parallel_flag(cfg.parallel.get())),
      self_attention(reg, join_name(prefix, "self_attention"), cfg),
      pre_mlp_layernorm(reg, join_name(prefix, "pre_mlp_layernorm"), cfg.hidden_size, cfg.normalization,
                        cfg.norm_epsilon, sequence_parallel_flag(cfg.parallel.get())),
      mlp(reg, join_name(prefix, "mlp"), cfg),
      hidden_dropout_(cfg.hidden_dropout),
      parallel_(cfg.parallel) {}

at::Tensor TransformerLayer::forward(const at::Tensor& x, const at::Tensor& rotary_freqs, bool training) const {
  const double p = training ? hidden_dropout_ : 0.0;
  // Megatron's bias-dropout-add: the linear bias is already inside the projections' output.
  // Under sequence parallelism each TP rank holds its own slice of s: per-rank masks.
  const at::Tensor attn = self_attention.forward(input_layernorm.forward(x), rotary_freqs, training);
  const at::Tensor h = x + parallel::hidden_dropout(attn, p, training, parallel_.get());
  return h + parallel::hidden_dropout(mlp.forward(pre_mlp_layernorm.forward(h)), p, training, parallel_.get());
}

TransformerBlock::TransformerBlock(ParamRegistry& reg, const std::string& prefix, const TransformerConfig& cfg,
                                   int64_t first_layer, int64_t num_local_layers, bool with_final_layernorm) {
  for (int64_t i = first_layer; i < first_layer + num_local_layers; ++i)
    layers.push_back(
        std::make_unique<TransformerLayer>(reg, join_name(prefix, "layers." + std::to_string(i)), cfg));
  if (with_final_layernorm)
    final_layernorm = std::make_unique<Norm>(reg, join_name(prefix, "final_layernorm"), cfg.hidden_size,
                                             cfg.normalization, cfg.norm_epsilon,
                                             sequence_parallel_flag(cfg.parallel.get()));
}

at::Tensor TransformerBlock::forward(const at::Tensor& x, const at::Tensor& rotary_freqs, bool training) const {
  at::Tensor h = x;
  for (const auto& layer : layers) h = layer->forward(h, rotary_freqs, training);
  return final_layernorm ? final_layernorm->forward(h) : h;
}

}  // namespace megahost::sdk::nn
