// megahost SDK — Megatron-Core's tensor-parallel linear layers.
//
// The weight is [out, in] as in torch and Megatron; every parameter is drawn FULL (the
// single-process values) and each tensor-parallel rank keeps its slice.
//  - ColumnParallelLinear splits the OUTPUT features (weight dim 0, bias dim 0). Its input is
//    copied to the TP region (identity forward, all-reduce of the input grad backward), or
//    all-gathered along the sequence under sequence parallelism (reduce-scatter backward).
//  - RowParallelLinear splits the INPUT features (weight dim 1; the input is already split).
//    The partial outputs are all-reduced (reduce-scattered along the sequence under sequence
//    parallelism), then the replicated bias is added once (flagged MH_PARAM_SEQUENCE_PARALLEL
//    under sequence parallelism: its grad then covers only this rank's tokens).
// Without a ParallelContext (or with a size-1 tp group) both are a plain y = x W^T + b.
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>
#include <string>

#include "megahost/sdk/nn/params.h"
#include "megahost/sdk/parallel/mappings.h"

namespace megahost::sdk::nn {

using ParallelContextPtr = std::shared_ptr<const parallel::ParallelContext>;

// A parameter split along tp_dim across the TP ranks of `parallel` (null: kept whole): drawn
// full as ParamRegistry::create draws it, this rank's slice registered (see create_sharded).
at::Tensor create_tensor_parallel(ParamRegistry& reg, const std::string& name, at::IntArrayRef full_shape,
                                  const Init& init, int32_t tp_dim, uint32_t flags,
                                  const parallel::ParallelContext* parallel, bool glu_halves = false);

// MH_PARAM_SEQUENCE_PARALLEL under sequence parallelism, else 0.
uint32_t sequence_parallel_flag(const parallel::ParallelContext* parallel);

class ColumnParallelLinear {
 public:
  // Registers "<prefix>.weight" [out, in] (tp dim 0) and, with bias, "<prefix>.bias" [out]
  // (tp dim 0, no weight decay, zeros). out_features is the FULL width. glu_halves: the output
  // is two halves (SwiGLU gate, up), each split across TP ranks on its own.
  ColumnParallelLinear(ParamRegistry& reg, const std::string& prefix, int64_t in_features, int64_t out_features,
                       bool bias, const Init& weight_init, ParallelContextPtr parallel = nullptr,
                       bool glu_halves = false);
  // x [..., in] ([s/tp, b, in] under sequence parallelism) -> [..., out/tp] ([s, b, out/tp])
  // skip_bias (Megatron's skip_bias_add): leave the bias to the caller, e.g. a fused bias + GeLU.
  at::Tensor forward(const at::Tensor& x, bool skip_bias = false) const;
  // What forward multiplies: x itself, or x entering the TP region (all-gathered under sequence
  // parallelism). For callers that fuse the product with what follows (fused::gelu_mlp).
  at::Tensor input_region(const at::Tensor& x) const;

  at::Tensor weight, bias;  // bias undefined without bias
  // Megatron's gradient_accumulation_fusion: on CUDA the weight gradient is added straight into
  // weight.grad() (fused::linear). Set by the owner; the weight must have no other use.
  bool gradient_accumulation_fusion = false;

 private:
  ParallelContextPtr parallel_;
};

class RowParallelLinear {
 public:
  // Registers "<prefix>.weight" [out, in] (tp dim 1) and, with bias, "<prefix>.bias" [out]
  // (replicated, no weight decay, zeros). in_features is the FULL width.
  RowParallelLinear(ParamRegistry& reg, const std::string& prefix, int64_t in_features, int64_t out_features,
                    bool bias, const Init& weight_init, ParallelContextPtr parallel = nullptr);
  // x [..., in/tp] -> [..., out] ([s, b, in/tp] -> [s/tp, b, out] under sequence parallelism)
  // skip_bias: the bias is left for the caller to add (Megatron's skip_bias_add: a fused add + norm
  // adds it with the residual).
  // residual [..., out] (tp = 1 only; may be undefined): added inside the product, with the bias
  // even under skip_bias, whose gradient is then the caller's (fused::norm_passthrough's x_bias).
  at::Tensor forward(const at::Tensor& x, bool skip_bias = false, const at::Tensor& residual = at::Tensor()) const;
  // The rest of forward after the product: partial [..., out] (this rank's share) -> all-reduced
  // (reduce-scattered under sequence parallelism) + bias (unless skip_bias).
  at::Tensor reduce_output(const at::Tensor& partial, bool skip_bias = false) const;

  at::Tensor weight, bias;
  bool gradient_accumulation_fusion = false;  // as ColumnParallelLinear's

 private:
  ParallelContextPtr parallel_;
};

// The output layer (Megatron's parallel_lm_logits): hidden [s, b, h] ([s/tp, b, h] under
// sequence parallelism), weight [V/tp, h] (this rank's vocab slice) -> logits [s, b, V/tp].
// accumulate_into_grad / notify_grad_ready: as fused::linear (the weight gradient straight into
// the bound main gradient; for the tied word table the input embedding fires its hook).
at::Tensor parallel_lm_logits(const at::Tensor& hidden, const at::Tensor& weight,
                              const parallel::ParallelContext* parallel, bool accumulate_into_grad = false,
                              bool notify_grad_ready = true);

}  // namespace megahost::sdk::nn
