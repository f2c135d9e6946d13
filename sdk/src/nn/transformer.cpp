// megahost SDK — transformer layer and block (see megahost/sdk/nn/transformer.h).
#include "megahost/sdk/nn/transformer.h"

#include <ATen/TensorOperators.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <tuple>
#include <utility>

#include "megahost/sdk/nn/fused.h"
#include "megahost/sdk/nn/recompute.h"
#include "megahost/sdk/parallel/random.h"

namespace megahost::sdk::nn {

namespace {
// MEGAHOST_RESIDUAL_IN_GEMM=1: the residual adds inside linear_proj's and linear_fc2's products.
// Off by default: on the H200 (GPT-1.3B, one call, profiled) the norms' forward got 0.9 ms/iter
// faster but those products, reading the stream, 2.0 ms slower (kernels 241.2 against 239.9 ms).
// Read when a layer is built (tests build blocks both ways).
bool residual_in_products_enabled() {
  const char* v = std::getenv("MEGAHOST_RESIDUAL_IN_GEMM");
  return v != nullptr && std::string(v) == "1";
}
}  // namespace

TransformerLayer::TransformerLayer(ParamRegistry& reg, const std::string& prefix, const TransformerConfig& cfg)
    : input_layernorm(reg, join_name(prefix, "input_layernorm"), cfg.hidden_size, cfg.normalization, cfg.norm_epsilon,
                      sequence_parallel_flag(cfg.parallel.get())),
      self_attention(reg, join_name(prefix, "self_attention"), cfg),
      pre_mlp_layernorm(reg, join_name(prefix, "pre_mlp_layernorm"), cfg.hidden_size, cfg.normalization,
                        cfg.norm_epsilon, sequence_parallel_flag(cfg.parallel.get())),
      mlp(reg, join_name(prefix, "mlp"), cfg),
      hidden_dropout_(cfg.hidden_dropout),
      residual_in_products_(residual_in_products_enabled() && (cfg.parallel == nullptr || cfg.parallel->tp.size() == 1)),
      parallel_(cfg.parallel) {}

at::Tensor DeferredResidual::materialize() const {
  // The bias is inside residual already; (b - b) adds nothing but gives it its gradient here.
  if (!delta.defined()) return added_bias.defined() ? residual + (added_bias - added_bias.detach()) : residual;
  const at::Tensor out = delta_bias.defined() ? delta + delta_bias : delta;
  return residual + (delta_dropout > 0.0 ? parallel::hidden_dropout(out, delta_dropout, true, parallel.get()) : out);
}

std::pair<at::Tensor, at::Tensor> DeferredResidual::norm_with(const Norm& norm) const {
  if (delta.defined()) {
    const auto dropout_generator = hidden_dropout_generator(delta_dropout, parallel.get(), delta.device());
    return norm.forward_add(delta, residual, delta_bias, delta_dropout);
  }
  if (added_bias.defined()) return norm.forward_passthrough(residual, added_bias);
  return {norm.forward(residual), residual};
}

std::optional<parallel::ScopedDefaultGenerator> hidden_dropout_generator(double p,
                                                                        const parallel::ParallelContext* parallel,
                                                                        const at::Device& device) {
  if (p == 0.0 || parallel == nullptr || !parallel->sequence_parallel || parallel->tp.size() == 1) return std::nullopt;
  return std::optional<parallel::ScopedDefaultGenerator>(std::in_place,
                                                         parallel::tensor_parallel_generator(device, parallel->tp));
}

namespace {
// MEGAHOST_FUSED_DROPOUT=0: the hidden dropout as libtorch's kernel before the add + norm, and the
// output biases in the products (the A/B of docs/performance.md).
bool fused_dropout_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("MEGAHOST_FUSED_DROPOUT");
    return v == nullptr || std::string(v) != "0";
  }();
  return on;
}
}  // namespace

