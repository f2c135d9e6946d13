#include <cmath>

#include "algorithms.h"

namespace megahost::optim {

// Same operation order as torch::optim::AdamW, so results match it to rounding.
void AdamW::update(Group& g, double lr, double wd, int64_t t) {
  std::vector<at::Tensor>& exp_avg = g.state[0];     // m, per param: same shape as p
  std::vector<at::Tensor>& exp_avg_sq = g.state[1];  // v
  if (wd != 0) at::_foreach_mul_(g.params, 1 - lr * wd);  // decoupled decay uses p before the step

  at::_foreach_mul_(exp_avg, beta1_);
  at::_foreach_add_(exp_avg, g.grads, 1 - beta1_);
  at::_foreach_mul_(exp_avg_sq, beta2_);
  at::_foreach_addcmul_(exp_avg_sq, g.grads, g.grads, 1 - beta2_);

  const double bias_correction1 = 1 - std::pow(beta1_, double(t));
  const double bias_correction2 = 1 - std::pow(beta2_, double(t));
  std::vector<at::Tensor> denom = at::_foreach_sqrt(exp_avg_sq);
  at::_foreach_div_(denom, std::sqrt(bias_correction2));
  at::_foreach_add_(denom, eps_);
  at::_foreach_addcdiv_(g.params, exp_avg, denom, -lr / bias_correction1);
}

}  // namespace megahost::optim
