// megahost SDK — tensor-parallel linear layers (see megahost/sdk/nn/linear.h).
#include "megahost/sdk/nn/linear.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/linear.h>

#include "megahost/sdk/error.h"
#include "megahost/sdk/nn/fused.h"

namespace megahost::sdk::nn {

namespace {
bool tensor_parallel(const parallel::ParallelContext* p) { return p != nullptr && p->tp.size() > 1; }

// The input of a column-parallel layer: whole on every rank.
at::Tensor column_input(const at::Tensor& x, const parallel::ParallelContext& p) {
  return p.sequence_parallel ? parallel::gather_from_sequence_parallel_region(x, p.tp)
                             : parallel::copy_to_tp_region(x, p.tp);
}
}  // namespace

at::Tensor create_tensor_parallel(ParamRegistry& reg, const std::string& name, at::IntArrayRef full_shape,
                                  const Init& init, int32_t tp_dim, uint32_t flags,
                                  const parallel::ParallelContext* parallel, bool glu_halves) {
  if (!tensor_parallel(parallel)) return reg.create(name, full_shape, init, tp_dim, flags);
  return reg.create_sharded(name, full_shape, init, tp_dim, parallel->tp.rank(), parallel->tp.size(), flags,
                            glu_halves);
}

uint32_t sequence_parallel_flag(const parallel::ParallelContext* parallel) {
  return parallel != nullptr && parallel->sequence_parallel ? MH_PARAM_SEQUENCE_PARALLEL : 0u;
}

ColumnParallelLinear::ColumnParallelLinear(ParamRegistry& reg, const std::string& prefix, int64_t in_features,
                                           int64_t out_features, bool with_bias, const Init& weight_init,
                                           ParallelContextPtr parallel, bool glu_halves)
    : parallel_(std::move(parallel)) {
  weight = create_tensor_parallel(reg, join_name(prefix, "weight"), {out_features, in_features}, weight_init, 0, 0,
                                  parallel_.get(), glu_halves);
  if (with_bias)
    bias = create_tensor_parallel(reg, join_name(prefix, "bias"), {out_features}, Init::zeros(), 0,
                                  MH_PARAM_NO_WEIGHT_DECAY, parallel_.get(), glu_halves);
}

at::Tensor ColumnParallelLinear::input_region(const at::Tensor& x) const {
  return tensor_parallel(parallel_.get()) ? column_input(x, *parallel_) : x;
}

at::Tensor ColumnParallelLinear::forward(const at::Tensor& x, bool skip_bias) const {
  const at::Tensor b = skip_bias ? at::Tensor() : bias;
  const at::Tensor in = input_region(x);
  return fused::linear(in, weight, b, gradient_accumulation_fusion && in.is_cuda());  // [..., out/tp]
}

RowParallelLinear::RowParallelLinear(ParamRegistry& reg, const std::string& prefix, int64_t in_features,
                                     int64_t out_features, bool with_bias, const Init& weight_init,
                                     ParallelContextPtr parallel)
    : parallel_(std::move(parallel)) {
  weight = create_tensor_parallel(reg, join_name(prefix, "weight"), {out_features, in_features}, weight_init, 1, 0,
                                  parallel_.get());
  if (with_bias)
    bias = reg.create(join_name(prefix, "bias"), {out_features}, Init::zeros(), -1,
                      MH_PARAM_NO_WEIGHT_DECAY | sequence_parallel_flag(parallel_.get()));
}

at::Tensor RowParallelLinear::forward(const at::Tensor& x, bool skip_bias, const at::Tensor& residual) const {
  const bool fuse = gradient_accumulation_fusion && x.is_cuda();
  if (residual.defined()) {
    MH_CHECK(!tensor_parallel(parallel_.get()), MH_ERR_INVALID_ARG,
             "RowParallelLinear: a residual inside the product needs tp = 1 (the partial sums are reduced after it)");
    return fused::linear_add(x, weight, bias, residual, fuse, skip_bias);
  }
  if (!tensor_parallel(parallel_.get())) return fused::linear(x, weight, skip_bias ? at::Tensor() : bias, fuse);
  // partial: [..., out], this rank's share
  return reduce_output(fused::linear(x, weight, at::Tensor(), fuse), skip_bias);
}

at::Tensor RowParallelLinear::reduce_output(const at::Tensor& partial, bool skip_bias) const {
  at::Tensor y = partial;
  if (tensor_parallel(parallel_.get()))
    y = parallel_->sequence_parallel ? parallel::reduce_scatter_to_sequence_parallel_region(partial, parallel_->tp)
                                     : parallel::reduce_from_tp_region(partial, parallel_->tp);
  return bias.defined() && !skip_bias ? y + bias : y;
}

at::Tensor parallel_lm_logits(const at::Tensor& hidden, const at::Tensor& weight,
                              const parallel::ParallelContext* parallel, bool accumulate_into_grad,
                              bool notify_grad_ready) {
  const at::Tensor in = tensor_parallel(parallel) ? column_input(hidden, *parallel) : hidden;
  return fused::linear(in, weight, at::Tensor(), accumulate_into_grad, notify_grad_ready);  // [s, b, V/tp]
}

}  // namespace megahost::sdk::nn
