// megahost SDK — LayerNorm and RMSNorm over the last dim, and Norm that is either (the
// recipe's normalization = "LayerNorm" | "RMSNorm"). Weights start at one, biases at zero; both
// are replicated across TP ranks and carry MH_PARAM_NO_WEIGHT_DECAY (plus extra_flags: the
// layers pass MH_PARAM_SEQUENCE_PARALLEL under sequence parallelism).
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <string>

#include "megahost/sdk/nn/params.h"
#include "megahost/sdk/nn/transformer_config.h"

namespace megahost::sdk::nn {

// y = (x - mean) / sqrt(var + eps) * weight + bias   (biased variance, as torch)
at::Tensor layer_norm(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, double eps);
// y = x / sqrt(mean(x^2) + eps) * weight, statistics in float32 (as the fused kernels do)
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps);

class LayerNorm {
 public:
  // Registers "<prefix>.weight" (ones) and "<prefix>.bias" (zeros), [hidden] each.
  LayerNorm(ParamRegistry& reg, const std::string& prefix, int64_t hidden_size, double eps,
            uint32_t extra_flags = 0);
  at::Tensor forward(const at::Tensor& x) const { return layer_norm(x, weight, bias, eps); }
  at::Tensor weight, bias;
  double eps;
};

class RMSNorm {
 public:
  // Registers "<prefix>.weight" (ones), [hidden].
  RMSNorm(ParamRegistry& reg, const std::string& prefix, int64_t hidden_size, double eps, uint32_t extra_flags = 0);
  at::Tensor forward(const at::Tensor& x) const { return rms_norm(x, weight, eps); }
  at::Tensor weight;
  double eps;
};

class Norm {
 public:
  Norm(ParamRegistry& reg, const std::string& prefix, int64_t hidden_size, NormKind kind, double eps,
       uint32_t extra_flags = 0);
  at::Tensor forward(const at::Tensor& x) const;  // [..., hidden] -> same
  // (norm(residual + x), residual + x) in one fused pass on CUDA: the sub-layer's residual add
  // and the next norm. x, residual [..., hidden]; x_bias [hidden] (may be undefined) is added to
  // x first: the sub-layer's output bias when its linear skipped it. x_dropout > 0 (training):
  // x (+ x_bias) is dropped out first, in the same pass on CUDA (Megatron's bias-dropout-add).
  std::pair<at::Tensor, at::Tensor> forward_add(const at::Tensor& x, const at::Tensor& residual,
                                                const at::Tensor& x_bias = at::Tensor(), double x_dropout = 0.0) const;
  // (norm(x), x') with x' the residual stream's copy of x (fused::norm_passthrough): its backward
  // adds the stream's gradient in the norm's pass. x_bias [hidden] (may be undefined): a bias the
  // product that made x added already; its gradient comes out of the same pass.
  std::pair<at::Tensor, at::Tensor> forward_passthrough(const at::Tensor& x, const at::Tensor& x_bias = at::Tensor()) const;
  // Per head, then rotated (attention's qk_layernorm; fused::head_norm_rotary): x [s, b, n, hn] or
  // [s, b, n1, n2, hn] at any strides, angles [s, 1, 1, rot] or undefined -> [s, b, n, hn].
  at::Tensor forward_rotary(const at::Tensor& x, const at::Tensor& angles) const;

 private:
  std::optional<LayerNorm> layer_norm_;
  std::optional<RMSNorm> rms_norm_;
};

// Parses "LayerNorm" | "RMSNorm"; false for anything else.
bool parse_norm_kind(const std::string& name, NormKind* out);

}  // namespace megahost::sdk::nn