HiddenDropoutPlan plan_hidden_dropout(double p, const at::Tensor& activation) {
  HiddenDropoutPlan plan;
  const bool fused = fused::available(activation);
  plan.in_norm = p > 0.0 && fused && fused_dropout_enabled();
  plan.fold_bias = (p == 0.0 || plan.in_norm) && fused;
  plan.norm_p = plan.in_norm ? p : 0.0;
  return plan;
}

at::Tensor TransformerLayer::forward(const at::Tensor& x, const at::Tensor& rotary_freqs, bool training,
                                     const at::Tensor& key_padding) const {
  return forward_deferred({x, at::Tensor(), at::Tensor()}, rotary_freqs, training, key_padding).materialize();
}

DeferredResidual TransformerLayer::forward_deferred(const DeferredResidual& in, const at::Tensor& rotary_freqs,
                                                    bool training, const at::Tensor& key_padding) const {
  const double p = training ? hidden_dropout_ : 0.0;
  // x = residual + delta (+ bias) and its norm, one fused pass on CUDA (x is then used once: no
  // gradient add for it in backward either).
  const bool fold_residual = p == 0.0 && residual_in_products_ && fused::available(in.residual);
  at::Tensor x, normed_in;
  if (fold_residual && !in.delta.defined())
    std::tie(normed_in, x) = input_layernorm.forward_passthrough(in.residual, in.added_bias);
  else
    std::tie(normed_in, x) = in.norm_with(input_layernorm);
  if (fold_residual) {
    // The residual adds inside linear_proj's and linear_fc2's products (beta = 1 over the stream,
    // their biases in the epilogue), each norm reading the finished stream once: the norms'
    // forward passes read one [s, b, h] tensor instead of two and write one instead of two. The
    // biases' gradients come out of the next norm's backward, as with the fold below.
    const at::Tensor h = self_attention.forward(normed_in, rotary_freqs, training, /*skip_bias=*/true, x, key_padding);
    const auto [normed, h_stream] = pre_mlp_layernorm.forward_passthrough(h, self_attention.linear_proj.bias);
    return {mlp.forward(normed, /*skip_bias=*/true, h_stream), at::Tensor(), at::Tensor(), mlp.linear_fc2.bias};
  }
  // Megatron's bias-dropout-add. On CUDA the output biases of linear_proj and linear_fc2 join the
  // residual add inside the next fused add + norm (skip_bias_add), whose backward pass then yields
  // their gradients: no bias-gradient pass over [s*b, hidden] of their own. The hidden dropout
  // joins that pass too (fused::add_dropout_norm: the mask drawn there, one bit per element kept);
  // under sequence parallelism each TP rank draws its slice of s from its own generator
  // (hidden_dropout_generator).
  const HiddenDropoutPlan plan = plan_hidden_dropout(p, normed_in);
  auto dropout_outside = [&](const at::Tensor& t) {
    return plan.in_norm ? t : parallel::hidden_dropout(t, p, training, parallel_.get());
  };
  const at::Tensor attn =
      self_attention.forward(normed_in, rotary_freqs, training, plan.fold_bias, at::Tensor(), key_padding);
  const at::Tensor proj_bias = plan.fold_bias ? self_attention.linear_proj.bias : at::Tensor();
  // h = x + dropout(attn) and the pre-MLP norm of h, one fused pass on CUDA.
  const DeferredResidual after_attention{x, dropout_outside(attn), proj_bias, at::Tensor(), plan.norm_p, parallel_};
  const auto [normed, h] = after_attention.norm_with(pre_mlp_layernorm);
  const at::Tensor mlp_out = mlp.forward(normed, plan.fold_bias);
  return {h,           dropout_outside(mlp_out), plan.fold_bias ? mlp.linear_fc2.bias : at::Tensor(), at::Tensor(),
          plan.norm_p, parallel_};
}

