// megahost SDK — masked loss under context parallelism (see megahost/sdk/parallel/loss.h).
#include "megahost/sdk/parallel/loss.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/stack.h>
#include <ATen/core/grad_mode.h>

namespace megahost::sdk::parallel {

at::Tensor MaskedLoss::objective() const { return local_sum / global_num_tokens.clamp_min(1.0); }

MaskedLoss masked_loss(const at::Tensor& losses, const at::Tensor& mask, const ParallelContext* parallel) {
  MaskedLoss out;
  out.local_sum = (losses * mask).sum();  // float32
  at::NoGradGuard no_grad;
  at::Tensor sums = at::stack({out.local_sum.detach().to(at::kFloat), mask.sum().to(at::kFloat)});  // [2]
  if (parallel != nullptr) parallel->cp.all_reduce(sums);  // one collective for both
  out.global_sum = sums[0];
  out.global_num_tokens = sums[1];
  return out;
}

}  // namespace megahost::sdk::parallel
