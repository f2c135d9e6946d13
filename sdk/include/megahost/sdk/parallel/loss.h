// megahost SDK — the masked LM loss of one micro-batch under context parallelism.
//
// Each cp rank holds s/cp tokens of every sequence. The reported loss covers the whole sequence
// (sums over the cp group), and backward runs on local_sum / global_num_tokens * grad_scale:
// the host's SUM over "dp-cp" then gives exactly the single-process gradient.
#pragma once

#include <ATen/core/Tensor.h>

#include "megahost/sdk/parallel/mappings.h"

namespace megahost::sdk::parallel {

struct MaskedLoss {
  at::Tensor local_sum;          // sum(losses * mask) on this rank, 0-d float32, with autograd
  at::Tensor global_sum;         // local_sum summed over cp, no autograd
  at::Tensor global_num_tokens;  // sum(mask) summed over cp, no autograd
  // What forward_backward differentiates: local_sum / max(global_num_tokens, 1) (an all-masked
  // micro-batch contributes nothing instead of 0/0).
  at::Tensor objective() const;
};

// losses [b, s/cp] float32, mask [b, s/cp] float32; parallel null = single process.
MaskedLoss masked_loss(const at::Tensor& losses, const at::Tensor& mask, const ParallelContext* parallel);

}  // namespace megahost::sdk::parallel