TransformerBlock::TransformerBlock(ParamRegistry& reg, const std::string& prefix, const TransformerConfig& cfg,
                                   int64_t first_layer, int64_t num_local_layers, bool with_final_layernorm)
    : parallel_(cfg.parallel),
      recompute_granularity_(cfg.recompute_granularity),
      recompute_method_(cfg.recompute_method),
      recompute_num_layers_(cfg.recompute_num_layers),
      reg_(&reg) {
  check_recompute(cfg);
  for (int64_t i = first_layer; i < first_layer + num_local_layers; ++i) {
    const size_t before = reg.params().size();
    layers.push_back(
        std::make_unique<TransformerLayer>(reg, join_name(prefix, "layers." + std::to_string(i)), cfg));
    layer_params_.emplace_back(before, reg.params().size() - before);
    reg.mark_layer(before, reg.params().size() - before);
  }
  if (with_final_layernorm)
    final_layernorm = std::make_unique<Norm>(reg, join_name(prefix, "final_layernorm"), cfg.hidden_size,
                                             cfg.normalization, cfg.norm_epsilon,
                                             sequence_parallel_flag(cfg.parallel.get()));
}

DeferredResidual TransformerBlock::forward_span(size_t begin, size_t end, const at::Tensor& x,
                                               const at::Tensor& rotary_freqs, const at::Tensor& key_padding,
                                               bool training) const {
  DeferredResidual state{x, at::Tensor(), at::Tensor()};
  for (size_t i = begin; i < end; ++i) {
    gate_layer(i);
    state = layers[i]->forward_deferred(state, rotary_freqs, training, key_padding);
  }
  // After the registry's last layer come the final norm and the output layer.
  if (end == layers.size() && end > 0 && reg_->has_gate() &&
      reg_->is_last_layer(layer_params_.back().first, layer_params_.back().second))
    reg_->gate_after_layers();
  return state;
}

void TransformerBlock::gate_layer(size_t i) const {
  if (reg_->has_gate()) reg_->gate(layer_params_[i].first, layer_params_[i].second);
}

at::Tensor TransformerBlock::forward_layers(size_t begin, size_t end, const at::Tensor& x,
                                           const at::Tensor& rotary_freqs, const at::Tensor& key_padding,
                                           bool training) const {
  return forward_span(begin, end, x, rotary_freqs, key_padding, training).materialize();
}

at::Tensor TransformerBlock::forward(const at::Tensor& x, const at::Tensor& rotary_freqs, bool training,
                                     const at::Tensor& key_padding) const {
  at::Tensor h = x;
  const size_t n = layers.size();
  if (!training || recompute_granularity_ != RecomputeGranularity::Full) {
    const DeferredResidual out = forward_span(0, n, h, rotary_freqs, key_padding, training);
    // The last layer's add happens inside the final norm when this stage has it.
    if (final_layernorm) return out.norm_with(*final_layernorm).first;
    h = out.materialize();
  } else {
    // Full recompute: a checkpointed span keeps only its input; backward reruns its layers.
    auto span = [&](size_t begin, size_t end) {
      return [this, begin, end, training](const std::vector<at::Tensor>& in) {
        return forward_layers(begin, end, in[0], in[1], in[2], training);
      };
    };
    const auto k = static_cast<size_t>(recompute_num_layers_);
    if (recompute_method_ == RecomputeMethod::Uniform) {
      for (size_t begin = 0; begin < n; begin += k)
        h = checkpoint(span(begin, std::min(begin + k, n)), {h, rotary_freqs, key_padding});
    } else {  // Block
      for (size_t i = 0; i < n; ++i)
        h = i < k ? checkpoint(span(i, i + 1), {h, rotary_freqs, key_padding})
                  : forward_layers(i, i + 1, h, rotary_freqs, key_padding, training);
    }
  }
  return final_layernorm ? final_layernorm->forward(h) : h;
}

}  // namespace megahost::sdk::nn
