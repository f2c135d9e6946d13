// megahost SDK — Megatron's vocab-parallel cross entropy, per token, in float32.
// Under TP each rank holds a vocab slice of the logits; max, sum-exp and the target logit are
// all-reduced across the TP group. On one device it is log_softmax + gather.
#pragma once

#include <ATen/core/Tensor.h>

namespace megahost::sdk::nn {

// logits [..., V] (any float dtype), labels [...] int64 -> loss [...] float32
at::Tensor vocab_parallel_cross_entropy(const at::Tensor& logits, const at::Tensor& labels);

}  // namespace megahost::sdk::nn
