// A value computed on the device, read on the host without draining the device's queue: the
// copy to pinned memory is queued on the tensor's stream behind the work that computes it, and
// read() waits for that copy alone. Work queued after the copy (the optimizer step) keeps the
// device busy while the host waits. On the CPU the value is there at once.
#pragma once

#include <ATen/ATen.h>
#include <c10/core/Event.h>

#include <memory>

namespace megahost::core {

class Readback {
 public:
  Readback() = default;
  explicit Readback(const at::Tensor& t);  // queues the copy of t (any shape, contiguous on the host)
  // The host copy once the queued copy has run (waits for it).
  at::Tensor read() const;
  bool started() const { return host_.defined(); }

 private:
  at::Tensor host_;
  std::shared_ptr<c10::Event> copied_;  // null on the CPU
};

}  // namespace megahost::core
