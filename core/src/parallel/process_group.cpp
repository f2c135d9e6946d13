// core::Group over a c10d backend. Gloo (1.13) lacks reduce-scatter, AVG and all-gather into one
// tensor: they are built from what it has (all_reduce + copy, SUM then divide, a list of views).
#define MEGAHOST_C10D
#include "megahost/core/parallel/process_group.h"

#include <ATen/ATen.h>

#include <numeric>

#include "backend.h"
#include "megahost/core/error.h"

namespace megahost::core {
namespace {

constexpr const char* kCollectiveHint =
    "HINT: every member must call the same collectives on a group in the same order; a peer that skipped "
    "this one, failed (see its output) or is slower than parallel.distributed_timeout_minutes gives this";

c10d::ReduceOp to_c10d(ReduceOp op, bool native_avg) {
  switch (op) {
    case ReduceOp::Sum: return c10d::ReduceOp(c10d::ReduceOp::SUM);
    case ReduceOp::Max: return c10d::ReduceOp(c10d::ReduceOp::MAX);
    case ReduceOp::Min: return c10d::ReduceOp(c10d::ReduceOp::MIN);
    case ReduceOp::Avg: return c10d::ReduceOp(native_avg ? c10d::ReduceOp::AVG : c10d::ReduceOp::SUM);
  }
  return c10d::ReduceOp(c10d::ReduceOp::SUM);
}

void divide(at::Tensor& t, int64_t n) {
  if (t.is_floating_point()) t.div_(n);
  else t.div_(n, "trunc");
}

// A contiguous tensor with t's values (t itself when already contiguous).
at::Tensor contiguous_copy(const at::Tensor& t) { return t.is_contiguous() ? t : t.contiguous(); }

}  // namespace

// ---- Work -----------------------------------------------------------------------------------
Work::Work(std::function<void()> complete, std::string what) : complete_(std::move(complete)), what_(std::move(what)) {}
Work::~Work() = default;

void Work::wait() {
  if (done_) return;
  done_ = true;
  try {
    complete_();
  } catch (const c10::Error& e) {
    throw CollectiveError(cat(what_, " failed: ", e.what_without_backtrace(), "\n", kCollectiveHint));
  } catch (const std::exception& e) {
    throw CollectiveError(cat(what_, " failed: ", e.what(), "\n", kCollectiveHint));
  }
}

// ---- Group ----------------------------------------------------------------------------------
Group::Group(std::string name, std::vector<int> ranks, int global_rank, std::unique_ptr<Backend> backend)
    : name_(std::move(name)), ranks_(std::move(ranks)), global_rank_(global_rank), backend_(std::move(backend)) {
  auto it = std::find(ranks_.begin(), ranks_.end(), global_rank_);
  MH_CORE_CHECK(it != ranks_.end(), "parallel: rank ", global_rank_, " is not in group '", name_, "'");
  index_ = static_cast<int>(it - ranks_.begin());
}
Group::~Group() = default;

int Group::global_rank(int index) const {
  MH_CORE_CHECK(index >= 0 && index < size(), "parallel: group '", name_, "' has ", size(), " members, no index ",
                index, ". HINT: indices are 0 .. size-1");
  return ranks_[index];
}

std::string Group::describe(const char* op, int64_t seq) const {
  return cat(op, " on group '", name_, "' (rank ", global_rank_, ", index ", index_, " of ", size(),
             ", sequence number ", seq, ")");
}

// Wraps `complete` (waits for the c10d work, then copies results home) as a Work; waits now when
// !async. Also converts a failure of the launch itself (the caller runs it inside `launch`).
std::unique_ptr<Work> Group::finish(const char* op, std::function<void()> complete, bool async) {
  auto work = std::make_unique<Work>(std::move(complete), describe(op, seq_ - 1));
  if (async) return work;
  work->wait();
  return nullptr;
}

namespace {
// Runs the c10d call that enqueues a collective; its errors become a Work that rethrows them.
template <typename F>
std::function<void()> launch(F&& enqueue, std::function<void(c10::intrusive_ptr<c10d::Work>&)> then) {
  c10::intrusive_ptr<c10d::Work> work;
  std::exception_ptr failed;
  try {
    work = enqueue();
  } catch (...) {
    failed = std::current_exception();
  }
  return [work, failed, then = std::move(then)]() mutable {
    if (failed) std::rethrow_exception(failed);
    work->wait();
    then(work);
  };
}

// Gloo (libtorch 1.13's) reduces no bf16 ("Invalid scalar type"): such a tensor is reduced as a
// float32 copy, rounded back once at the end (bf16 main gradients on the CPU).
at::Tensor gloo_reducible(const at::Tensor& t, bool nccl) {
  return !nccl && t.scalar_type() == at::kBFloat16 ? t.to(at::kFloat) : t;
}
}  // namespace

std::unique_ptr<Work> Group::all_reduce(at::Tensor& t, ReduceOp op, bool async) {
  ++seq_;
  if (!backend_) return finish("all_reduce", [] {}, async);
  at::Tensor buf = gloo_reducible(contiguous_copy(t), backend_->nccl);
  const bool native_avg = backend_->nccl;
  auto pg = backend_->pg;
  c10d::AllreduceOptions opts;
  opts.reduceOp = to_c10d(op, native_avg);
  auto complete = launch(
      [&] {
        std::vector<at::Tensor> bufs{buf};
        return pg->allreduce(bufs, opts);
      },
      [buf, t, op, native_avg, n = size()](auto&) mutable {
        if (op == ReduceOp::Avg && !native_avg) divide(buf, n);
        if (!buf.is_same(t)) t.copy_(buf);
      });
  return finish("all_reduce", std::move(complete), async);
}

std::unique_ptr<Work> Group::all_gather(const at::Tensor& in, at::Tensor& out, bool async) {
  ++seq_;
  MH_CORE_CHECK(out.numel() == in.numel() * size() && out.scalar_type() == in.scalar_type(), describe("all_gather", seq_ - 1),
                ": out must hold size x in (", size(), " x ", in.sizes(), " ", in.scalar_type(), "), got ", out.sizes(),
                " ", out.scalar_type(), ". HINT: out.shape[0] = group size * in.shape[0]");
  if (!backend_) {
    out.view_as(in).copy_(in);
    return finish("all_gather", [] {}, async);
  }
  at::Tensor in_c = contiguous_copy(in).reshape({-1});  // [n]
  at::Tensor out_c = contiguous_copy(out);               // [size * n]
  auto pg = backend_->pg;
  const bool nccl = backend_->nccl;
  auto complete = launch(
      [&] {
        if (nccl) {
          at::Tensor flat = out_c.view({-1});
          return pg->_allgather_base(flat, in_c);
        }
        std::vector<std::vector<at::Tensor>> outs{out_c.view({size(), -1}).unbind(0)};
        std::vector<at::Tensor> ins{in_c};
        return pg->allgather(outs, ins);
      },
      [out, out_c](auto&) mutable {
        if (!out_c.is_same(out)) out.copy_(out_c);
      });
  return finish("all_gather", std::move(complete), async);
}

std::unique_ptr<Work> Group::reduce_scatter(const at::Tensor& in, at::Tensor& out, ReduceOp op, bool async) {
  ++seq_;
  MH_CORE_CHECK(in.numel() == out.numel() * size() && out.scalar_type() == in.scalar_type(),
                describe("reduce_scatter", seq_ - 1), ": in must hold size x out (", size(), " x ", out.sizes(), " ",
                out.scalar_type(), "), got ", in.sizes(), " ", in.scalar_type(),
                ". HINT: in.shape[0] = group size * out.shape[0]");
  if (!backend_) {
    out.copy_(in.view_as(out));
    return finish("reduce_scatter", [] {}, async);
  }
  auto pg = backend_->pg;
  const bool nccl = backend_->nccl;
  c10d::ReduceScatterOptions rs_opts;
  rs_opts.reduceOp = to_c10d(op, true);
  if (nccl) {
    at::Tensor in_c = contiguous_copy(in), out_c = contiguous_copy(out);
    auto complete = launch([&] { return pg->_reduce_scatter_base(out_c, in_c, rs_opts); },
                           [out, out_c](auto&) mutable {
                             if (!out_c.is_same(out)) out.copy_(out_c);
                           });
    return finish("reduce_scatter", std::move(complete), async);
  }
  // Gloo: all-reduce a copy of the whole input, keep this member's chunk.
  at::Tensor buf = gloo_reducible(in, false);          // [size * n]
  if (buf.is_same(in)) buf = in.contiguous().clone();  // never the caller's tensor
  c10d::AllreduceOptions opts;
  opts.reduceOp = to_c10d(op, false);
  auto complete = launch(
      [&] {
        std::vector<at::Tensor> bufs{buf};
        return pg->allreduce(bufs, opts);
      },
      [buf, out, op, n = size(), index = rank()](auto&) mutable {
        at::Tensor mine = buf.view({n, -1})[index];
        if (op == ReduceOp::Avg) divide(mine, n);
        out.copy_(mine.view_as(out));
      });
  return finish("reduce_scatter", std::move(complete), async);
}

std::unique_ptr<Work> Group::broadcast(at::Tensor& t, int root_index, bool async) {
  ++seq_;
  MH_CORE_CHECK(root_index >= 0 && root_index < size(), describe("broadcast", seq_ - 1), ": root index ", root_index,
                " is outside the group. HINT: root is a group index, 0 .. ", size() - 1);
  if (!backend_) return finish("broadcast", [] {}, async);
  at::Tensor buf = contiguous_copy(t);
  auto pg = backend_->pg;
  c10d::BroadcastOptions opts;
  opts.rootRank = root_index;
  auto complete = launch(
      [&] {
        std::vector<at::Tensor> bufs{buf};
        return pg->broadcast(bufs, opts);
      },
      [buf, t](auto&) mutable {
        if (!buf.is_same(t)) t.copy_(buf);
      });
  return finish("broadcast", std::move(complete), async);
}

std::unique_ptr<Work> Group::send(const at::Tensor& t, int peer_index, bool async) {
  ++seq_;
  MH_CORE_CHECK(peer_index >= 0 && peer_index < size() && peer_index != rank(), describe("send", seq_ - 1),
                ": peer index ", peer_index, " is not another member. HINT: peers are group indices other than ", rank());
  at::Tensor buf = contiguous_copy(t);
  auto pg = backend_->pg;
  auto complete = launch(
      [&] {
        std::vector<at::Tensor> bufs{buf};
        return pg->send(bufs, peer_index, /*tag=*/0);
      },
      [buf](auto&) {});
  return finish("send", std::move(complete), async);
}

std::unique_ptr<Work> Group::recv(at::Tensor& t, int peer_index, bool async) {
  ++seq_;
  MH_CORE_CHECK(peer_index >= 0 && peer_index < size() && peer_index != rank(), describe("recv", seq_ - 1),
                ": peer index ", peer_index, " is not another member. HINT: peers are group indices other than ", rank());
  at::Tensor buf = contiguous_copy(t);
  auto pg = backend_->pg;
  auto complete = launch(
      [&] {
        std::vector<at::Tensor> bufs{buf};
        return pg->recv(bufs, peer_index, /*tag=*/0);
      },
      [buf, t](auto&) mutable {
        if (!buf.is_same(t)) t.copy_(buf);
      });
  return finish("recv", std::move(complete), async);
}

std::unique_ptr<Work> Group::all_to_all(const at::Tensor& in, at::Tensor& out, std::vector<int64_t> in_splits,
                                        std::vector<int64_t> out_splits, bool async) {
  ++seq_;
  const char* op = "all_to_all";
  auto check_splits = [&](const std::vector<int64_t>& splits, const at::Tensor& t, const char* which) {
    if (splits.empty()) {
      MH_CORE_CHECK(t.dim() > 0 && t.size(0) % size() == 0, describe(op, seq_ - 1), ": ", which, " has ",
                    t.dim() > 0 ? t.size(0) : 0, " rows, not divisible by the group size ", size(),
                    ". HINT: pass split sizes for uneven rows");
      return;
    }
    MH_CORE_CHECK(static_cast<int>(splits.size()) == size() &&
                      std::accumulate(splits.begin(), splits.end(), int64_t{0}) == t.size(0),
                  describe(op, seq_ - 1), ": ", which, " splits must be ", size(), " row counts summing to ", t.size(0),
                  ". HINT: one entry per group member");
  };
  check_splits(in_splits, in, "in");
  check_splits(out_splits, out, "out");
  if (!backend_) {
    out.copy_(in);
    return finish(op, [] {}, async);
  }
  at::Tensor in_c = contiguous_copy(in), out_c = contiguous_copy(out);
  auto pg = backend_->pg;
  auto complete = launch(
      [&] { return pg->alltoall_base(out_c, in_c, out_splits, in_splits); },
      [out, out_c](auto&) mutable {
        if (!out_c.is_same(out)) out.copy_(out_c);
      });
  return finish(op, std::move(complete), async);
}

void Group::barrier() {
  ++seq_;
  if (!backend_) return;
  auto pg = backend_->pg;
  auto complete = launch([&] { return pg->barrier(); }, [](auto&) {});
  finish("barrier", std::move(complete), false);
}

}  // namespace megahost::core
