// megahost SDK — transformer layer and block (see megahost/sdk/nn/transformer.h).
#include "megahost/sdk/nn/transformer.h"

#include <ATen/TensorOperators.h>

#include <algorithm>
#include <tuple>
#include <utility>

#include "megahost/sdk/nn/recompute.h"
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
  const auto [h, mlp_out] = forward_deferred(x, at::Tensor(), rotary_freqs, training);
  return h + mlp_out;
}

std::pair<at::Tensor, at::Tensor> TransformerLayer::forward_deferred(const at::Tensor& residual,
                                                                     const at::Tensor& pending,
                                                                     const at::Tensor& rotary_freqs,
                                                                     bool training) const {
  const double p = training ? hidden_dropout_ : 0.0;
  // x = residual + pending and its norm, one fused pass on CUDA (x is then used once: no
  // gradient add for it in backward either).
  at::Tensor x, normed_in;
  if (pending.defined()) {
    std::tie(normed_in, x) = input_layernorm.forward_add(pending, residual);
  } else {
    x = residual;
    normed_in = input_layernorm.forward(x);
  }
  // Megatron's bias-dropout-add: the linear bias is already inside the projections' output.
  // Under sequence parallelism each TP rank holds its own slice of s: per-rank masks.
  const at::Tensor attn = self_attention.forward(normed_in, rotary_freqs, training);
  // h = x + dropout(attn) and the pre-MLP norm of h, one fused pass on CUDA.
  const auto [normed, h] = pre_mlp_layernorm.forward_add(parallel::hidden_dropout(attn, p, training, parallel_.get()), x);
  return {h, parallel::hidden_dropout(mlp.forward(normed), p, training, parallel_.get())};
}

TransformerBlock::TransformerBlock(ParamRegistry& reg, const std::string& prefix, const TransformerConfig& cfg,
                                   int64_t first_layer, int64_t num_local_layers, bool with_final_layernorm)
    : recompute_granularity_(cfg.recompute_granularity),
      recompute_method_(cfg.recompute_method),
      recompute_num_layers_(cfg.recompute_num_layers) {
  check_recompute(cfg);
  for (int64_t i = first_layer; i < first_layer + num_local_layers; ++i)
    layers.push_back(
        std::make_unique<TransformerLayer>(reg, join_name(prefix, "layers." + std::to_string(i)), cfg));
  if (with_final_layernorm)
    final_layernorm = std::make_unique<Norm>(reg, join_name(prefix, "final_layernorm"), cfg.hidden_size,
                                             cfg.normalization, cfg.norm_epsilon,
                                             sequence_parallel_flag(cfg.parallel.get()));
}

std::pair<at::Tensor, at::Tensor> TransformerBlock::forward_span(size_t begin, size_t end, const at::Tensor& x,
                                                                const at::Tensor& rotary_freqs, bool training) const {
  std::pair<at::Tensor, at::Tensor> state{x, at::Tensor()};  // (residual, pending)
  for (size_t i = begin; i < end; ++i)
    state = layers[i]->forward_deferred(state.first, state.second, rotary_freqs, training);
  return state;
}

at::Tensor TransformerBlock::forward_layers(size_t begin, size_t end, const at::Tensor& x,
                                           const at::Tensor& rotary_freqs, bool training) const {
  const auto [h, pending] = forward_span(begin, end, x, rotary_freqs, training);
  return pending.defined() ? h + pending : h;
}

at::Tensor TransformerBlock::forward(const at::Tensor& x, const at::Tensor& rotary_freqs, bool training) const {
  at::Tensor h = x;
  const size_t n = layers.size();
  if (!training || recompute_granularity_ != RecomputeGranularity::Full) {
    const auto [residual, pending] = forward_span(0, n, h, rotary_freqs, training);
    // The last layer's add happens inside the final norm when this stage has it.
    if (final_layernorm && pending.defined()) return final_layernorm->forward_add(pending, residual).first;
    h = pending.defined() ? residual + pending : residual;
  } else {
    // Full recompute: a checkpointed span keeps only its input; backward reruns its layers.
    auto span = [&](size_t begin, size_t end) {
      return [this, begin, end, training](const std::vector<at::Tensor>& in) {
        return forward_layers(begin, end, in[0], in[1], training);
      };
    };
    const auto k = static_cast<size_t>(recompute_num_layers_);
    if (recompute_method_ == RecomputeMethod::Uniform) {
      for (size_t begin = 0; begin < n; begin += k) h = checkpoint(span(begin, std::min(begin + k, n)), {h, rotary_freqs});
    } else {  // Block
      for (size_t i = 0; i < n; ++i)
        h = i < k ? checkpoint(span(i, i + 1), {h, rotary_freqs}) : forward_layers(i, i + 1, h, rotary_freqs, training);
    }
  }
  return final_layernorm ? final_layernorm->forward(h) : h;
}

}  // namespace megahost::sdk::nn
