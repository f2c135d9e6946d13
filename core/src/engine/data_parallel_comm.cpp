// megahost core — DataParallel's collectives over core::ParallelRuntime's groups.
#include "data_parallel_comm.h"

#include "megahost/core/error.h"
#include "megahost/core/parallel/world.h"

namespace megahost::core::dp_detail {
namespace {

struct WorkOp final : PendingOp {
  explicit WorkOp(std::unique_ptr<Work> w) : work(std::move(w)) {}
  void wait() override {
    if (work) work->wait();
    work.reset();
  }
  std::unique_ptr<Work> work;
};

std::unique_ptr<PendingOp> wrap(std::unique_ptr<Work> w) {
  return w ? std::make_unique<WorkOp>(std::move(w)) : nullptr;
}

struct RuntimeComm final : Comm {
  Group& group(const char* name) { return ParallelRuntime::get().group(name); }

  GroupInfo info(const char* name) override {
    Group* g = ParallelRuntime::get().find(name);
    if (g == nullptr) return {false, 0, 1};
    return {true, g->rank(), g->size()};
  }
  std::unique_ptr<PendingOp> all_reduce_sum(const char* name, const at::Tensor& t, bool async) override {
    at::Tensor inout = t;
    return wrap(group(name).all_reduce(inout, ReduceOp::Sum, async));
  }
  std::unique_ptr<PendingOp> reduce_scatter_sum(const char* name, const at::Tensor& in, const at::Tensor& out,
                                                bool async) override {
    at::Tensor o = out;
    return wrap(group(name).reduce_scatter(in, o, ReduceOp::Sum, async));
  }
  std::unique_ptr<PendingOp> all_gather(const char* name, const at::Tensor& in, const at::Tensor& out,
                                        bool async) override {
    // A gather copies bits: bf16 travels as fp16 (Gloo in libtorch 1.13 has no bf16).
    const bool as_half = in.scalar_type() == at::kBFloat16 && !in.is_cuda();
    at::Tensor i = as_half ? in.view(at::kHalf) : in, o = as_half ? out.view(at::kHalf) : out;
    return wrap(group(name).all_gather(i, o, async));
  }
};

}  // namespace

std::unique_ptr<Comm> make_runtime_comm() { return std::make_unique<RuntimeComm>(); }

}  // namespace megahost::core::dp_detail
