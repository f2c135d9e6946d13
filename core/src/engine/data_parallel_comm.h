// megahost core — the collectives DataParallel needs, behind a small interface so the bucket and
// optimizer logic does not depend on how groups are implemented (data_parallel_comm.cpp binds it
// to core::ParallelRuntime).
#pragma once

#include <ATen/ATen.h>
#include <c10/core/Event.h>
#include <c10/core/Stream.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>

#include <memory>
#include <vector>

namespace megahost::core::dp_detail {

// An asynchronous collective; wait() completes it (once).
// overlap_optimizer_step on CUDA: the side stream the optimizer's pieces run on, and their events.
struct PieceStream {
  c10::Device device;
  c10::Stream side;
  c10::Event main_ready;                          // the main stream's work the step depends on
  std::vector<std::unique_ptr<c10::Event>> done;  // per piece, recorded on `side` after it
  PieceStream(c10::Device d, c10::Stream s) : device(d), side(s), main_ready(d.type()) {}
  c10::Stream current() const { return c10::impl::getDeviceGuardImpl(device.type())->getStream(device); }
};

struct PendingOp {
  virtual ~PendingOp() = default;
  virtual void wait() = 0;
};

struct GroupInfo {
  bool member = true;  // false: this rank is not in the group ("embedding" on middle stages)
  int rank = 0, size = 1;
};

// Group names as mh_dist.h: "dp", "dp-cp", "tp", "tp-pp", "embedding". Tensors are contiguous.
// With async = false the call returns when done and gives nullptr; with async = true it gives a
// handle (nullptr when there was nothing to do). Tensors stay alive and untouched until then.
struct Comm {
  virtual ~Comm() = default;
  virtual GroupInfo info(const char* group) = 0;
  virtual std::unique_ptr<PendingOp> all_reduce_sum(const char* group, const at::Tensor& t, bool async) = 0;
  // in [size * n] -> out [n]: the sum of every member's chunk rank.
  virtual std::unique_ptr<PendingOp> reduce_scatter_sum(const char* group, const at::Tensor& in,
                                                        const at::Tensor& out, bool async) = 0;
  // in [n] -> out [size * n]: every member's `in` in group order.
  virtual std::unique_ptr<PendingOp> all_gather(const char* group, const at::Tensor& in, const at::Tensor& out,
                                                bool async) = 0;
};

// Over core::ParallelRuntime::get(); every group has size 1 when the runtime is not initialised.
std::unique_ptr<Comm> make_runtime_comm();

}  // namespace megahost::core::dp_detail
