// megahost SDK — masked loss under context parallelism (see megahost/sdk/parallel/loss.h).
#include "megahost/sdk/parallel/loss.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/stack.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/empty.h>
#include <c10/core/impl/VirtualGuardImpl.h>

#include <thread>

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

LossReadback start_loss_readback(const MaskedLoss& loss) {
  return start_loss_readback(loss.global_sum, loss.global_num_tokens);
}

LossReadback start_loss_readback(const at::Tensor& loss_sum, const at::Tensor& num_tokens) {
  at::NoGradGuard no_grad;
  const at::Tensor both = at::stack({loss_sum.detach().to(at::kDouble), num_tokens.to(at::kDouble)});  // [2]
  LossReadback r;
  if (both.is_cpu()) {
    r.host = both;
    return r;
  }
  r.host = at::empty({2}, at::TensorOptions().dtype(at::kDouble).pinned_memory(true));
  r.host.copy_(both, /*non_blocking=*/true);
  const c10::impl::VirtualGuardImpl impl(both.device().type());
  r.copied = std::make_shared<c10::Event>(both.device().type());
  r.copied->record(impl.getStream(both.device()));
  return r;
}

std::pair<double, double> LossReadback::read() const {
  if (copied != nullptr)
    while (!copied->query()) std::this_thread::yield();  // the forward is long done by now
  const double* v = host.data_ptr<double>();
  return {v[0], v[1]};
}

}  // namespace megahost::sdk::parallel
