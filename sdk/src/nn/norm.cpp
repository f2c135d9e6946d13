// megahost SDK — LayerNorm / RMSNorm (see megahost/sdk/nn/norm.h).
#include "megahost/sdk/nn/norm.h"

#include "megahost/sdk/nn/fused.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/layer_norm.h>
#include <ATen/ops/rsqrt.h>

namespace megahost::sdk::nn {

at::Tensor layer_norm(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, double eps) {
  return at::layer_norm(x, {x.size(-1)}, weight, bias, eps);
}

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  const at::Tensor xf = x.to(at::kFloat);
  const at::Tensor inv_rms = at::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + eps);  // [..., 1]
  return (xf * inv_rms).to(x.scalar_type()) * weight;
}

LayerNorm::LayerNorm(ParamRegistry& reg, const std::string& prefix, int64_t hidden_size, double eps_,
                     uint32_t extra_flags)
    : eps(eps_) {
  weight = reg.create(join_name(prefix, "weight"), {hidden_size}, Init::ones(), -1, MH_PARAM_NO_WEIGHT_DECAY | extra_flags);
  bias = reg.create(join_name(prefix, "bias"), {hidden_size}, Init::zeros(), -1, MH_PARAM_NO_WEIGHT_DECAY | extra_flags);
}

RMSNorm::RMSNorm(ParamRegistry& reg, const std::string& prefix, int64_t hidden_size, double eps_, uint32_t extra_flags)
    : eps(eps_) {
  weight = reg.create(join_name(prefix, "weight"), {hidden_size}, Init::ones(), -1, MH_PARAM_NO_WEIGHT_DECAY | extra_flags);
}

Norm::Norm(ParamRegistry& reg, const std::string& prefix, int64_t hidden_size, NormKind kind, double eps,
           uint32_t extra_flags) {
  if (kind == NormKind::LayerNorm)
    layer_norm_.emplace(reg, prefix, hidden_size, eps, extra_flags);
  else
    rms_norm_.emplace(reg, prefix, hidden_size, eps, extra_flags);
}

at::Tensor Norm::forward(const at::Tensor& x) const {
  return layer_norm_ ? fused::norm(x, layer_norm_->weight, layer_norm_->bias, layer_norm_->eps, false)
                     : fused::norm(x, rms_norm_->weight, at::Tensor(), rms_norm_->eps, true);
}

std::pair<at::Tensor, at::Tensor> Norm::forward_add(const at::Tensor& x, const at::Tensor& residual,
                                                   const at::Tensor& x_bias, double x_dropout) const {
  if (x_dropout > 0.0)
    return layer_norm_ ? fused::add_dropout_norm(x, residual, layer_norm_->weight, layer_norm_->bias, layer_norm_->eps,
                                                 false, x_bias, x_dropout)
                       : fused::add_dropout_norm(x, residual, rms_norm_->weight, at::Tensor(), rms_norm_->eps, true,
                                                 x_bias, x_dropout);
  return layer_norm_
             ? fused::add_norm(x, residual, layer_norm_->weight, layer_norm_->bias, layer_norm_->eps, false, x_bias)
             : fused::add_norm(x, residual, rms_norm_->weight, at::Tensor(), rms_norm_->eps, true, x_bias);
}

std::pair<at::Tensor, at::Tensor> Norm::forward_passthrough(const at::Tensor& x, const at::Tensor& x_bias) const {
  return layer_norm_ ? fused::norm_passthrough(x, layer_norm_->weight, layer_norm_->bias, layer_norm_->eps, false, x_bias)
                     : fused::norm_passthrough(x, rms_norm_->weight, at::Tensor(), rms_norm_->eps, true, x_bias);
}

at::Tensor Norm::forward_rotary(const at::Tensor& x, const at::Tensor& angles) const {
  return layer_norm_ ? fused::head_norm_rotary(x, layer_norm_->weight, layer_norm_->bias, layer_norm_->eps, false, angles)
                     : fused::head_norm_rotary(x, rms_norm_->weight, at::Tensor(), rms_norm_->eps, true, angles);
}

bool parse_norm_kind(const std::string& name, NormKind* out) {
  if (name == "LayerNorm") *out = NormKind::LayerNorm;
  else if (name == "RMSNorm") *out = NormKind::RMSNorm;
  else return false;
  return true;
}

}  // namespace megahost::sdk::nn
