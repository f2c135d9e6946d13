// Reading a device value back without a device synchronize (see readback.h).
#include "megahost/core/engine/readback.h"

#include <ATen/core/grad_mode.h>
#include <c10/core/impl/VirtualGuardImpl.h>

#include <thread>

namespace megahost::core {

Readback::Readback(const at::Tensor& t) {
  at::NoGradGuard no_grad;
  if (t.is_cpu()) {
    host_ = t.detach().contiguous();
    return;
  }
  host_ = at::empty(t.sizes(), t.options().device(at::kCPU).pinned_memory(true));
  host_.copy_(t, /*non_blocking=*/true);
  const c10::impl::VirtualGuardImpl impl(t.device().type());
  copied_ = std::make_shared<c10::Event>(t.device().type());
  copied_->record(impl.getStream(t.device()));
}

at::Tensor Readback::read() const {
  if (copied_ != nullptr)
    while (!copied_->query()) std::this_thread::yield();
  return host_;
}

}  // namespace megahost::core
