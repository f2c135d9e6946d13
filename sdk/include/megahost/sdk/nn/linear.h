// megahost SDK — Megatron-Core's tensor-parallel linear layers (single device for now).
//
// The weight is [out, in] as in torch and Megatron. Under tensor parallelism:
//  - ColumnParallelLinear splits the OUTPUT features (weight dim 0, bias dim 0); its input is
//    copied to the TP region (identity forward, all-reduce of the input grad backward).
//  - RowParallelLinear splits the INPUT features (weight dim 1); the partial outputs are
//    all-reduced, then the replicated bias is added once.
// Today both are a plain y = x W^T + b; the metadata (tensor_parallel_dim) is already recorded so
// the core can shard, reduce and reshard them.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>

#include "megahost/sdk/nn/params.h"

namespace megahost::sdk::nn {

class ColumnParallelLinear {
 public:
  // Registers "<prefix>.weight" [out, in] (tp dim 0) and, with bias, "<prefix>.bias" [out]
  // (tp dim 0, no weight decay, zeros).
  ColumnParallelLinear(ParamRegistry& reg, const std::string& prefix, int64_t in_features,
                       int64_t out_features, bool bias, const Init& weight_init);
  // x [..., in] -> [..., out]
  at::Tensor forward(const at::Tensor& x) const;

  at::Tensor weight, bias;  // bias undefined without bias
};

class RowParallelLinear {
 public:
  // Registers "<prefix>.weight" [out, in] (tp dim 1) and, with bias, "<prefix>.bias" [out]
  // (replicated, no weight decay, zeros).
  RowParallelLinear(ParamRegistry& reg, const std::string& prefix, int64_t in_features,
                    int64_t out_features, bool bias, const Init& weight_init);
  // x [..., in] -> [..., out]
  at::Tensor forward(const at::Tensor& x) const;

  at::Tensor weight, bias;
};

}  // namespace megahost::sdk::nn
