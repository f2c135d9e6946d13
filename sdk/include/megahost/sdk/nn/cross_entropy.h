// megahost SDK — Megatron's vocab-parallel cross entropy, per token, in float32.
// Under TP each rank holds a vocab slice of the logits; max, sum-exp and the target logit are
// all-reduced across the TP group, and backward is Megatron's by hand: softmax minus the one-hot
// of the target on the rank that owns it. On one device it is log_softmax + gather.
#pragma once

#include <ATen/core/Tensor.h>

namespace megahost::sdk::parallel {
struct ParallelContext;
}

namespace megahost::sdk::nn {

// logits [..., V] (any float dtype), labels [...] int64 -> loss [...] float32
at::Tensor vocab_parallel_cross_entropy(const at::Tensor& logits, const at::Tensor& labels);

// logits [..., V/tp] (this rank's vocab slice, rank r holding ids [r*V/tp, (r+1)*V/tp)),
// labels [...] int64 (full vocab ids) -> loss [...] float32, the same on every TP rank.
// parallel null or tp size 1: the single-device version above.
at::Tensor vocab_parallel_cross_entropy(const at::Tensor& logits, const at::Tensor& labels,
                                        const parallel::ParallelContext* parallel);

// The output layer and its loss: vocab_parallel_cross_entropy(parallel_lm_logits(hidden, weight,
// ...), labels) for hidden [s, b, h], weight [V/tp, h], labels [s, b] -> loss [s, b] float32. On
// one device (tp 1) fused::lm_head_cross_entropy: on CUDA the [s, b, V] logits are written once
// and read once, their gradient takes their place. accumulate_into_grad / notify_grad_ready as
// parallel_lm_logits.
at::Tensor lm_head_cross_entropy(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& labels,
                                 const parallel::ParallelContext* parallel, bool accumulate_into_grad,
                                 bool notify_grad_ready);

}  // namespace megahost::sdk::nn
