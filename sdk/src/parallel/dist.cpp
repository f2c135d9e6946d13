// megahost SDK — DistGroup over mh.dist/1 (see megahost/sdk/parallel/dist.h).
#include "megahost/sdk/parallel/dist.h"

#include <ATen/ops/empty.h>

#include <vector>

#include "megahost/sdk/error.h"
#include "megahost/sdk/torch_interop.h"

namespace megahost::sdk::parallel {

namespace {
mh_stream default_stream(const at::Tensor& t) {
  const DLDevice d = to_dl_device(t.device());
  return mh_stream{static_cast<int32_t>(d.device_type), d.device_id, nullptr};
}
}  // namespace

std::optional<DistGroup> DistGroup::from(const mh_host* host, const char* name) {
  if (host == nullptr) return std::nullopt;
  const auto* svc = static_cast<const mh_dist_service*>(host->get_service(host, MH_SERVICE_DIST));
  if (svc == nullptr) return std::nullopt;
  const mh_dist_group* g = svc->group(host, name);
  if (g == nullptr) return std::nullopt;
  DistGroup out;
  out.host_ = host;
  out.svc_ = svc;
  out.group_ = g;
  out.rank_ = svc->group_rank(host, g);
  out.size_ = svc->group_size(host, g);
  MH_CHECK(out.size_ >= 1 && out.rank_ >= 0 && out.rank_ < out.size_, MH_ERR_INTERNAL, "dist group '", name,
           "': rank ", out.rank_, " of size ", out.size_, " from the host is not a valid member index");
  return out;
}

void DistGroup::all_reduce(at::Tensor& t, mh_reduce_op op) const {
  if (size_ == 1) return;
  at::Tensor buf = t.contiguous();  // the same tensor when already contiguous
  DLView view(buf);
  check_host(host_, svc_->all_reduce(host_, group_, view.get(), op, default_stream(buf), nullptr));
  if (!buf.is_same(t)) t.copy_(buf);
}

at::Tensor DistGroup::all_gather(const at::Tensor& in) const {
  if (size_ == 1) return in;
  MH_CHECK(in.dim() >= 1, MH_ERR_INVALID_ARG, "all_gather needs a tensor with a dim 0, got a 0-d tensor");
  const at::Tensor src = in.contiguous();
  std::vector<int64_t> shape(src.sizes().begin(), src.sizes().end());
  shape[0] *= size_;
  at::Tensor out = at::empty(shape, src.options());
  DLView vin(src), vout(out);
  check_host(host_, svc_->all_gather(host_, group_, vin.get(), vout.get(), default_stream(src), nullptr));
  return out;
}

at::Tensor DistGroup::reduce_scatter(const at::Tensor& in, mh_reduce_op op) const {
  if (size_ == 1) return in;
  MH_CHECK(in.dim() >= 1 && in.size(0) % size_ == 0, MH_ERR_INVALID_ARG, "reduce_scatter: dim 0 of ", in.sizes(),
           " does not split into ", size_, " equal chunks");
  const at::Tensor src = in.contiguous();
  std::vector<int64_t> shape(src.sizes().begin(), src.sizes().end());
  shape[0] /= size_;
  at::Tensor out = at::empty(shape, src.options());
  DLView vin(src), vout(out);
  check_host(host_, svc_->reduce_scatter(host_, group_, vin.get(), vout.get(), op, default_stream(src), nullptr));
  return out;
}

void DistGroup::broadcast(at::Tensor& t, int root) const {
  if (size_ == 1) return;
  at::Tensor buf = t.contiguous();
  DLView view(buf);
  check_host(host_, svc_->broadcast(host_, group_, view.get(), root, default_stream(buf), nullptr));
  if (!buf.is_same(t)) t.copy_(buf);
}

void DistGroup::barrier() const {
  if (size_ == 1) return;
  check_host(host_, svc_->barrier(host_, group_));
}

}  // namespace megahost::sdk::parallel
