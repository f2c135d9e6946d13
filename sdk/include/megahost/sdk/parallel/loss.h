// megahost SDK — the masked LM loss of one micro-batch under context parallelism.
//
// Each cp rank holds s/cp tokens of every sequence. The reported loss covers the whole sequence
// (sums over the cp group), and backward runs on local_sum / global_num_tokens * grad_scale:
// the host's SUM over "dp-cp" then gives exactly the single-process gradient.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Event.h>

#include <memory>
#include <utility>

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

// The reported sums read back without stalling the device: start_loss_readback queues their copy
// to pinned host memory (call it before backward); read() then waits for that copy alone, not for
// the backward queued after it (an .item() after backward idles the GPU until the host launches
// the next work).
struct LossReadback {
  at::Tensor host;                      // [2] float64: (global_sum, global_num_tokens)
  std::shared_ptr<c10::Event> copied;   // null when the values were on the host already
  std::pair<double, double> read() const;
};
LossReadback start_loss_readback(const MaskedLoss& loss);  // (global_sum, global_num_tokens)
LossReadback start_loss_readback(const at::Tensor& loss_sum, const at::Tensor& num_tokens);  // 0-d each

}  // namespace megahost::sdk::parallel
