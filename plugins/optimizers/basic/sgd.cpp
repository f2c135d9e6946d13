#include "algorithms.h"

namespace megahost::optim {

void SGD::update(Group& g, double lr, double wd, int64_t /*t*/) {
  // L2 decay goes into a new list, never into the caller's gradients.
  std::vector<at::Tensor> d = wd != 0 ? at::_foreach_add(g.grads, g.params, wd) : g.grads;
  if (momentum_ != 0) {
    std::vector<at::Tensor>& buf = g.state[0];
    at::_foreach_mul_(buf, momentum_);
    at::_foreach_add_(buf, d);
    d = buf;
  }
  at::_foreach_add_(g.params, d, -lr);
}

}  // namespace megahost::optim
