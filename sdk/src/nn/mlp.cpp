// megahost SDK — MLP (see megahost/sdk/nn/mlp.h).
#include "megahost/sdk/nn/mlp.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/gelu.h>
#include <ATen/ops/silu.h>

#include "megahost/sdk/error.h"
#include "megahost/sdk/nn/fused.h"

namespace megahost::sdk::nn {

at::Tensor swiglu(const at::Tensor& x) {
  const int64_t ffn = x.size(-1) / 2;
  return at::silu(x.narrow(-1, 0, ffn)) * x.narrow(-1, ffn, ffn);
}

MLP::MLP(ParamRegistry& reg, const std::string& prefix, const TransformerConfig& cfg)
    : linear_fc1(reg, join_name(prefix, "linear_fc1"), cfg.hidden_size,
                 cfg.activation == Activation::SwiGLU ? 2 * cfg.ffn_hidden_size : cfg.ffn_hidden_size,
                 cfg.add_bias_linear, Init::normal(cfg.init_method_std), cfg.parallel,
                 /*glu_halves=*/cfg.activation == Activation::SwiGLU),
      linear_fc2(reg, join_name(prefix, "linear_fc2"), cfg.ffn_hidden_size, cfg.hidden_size, cfg.add_bias_linear,
                 Init::normal(cfg.output_layer_init_std()), cfg.parallel),
      activation_(cfg.activation),
      bias_gelu_fusion_(cfg.bias_activation_fusion),
      gelu_tanh_(cfg.gelu_tanh),
      tensor_parallel_(cfg.parallel != nullptr && cfg.parallel->tp.size() > 1) {
  linear_fc1.gradient_accumulation_fusion = cfg.gradient_accumulation_fusion;
  linear_fc2.gradient_accumulation_fusion = cfg.gradient_accumulation_fusion;
}

at::Tensor MLP::forward(const at::Tensor& x, bool skip_bias, const at::Tensor& residual) const {
  if (residual.defined()) {
    MH_CHECK(!tensor_parallel_, MH_ERR_INVALID_ARG,
             "MLP: a residual inside fc2's product needs tp = 1 (the partial sums are reduced after it)");
    if (activation_ == Activation::GeLU && bias_gelu_fusion_ && gelu_tanh_ && linear_fc1.bias.defined() &&
        fused::available(x)) {
      const bool accumulate = linear_fc1.gradient_accumulation_fusion && x.is_cuda();
      return fused::gelu_mlp_add(x, linear_fc1.weight, linear_fc1.bias, linear_fc2.weight, linear_fc2.bias, residual,
                                 accumulate, skip_bias);
    }
    return linear_fc2.forward(hidden_activation(x), skip_bias, residual);
  }
  const at::Tensor fc2_bias = skip_bias ? at::Tensor() : linear_fc2.bias;
  if (activation_ == Activation::GeLU && bias_gelu_fusion_ && linear_fc1.bias.defined() && fused::available(x)) {
    // Megatron's bias_gelu_fusion. tanh: fc1 + bias + GeLU in one GEMM (cuBLASLt epilogue), fc2's
    // product in the same autograd node so its input-gradient GEMM also applies GeLU's gradient.
    if (gelu_tanh_) {
      const at::Tensor in = linear_fc1.input_region(x);
      const bool accumulate = linear_fc1.gradient_accumulation_fusion && in.is_cuda();
      // Without TP fc2's bias rides in its GEMM; with TP it comes after the reduction.
      if (!tensor_parallel_)
        return fused::gelu_mlp(in, linear_fc1.weight, linear_fc1.bias, linear_fc2.weight, fc2_bias, accumulate);
      return linear_fc2.reduce_output(
          fused::gelu_mlp(in, linear_fc1.weight, linear_fc1.bias, linear_fc2.weight, at::Tensor(), accumulate),
          skip_bias);
    }
  }
  return linear_fc2.forward(hidden_activation(x), skip_bias);
}

at::Tensor MLP::hidden_activation(const at::Tensor& x) const {
  if (activation_ == Activation::GeLU && bias_gelu_fusion_ && !gelu_tanh_ && linear_fc1.bias.defined() &&
      fused::available(x)) {
    // erf: the bias add happens inside the fused GeLU kernel.
    const at::Tensor h = linear_fc1.forward(x, /*skip_bias=*/true);  // [..., ffn/tp]
    return fused::bias_gelu(h, linear_fc1.bias);
  }
  // [..., ffn/tp] or [..., 2 * ffn/tp]: under TP each rank holds its slice of gate AND of up
  const at::Tensor h = linear_fc1.forward(x);
  if (activation_ == Activation::SwiGLU) return fused::swiglu(h);
  return at::gelu(h, gelu_tanh_ ? "tanh" : "none");
}

}  // namespace megahost::sdk::nn
