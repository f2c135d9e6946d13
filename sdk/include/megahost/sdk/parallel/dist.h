// megahost SDK — a process group of the host's mh.dist/1 service, as a small C++ value.
//
//   auto tp = parallel::DistGroup::from(host, "tp").value_or(DistGroup());
//   tp.all_reduce(t);                       // in place, SUM
//   at::Tensor full = tp.all_gather(part);  // concatenated along dim 0, in group order
//
// A default DistGroup is a size-1 group: every collective returns at once without calling the
// host, so single-process code runs through the same paths. Host errors become sdk::HostError
// (MH_SDK_CATCH returns them unchanged). Collectives are blocking and use the device's default
// stream (the legacy CUDA stream; plain CPU under Gloo).
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>

#include "megahost/megahost.h"

namespace megahost::sdk::parallel {

class DistGroup {
 public:
  DistGroup() = default;  // size 1, no host

  // The group `name` ("tp", "cp", ... see mh_dist.h), or nullopt when the host has no dist
  // service (a 1.0 host) or this rank is not a member.
  static std::optional<DistGroup> from(const mh_host* host, const char* name);

  int rank() const { return rank_; }
  int size() const { return size_; }
  const mh_dist_group* raw() const { return group_; }

  // In place over the group (t may be non-contiguous: it is reduced through a contiguous copy).
  void all_reduce(at::Tensor& t, mh_reduce_op op = MH_REDUCE_SUM) const;
  // in [n, ...] -> [size * n, ...]: every member's `in` in group order.
  at::Tensor all_gather(const at::Tensor& in) const;
  // in [size * n, ...] -> [n, ...]: op over every member's chunk rank().
  at::Tensor reduce_scatter(const at::Tensor& in, mh_reduce_op op = MH_REDUCE_SUM) const;
  // In place: every member ends with member `root`'s tensor.
  void broadcast(at::Tensor& t, int root) const;
  void barrier() const;

 private:
  const mh_host* host_ = nullptr;
  const mh_dist_service* svc_ = nullptr;
  const mh_dist_group* group_ = nullptr;
  int rank_ = 0, size_ = 1;
};

}  // namespace megahost::sdk::parallel
