// The mh.dist/1 service: the C table plugins see, over ParallelRuntime and Group.
// No exception crosses: every entry point converts them into host error objects.
#define MEGAHOST_C10D
#include "megahost/core/host_services.h"
#include "megahost/core/parallel/world.h"
#include "megahost/sdk/torch_interop.h"

#if defined(USE_C10D_NCCL)
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

#include <optional>

// Host-owned handle of an asynchronous collective (freed by work_wait).
struct mh_dist_work {
  std::unique_ptr<megahost::core::Work> work;
};

namespace megahost::core {
namespace {

Group* as_group(const mh_dist_group* g) { return reinterpret_cast<Group*>(const_cast<mh_dist_group*>(g)); }

// Makes `stream` the current CUDA stream for the call (NCCL orders on the current stream).
struct StreamScope {
#if defined(USE_C10D_NCCL)
  std::optional<c10::cuda::CUDAStreamGuard> guard;
  explicit StreamScope(mh_stream s) {
    if (s.device_type == kDLCUDA && s.handle != nullptr)
      guard.emplace(c10::cuda::getStreamFromExternal(static_cast<cudaStream_t>(s.handle),
                                                     static_cast<c10::DeviceIndex>(s.device_id)));
  }
#else
  explicit StreamScope(mh_stream) {}
#endif
};

ReduceOp to_op(mh_reduce_op op) {
  switch (op) {
    case MH_REDUCE_SUM: return ReduceOp::Sum;
    case MH_REDUCE_MAX: return ReduceOp::Max;
    case MH_REDUCE_MIN: return ReduceOp::Min;
    case MH_REDUCE_AVG: return ReduceOp::Avg;
    default: break;
  }
  throw sdk::Error(MH_ERR_INVALID_ARG, cat("mh.dist/1: unknown reduce op ", op,
                                           ". HINT: MH_REDUCE_SUM, _MAX, _MIN or _AVG"));
}

// Runs fn, turning exceptions into host errors. A call with out_work hands back the Work.
template <typename F>
mh_error* guarded(const char* op, const mh_dist_group* g, F&& fn) {
  try {
    if (g == nullptr) return make_error(MH_ERR_INVALID_ARG, cat("mh.dist/1 ", op, ": group is NULL"));
    fn(*as_group(g));
    return nullptr;
  } catch (const CollectiveError& e) {
    return make_error(MH_ERR_UNAVAILABLE, e.what());
  } catch (const sdk::Error& e) {
    return make_error(e.code(), cat("mh.dist/1 ", op, ": ", e.what()));
  } catch (const std::bad_alloc&) {
    return make_error(MH_ERR_OUT_OF_MEMORY, cat("mh.dist/1 ", op, ": out of memory"));
  } catch (const Error& e) {
    return make_error(MH_ERR_INVALID_ARG, e.what());
  } catch (const c10::Error& e) {
    return make_error(MH_ERR_INVALID_ARG, cat("mh.dist/1 ", op, ": ", e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return make_error(MH_ERR_INTERNAL, cat("mh.dist/1 ", op, ": ", e.what()));
  } catch (...) {
    return make_error(MH_ERR_INTERNAL, cat("mh.dist/1 ", op, ": unknown exception"));
  }
}

// Hands an async Work to the caller (or checks that a sync call returned none).
void hand_out(std::unique_ptr<Work> w, mh_dist_work** out_work) {
  if (out_work == nullptr) return;
  *out_work = new mh_dist_work{std::move(w)};
}

const mh_dist_group* MH_ABI dist_group(const mh_host*, const char* name) {
  try {
    if (name == nullptr) return nullptr;
    return reinterpret_cast<const mh_dist_group*>(ParallelRuntime::get().find(name));
  } catch (...) {
    return nullptr;
  }
}
int32_t MH_ABI dist_group_rank(const mh_host*, const mh_dist_group* g) { return g ? as_group(g)->rank() : -1; }
int32_t MH_ABI dist_group_size(const mh_host*, const mh_dist_group* g) { return g ? as_group(g)->size() : 0; }
int32_t MH_ABI dist_global_rank(const mh_host*, const mh_dist_group* g, int32_t index) {
  if (g == nullptr || index < 0 || index >= as_group(g)->size()) return -1;
  return as_group(g)->ranks()[index];
}

mh_error* MH_ABI dist_all_reduce(const mh_host*, const mh_dist_group* g, DLTensor* inout, mh_reduce_op op,
                                 mh_stream stream, mh_dist_work** out_work) {
  return guarded("all_reduce", g, [&](Group& group) {
    StreamScope scope(stream);
    at::Tensor t = sdk::to_torch(inout);
    hand_out(group.all_reduce(t, to_op(op), out_work != nullptr), out_work);
  });
}

mh_error* MH_ABI dist_all_gather(const mh_host*, const mh_dist_group* g, const DLTensor* in, DLTensor* out,
                                 mh_stream stream, mh_dist_work** out_work) {
  return guarded("all_gather", g, [&](Group& group) {
    StreamScope scope(stream);
    at::Tensor o = sdk::to_torch(out);
    hand_out(group.all_gather(sdk::to_torch(in), o, out_work != nullptr), out_work);
  });
}

mh_error* MH_ABI dist_reduce_scatter(const mh_host*, const mh_dist_group* g, const DLTensor* in, DLTensor* out,
                                     mh_reduce_op op, mh_stream stream, mh_dist_work** out_work) {
  return guarded("reduce_scatter", g, [&](Group& group) {
    StreamScope scope(stream);
    at::Tensor o = sdk::to_torch(out);
    hand_out(group.reduce_scatter(sdk::to_torch(in), o, to_op(op), out_work != nullptr), out_work);
  });
}

mh_error* MH_ABI dist_broadcast(const mh_host*, const mh_dist_group* g, DLTensor* inout, int32_t root,
                                mh_stream stream, mh_dist_work** out_work) {
  return guarded("broadcast", g, [&](Group& group) {
    StreamScope scope(stream);
    at::Tensor t = sdk::to_torch(inout);
    hand_out(group.broadcast(t, root, out_work != nullptr), out_work);
  });
}

mh_error* MH_ABI dist_send(const mh_host*, const mh_dist_group* g, const DLTensor* t, int32_t peer,
                           mh_stream stream, mh_dist_work** out_work) {
  return guarded("send", g, [&](Group& group) {
    StreamScope scope(stream);
    hand_out(group.send(sdk::to_torch(t), peer, out_work != nullptr), out_work);
  });
}

mh_error* MH_ABI dist_recv(const mh_host*, const mh_dist_group* g, DLTensor* t, int32_t peer, mh_stream stream,
                           mh_dist_work** out_work) {
  return guarded("recv", g, [&](Group& group) {
    StreamScope scope(stream);
    at::Tensor x = sdk::to_torch(t);
    hand_out(group.recv(x, peer, out_work != nullptr), out_work);
  });
}

mh_error* MH_ABI dist_all_to_all(const mh_host*, const mh_dist_group* g, const DLTensor* in, DLTensor* out,
                                 const int64_t* in_splits, const int64_t* out_splits, mh_stream stream,
                                 mh_dist_work** out_work) {
  return guarded("all_to_all", g, [&](Group& group) {
    StreamScope scope(stream);
    MH_CHECK((in_splits == nullptr) == (out_splits == nullptr), MH_ERR_INVALID_ARG,
             "in_splits and out_splits must both be given or both be NULL");
    std::vector<int64_t> ins, outs;
    if (in_splits) ins.assign(in_splits, in_splits + group.size());
    if (out_splits) outs.assign(out_splits, out_splits + group.size());
    at::Tensor o = sdk::to_torch(out);
    hand_out(group.all_to_all(sdk::to_torch(in), o, ins, outs, out_work != nullptr), out_work);
  });
}

mh_error* MH_ABI dist_barrier(const mh_host*, const mh_dist_group* g) {
  return guarded("barrier", g, [&](Group& group) { group.barrier(); });
}

mh_error* MH_ABI dist_work_wait(const mh_host*, mh_dist_work* work, mh_stream stream) {
  if (work == nullptr) return make_error(MH_ERR_INVALID_ARG, "mh.dist/1 work_wait: work is NULL");
  std::unique_ptr<mh_dist_work> owned(work);  // freed also when waiting fails
  try {
    StreamScope scope(stream);
    if (owned->work) owned->work->wait();
    return nullptr;
  } catch (const CollectiveError& e) {
    return make_error(MH_ERR_UNAVAILABLE, e.what());
  } catch (const std::exception& e) {
    return make_error(MH_ERR_INTERNAL, cat("mh.dist/1 work_wait: ", e.what()));
  } catch (...) {
    return make_error(MH_ERR_INTERNAL, "mh.dist/1 work_wait: unknown exception");
  }
}

const mh_dist_service kDistService = {MH_TABLE_HEADER(mh_dist_service),
                                      dist_group,
                                      dist_group_rank,
                                      dist_group_size,
                                      dist_global_rank,
                                      dist_all_reduce,
                                      dist_all_gather,
                                      dist_reduce_scatter,
                                      dist_broadcast,
                                      dist_send,
                                      dist_recv,
                                      dist_all_to_all,
                                      dist_barrier,
                                      dist_work_wait};

}  // namespace

const mh_dist_service& dist_service() { return kDistService; }

}  // namespace megahost::core
