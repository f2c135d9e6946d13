// megahost SDK — tensor-parallel linear layers (see megahost/sdk/nn/linear.h).
#include "megahost/sdk/nn/linear.h"

#include <ATen/ops/linear.h>

namespace megahost::sdk::nn {

ColumnParallelLinear::ColumnParallelLinear(ParamRegistry& reg, const std::string& prefix, int64_t in_features,
                                           int64_t out_features, bool with_bias, const Init& weight_init) {
  weight = reg.create(join_name(prefix, "weight"), {out_features, in_features}, weight_init, 0, 0);
  if (with_bias)
    bias = reg.create(join_name(prefix, "bias"), {out_features}, Init::zeros(), 0, MH_PARAM_NO_WEIGHT_DECAY);
}

at::Tensor ColumnParallelLinear::forward(const at::Tensor& x) const { return at::linear(x, weight, bias); }

RowParallelLinear::RowParallelLinear(ParamRegistry& reg, const std::string& prefix, int64_t in_features,
                                     int64_t out_features, bool with_bias, const Init& weight_init) {
  weight = reg.create(join_name(prefix, "weight"), {out_features, in_features}, weight_init, 1, 0);
  if (with_bias)
    bias = reg.create(join_name(prefix, "bias"), {out_features}, Init::zeros(), -1, MH_PARAM_NO_WEIGHT_DECAY);
}

at::Tensor RowParallelLinear::forward(const at::Tensor& x) const { return at::linear(x, weight, bias); }

}  // namespace megahost::sdk::nn
