// megahost SDK — Megatron-Core's MLP: linear_fc1 (column parallel) -> activation -> linear_fc2
// (row parallel).
//   GeLU:   fc1 [hidden -> ffn],     act = gelu (exact erf form, torch's default; or the tanh form)
//   SwiGLU: fc1 [hidden -> 2 * ffn], act = silu(first half) * second half   (gate, then up)
#pragma once

#include <ATen/core/Tensor.h>

#include <string>

#include "megahost/sdk/nn/linear.h"
#include "megahost/sdk/nn/params.h"
#include "megahost/sdk/nn/transformer_config.h"

namespace megahost::sdk::nn {

// x [..., 2 * ffn] -> silu(x[..., :ffn]) * x[..., ffn:]
at::Tensor swiglu(const at::Tensor& x);

class MLP {
 public:
  // Registers "<prefix>.linear_fc1.*" and "<prefix>.linear_fc2.*".
  MLP(ParamRegistry& reg, const std::string& prefix, const TransformerConfig& cfg);
  // [..., hidden] -> [..., hidden]; skip_bias: linear_fc2's bias is left to the caller. residual:
  // added in linear_fc2's product (tp = 1; see RowParallelLinear::forward).
  at::Tensor forward(const at::Tensor& x, bool skip_bias = false, const at::Tensor& residual = at::Tensor()) const;

  ColumnParallelLinear linear_fc1;
  RowParallelLinear linear_fc2;

 private:
  // fc1 and the activation: linear_fc2's input [..., ffn/tp] (paths without fc2 in the same node).
  at::Tensor hidden_activation(const at::Tensor& x) const;

  Activation activation_;
  bool bias_gelu_fusion_ = true;
  bool gelu_tanh_ = false;
  bool tensor_parallel_ = false;
};

}  // namespace megahost::sdk::nn
