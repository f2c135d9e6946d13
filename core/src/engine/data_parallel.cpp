// megahost core — data parallelism over contiguous bucketed buffers (see data_parallel.h).
#include "megahost/core/engine/data_parallel.h"

#include <ATen/core/grad_mode.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>

#include <spdlog/spdlog.h>

#include "data_parallel_comm.h"
#include "megahost/core/error.h"
#include "megahost/sdk/param_remainders.h"
#include "megahost/sdk/torch_interop.h"

namespace megahost::core {

// ---- buffer arithmetic ----

int64_t default_bucket_size(int64_t dp_size) { return std::max<int64_t>(40000000, 1000000 * dp_size); }

BucketPlan plan_buckets(const std::vector<int64_t>& numels, const std::vector<bool>& own_bucket, int64_t bucket_size,
                        int64_t pad_to) {
  MH_CORE_CHECK(bucket_size > 0 && pad_to > 0, "plan_buckets: bucket_size ", bucket_size, ", pad_to ", pad_to);
  BucketPlan plan;
  const size_t n = numels.size();
  plan.param_offset.assign(n, 0);
  plan.param_bucket.assign(n, 0);
  BucketPlan::Bucket open;
  auto close = [&] {
    if (open.params.empty()) return;
    const int64_t used = plan.numel - open.begin;
    plan.numel = open.begin + (used + pad_to - 1) / pad_to * pad_to;  // pad: equal shards per dp-cp rank
    open.end = plan.numel;
    plan.buckets.push_back(std::move(open));
    open = BucketPlan::Bucket{};
    open.begin = plan.numel;
  };
  // Backward produces gradients roughly in reverse model order: lay parameters out that way so
  // the first bucket is complete first.
  for (size_t k = n; k-- > 0;) {
    const bool alone = !own_bucket.empty() && own_bucket[k];
    if (alone) close();
    plan.numel = (plan.numel + kParamAlignElems - 1) / kParamAlignElems * kParamAlignElems;
    plan.param_offset[k] = plan.numel;
    plan.param_bucket[k] = plan.buckets.size();
    plan.numel += numels[k];
    open.params.push_back(k);
    if (alone || plan.numel - open.begin >= bucket_size) close();
  }
  close();
  return plan;
}

std::pair<int64_t, int64_t> bucket_shard(const BucketPlan::Bucket& b, int64_t rank, int64_t size) {
  const int64_t len = (b.end - b.begin) / size;
  return {b.begin + rank * len, b.begin + (rank + 1) * len};
}

// ---- DataParallel ----

namespace {

// Views of one parameter in a chunk's buffers, shaped like the parameter.
at::Tensor buffer_view(const at::Tensor& buffer, int64_t offset, const at::Tensor& like) {
  return buffer.narrow(0, offset, like.numel()).view(like.sizes());
}

bool is_counted_in_norm(const Param& p, const dp_detail::GroupInfo& tp, const dp_detail::GroupInfo& emb) {
  // Replicated across TP (norms, biases, SP params after their tp sum): count once, on tp rank 0.
  if (p.tensor_parallel_dim < 0 && tp.rank != 0) return false;
  // The tied embedding lives on the first and the last stage: count the first stage's copy.
  if ((p.flags & MH_PARAM_SHARED_EMBEDDING) && emb.member && emb.rank != 0) return false;
  return true;
}

// A collective plus what to do once it completed (scatter the result back, divide by dp).
struct ThenOp final : dp_detail::PendingOp {
  std::unique_ptr<dp_detail::PendingOp> op;
  std::function<void()> then;
  void wait() override {
    if (op) op->wait();
    op.reset();
    if (then) then();
    then = nullptr;
  }
};

}  // namespace

namespace {

// Every member of "embedding" must sum the same tied-embedding grads, or finish_grad_sync would
// wait forever on one stage: check once (counts and sizes, with their squares, summed).
void check_shared_embeddings(dp_detail::Comm& comm, const std::vector<std::vector<Param>>& chunks) {
  const dp_detail::GroupInfo emb = comm.info("embedding");
  if (!emb.member || emb.size < 2) return;
  int64_t count = 0, numel = 0;
  for (const auto& params : chunks)
    for (const Param& p : params)
      if (p.flags & MH_PARAM_SHARED_EMBEDDING) {
        ++count;
        numel += p.data.numel();
      }
  at::Tensor t = at::tensor({count, count * count, numel, numel * numel}, at::kLong);  // [4] on CPU
  if (!chunks.empty() && !chunks.front().empty() && chunks.front().front().data.is_cuda())
    t = t.to(chunks.front().front().data.device());
  comm.all_reduce_sum("embedding", t, false);
  t = t.cpu();
  const int64_t n = emb.size;
  const auto v = t.accessor<int64_t, 1>();
  MH_CORE_CHECK(n * v[1] == v[0] * v[0] && n * v[3] == v[2] * v[2],
                "the first and last pipeline stages hold different tied embeddings (this rank: ", count,
                " tensors, ", numel, " elements flagged MH_PARAM_SHARED_EMBEDDING)"
                "\nHINT: the model plugin must flag the word embeddings on the first stage and their copy on the last "
                "stage alike (mh_model.h)");
}

}  // namespace

DataParallel::DataParallel(std::vector<Model*> chunks, const DataParallelOptions& opts)
    : opts_(opts), comm_(dp_detail::make_runtime_comm()) {
  MH_CORE_CHECK(!chunks.empty(), "DataParallel: no model chunks");
  MH_CORE_CHECK(!opts_.overlap_param_gather || opts_.use_distributed_optimizer,
                "[parallel] overlap_param_gather needs use_distributed_optimizer"
                "\nHINT: set use_distributed_optimizer = true or overlap_param_gather = false");
  const int64_t dpcp = comm_->info("dp-cp").size;
  // Megatron: without overlap one bucket holds everything (nothing to overlap with).
  const int64_t bucket_size = opts_.bucket_size > 0            ? opts_.bucket_size
                              : opts_.overlap_grad_reduce ? default_bucket_size(dp_size())
                                                          : std::numeric_limits<int64_t>::max();
  const dp_detail::GroupInfo emb = comm_->info("embedding");
  {
    std::vector<std::vector<Param>> all;
    for (Model* m : chunks) all.push_back(m->params());
    check_shared_embeddings(*comm_, all);
  }
  chunks_.resize(chunks.size());
  for (size_t ci = 0; ci < chunks.size(); ++ci) {
    Chunk& c = chunks_[ci];
    c.model = chunks[ci];
    c.params = c.model->params();
    MH_CORE_CHECK(!c.params.empty(), "DataParallel: model chunk ", ci, " ('", c.model->id(), "') has no parameters");
    const at::ScalarType dtype = c.params.front().data.scalar_type();
    const at::Device device = c.params.front().data.device();
    std::vector<int64_t> numels;
    std::vector<bool> own;
    for (const Param& p : c.params) {
      MH_CORE_CHECK(p.data.scalar_type() == dtype && p.data.device() == device, "DataParallel: parameter '", p.name,
                    "' is ", c10::toString(p.data.scalar_type()), " on ", p.data.device().str(), ", '",
                    c.params.front().name, "' ", c10::toString(dtype), " on ", device.str(),
                    "\nHINT: one buffer per chunk needs one dtype and device");
      numels.push_back(p.data.numel());
      // Megatron: under the distributed optimizer the shared embedding gets a bucket of its own,
      // so the first and last stage shard it alike and the embedding sum can follow the DP one.
      own.push_back(opts_.use_distributed_optimizer && (p.flags & MH_PARAM_SHARED_EMBEDDING) && emb.member &&
                    emb.size > 1);
    }
    c.plan = plan_buckets(numels, own, bucket_size, opts_.use_distributed_optimizer ? dpcp : 1);
    c.param_buffer = at::zeros({c.plan.numel}, at::TensorOptions().dtype(dtype).device(device));      // [N]
    MH_CORE_CHECK(opts_.main_grads_dtype == at::kFloat || opts_.main_grads_dtype == dtype, "DataParallel: ",
                  c10::toString(opts_.main_grads_dtype), " main gradients for ", c10::toString(dtype),
                  " parameters\nHINT: main_grads_dtype is fp32, or the parameters' own bf16");
    c.grad_buffer = at::zeros({c.plan.numel}, at::TensorOptions().dtype(opts_.main_grads_dtype).device(device));
    c.buckets.resize(c.plan.buckets.size());
    c.pos_in_bucket.assign(c.params.size(), 0);
    for (size_t b = 0; b < c.buckets.size(); ++b) {
      c.buckets[b].ready.assign(c.plan.buckets[b].params.size(), 0);
      for (size_t k = 0; k < c.plan.buckets[b].params.size(); ++k) c.pos_in_bucket[c.plan.buckets[b].params[k]] = k;
    }

    std::vector<at::Tensor> data, grad;
    for (size_t i = 0; i < c.params.size(); ++i) {
      data.push_back(buffer_view(c.param_buffer, c.plan.param_offset[i], c.params[i].data));
      grad.push_back(buffer_view(c.grad_buffer, c.plan.param_offset[i], c.params[i].data));
    }
    c.bound = c.model->can_bind_storage();
    if (c.bound) {
      std::function<void(size_t)> ready;
      if (opts_.overlap_grad_reduce) ready = [this, ci](size_t i) { on_grad_ready(ci, i); };
      c.model->bind_storage(data, grad, std::move(ready));
      c.params = c.model->params();
      for (size_t i = 0; i < c.params.size(); ++i)
        MH_CORE_CHECK(c.params[i].data.data_ptr() == data[i].data_ptr() &&
                          c.params[i].grad.data_ptr() == grad[i].data_ptr(),
                      "model '", c.model->id(), "': after bind_storage parameter '", c.params[i].name,
                      "' does not show the host's storage\nHINT: this is a bug in the model plugin's bind_storage");
    } else {
      at::NoGradGuard no_grad;  // the host copies: values in now, grads in before each reduction
      for (size_t i = 0; i < c.params.size(); ++i) data[i].copy_(c.params[i].data);
    }
  }
  // Updates left in flight after a step, finished parameter by parameter as the forward needs
  // them: only when every chunk's model names its parameters first (ABI 1.9) and reads the
  // host's buffers (bound: an unbound model's copies are made all at once).
  // MEGAHOST_PARAM_GATE=0: finish every update before the forward instead (for comparison).
  const char* gate_env = std::getenv("MEGAHOST_PARAM_GATE");
  if ((opts_.overlap_param_gather || opts_.overlap_optimizer_step) && !(gate_env && std::string(gate_env) == "0")) {
    gated_ = std::all_of(chunks_.begin(), chunks_.end(),
                         [](const Chunk& c) { return c.bound && c.model->can_gate_params(); });
    if (gated_) {
      for (size_t ci = 0; ci < chunks_.size(); ++ci)
        chunks_[ci].model->set_param_gate([this, ci](size_t first, size_t count) { on_params_needed(ci, first, count); });
    } else {
      spdlog::warn("model '{}' cannot name its parameters before a forward (ABI 1.9 set_param_gate): parameter "
                   "updates finish before each forward{}", chunks_.front().model->id(),
                   opts_.overlap_optimizer_step ? "; overlap_optimizer_step is off" : "");
    }
  }
}

DataParallel::~DataParallel() {
  if (gated_)
    for (Chunk& c : chunks_) {
      try {
        c.model->set_param_gate({});
      } catch (...) {
      }
    }
  // Optimizer pieces still queued on the side stream write the buffers: let them finish.
  if (piece_stream_) c10::impl::getDeviceGuardImpl(piece_stream_->device.type())->synchronizeStream(piece_stream_->side);
  // Collectives still in flight reference the buffers: complete them before the buffers go.
  for (Chunk& c : chunks_)
    for (BucketState& b : c.buckets) {
      try {
        if (b.grad_op) b.grad_op->wait();
        if (b.param_op) b.param_op->wait();
      } catch (...) {
      }
    }
}

int64_t DataParallel::dp_size() const { return comm_->info("dp").size; }

namespace {
// MEGAHOST_DEFER_ZERO_GRAD=0: zero the bound gradient buffers in a pass of their own every
// iteration (for comparison) instead of letting the model's next backward store into them.
bool defer_zero_grad_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("MEGAHOST_DEFER_ZERO_GRAD");
    return v == nullptr || std::string(v) != "0";
  }();
  return on;
}
}  // namespace

void DataParallel::zero_grad() {
  at::NoGradGuard no_grad;
  // A pass over the gradients must not overtake optimizer pieces still reading them.
  const bool zeroes_now = std::any_of(chunks_.begin(), chunks_.end(), [](const Chunk& c) {
    return !(c.bound && c.zeroed_once && defer_zero_grad_enabled() && c.model->can_zero_grad_deferred());
  });
  if (zeroes_now && !pieces_.empty()) finish_pieces_through(pieces_.size() - 1);
  std::lock_guard<std::mutex> lock(mu_);
  for (Chunk& c : chunks_) {
    // Bound storage: after one real zeroing (the bucket padding stays zero: the reductions and
    // scalings keep it so) the model's next backward stores the gradients instead of adding:
    // no pass over the buffer (5.2 GB for GPT-1.3B in fp32).
    if (c.bound && c.zeroed_once && defer_zero_grad_enabled() && c.model->can_zero_grad_deferred()) {
      c.model->zero_grad_deferred();
    } else {
      c.grad_buffer.zero_();
      c.zeroed_once = true;
      if (!c.bound) c.model->zero_grad();
    }
    for (BucketState& b : c.buckets) {
      std::fill(b.ready.begin(), b.ready.end(), 0);
      b.num_ready = 0;
    }
    c.next_to_launch = 0;
  }
}

void DataParallel::enable_grad_sync(size_t chunk, bool on) {
  MH_CORE_CHECK(chunk < chunks_.size(), "enable_grad_sync: chunk ", chunk, " of ", chunks_.size());
  std::lock_guard<std::mutex> lock(mu_);
  chunks_[chunk].sync_on = on;
}

void DataParallel::enable_grad_sync(bool on) {
  for (size_t i = 0; i < chunks_.size(); ++i) enable_grad_sync(i, on);
}

void DataParallel::on_grad_ready(size_t chunk, size_t param) {
  std::lock_guard<std::mutex> lock(mu_);
  Chunk& c = chunks_[chunk];
  if (!c.sync_on || param >= c.params.size()) return;
  const size_t b = c.plan.param_bucket[param];
  const size_t pos = c.pos_in_bucket[param];
  BucketState& s = c.buckets[b];
  if (s.ready[pos]) return;  // already counted in this sync window
  s.ready[pos] = 1;
  ++s.num_ready;
  const size_t before = c.next_to_launch;
  launch_ready_buckets(c);
  overlapped_launches_ += static_cast<int64_t>(c.next_to_launch - before);
}

void DataParallel::launch_ready_buckets(Chunk& c) {
  // In bucket order, so every rank issues the same collectives in the same order.
  while (c.next_to_launch < c.buckets.size() &&
         c.buckets[c.next_to_launch].num_ready == c.plan.buckets[c.next_to_launch].params.size())
    launch_grad_reduce(c, c.next_to_launch++);
}

void DataParallel::launch_grad_reduce(Chunk& c, size_t bucket) {
  at::NoGradGuard no_grad;
  const BucketPlan::Bucket& b = c.plan.buckets[bucket];
  const double dp = static_cast<double>(dp_size());
  const bool async = opts_.overlap_grad_reduce;
  at::Tensor whole = c.grad_buffer.narrow(0, b.begin, b.end - b.begin);  // [bucket]
  auto op = std::make_unique<ThenOp>();
  if (opts_.use_distributed_optimizer) {
    const auto info = comm_->info("dp-cp");
    const auto [lo, hi] = bucket_shard(b, info.rank, info.size);
    at::Tensor mine = c.grad_buffer.narrow(0, lo, hi - lo);  // [bucket / dp-cp]
    at::Tensor out = at::empty_like(mine);                   // not aliasing the input: any backend
    op->op = comm_->reduce_scatter_sum("dp-cp", whole, out, async);
    op->then = [mine, out, dp]() mutable { mine.copy_(out).div_(dp); };
  } else {
    op->op = comm_->all_reduce_sum("dp-cp", whole, async);
    op->then = [whole, dp]() mutable {
      if (dp != 1.0) whole.div_(dp);  // one process: no pass over the buffer
    };
  }
  c.buckets[bucket].grad_op = std::move(op);
}

void DataParallel::copy_model_grads_in(Chunk& c) {
  at::NoGradGuard no_grad;
  std::vector<Param> now = c.model->params();
  for (size_t i = 0; i < now.size(); ++i)
    buffer_view(c.grad_buffer, c.plan.param_offset[i], now[i].data).copy_(now[i].grad);
}

void DataParallel::copy_params_out(Chunk& c) {
  at::NoGradGuard no_grad;
  std::vector<Param> now = c.model->params();
  for (size_t i = 0; i < now.size(); ++i)
    now[i].data.copy_(buffer_view(c.param_buffer, c.plan.param_offset[i], now[i].data));
}

void DataParallel::finish_grad_sync() {
  at::NoGradGuard no_grad;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (Chunk& c : chunks_) {
      if (!c.bound) copy_model_grads_in(c);
      while (c.next_to_launch < c.buckets.size()) launch_grad_reduce(c, c.next_to_launch++);
    }
    for (Chunk& c : chunks_) {
      for (BucketState& b : c.buckets) {
        if (b.grad_op) b.grad_op->wait();
        b.grad_op.reset();
        std::fill(b.ready.begin(), b.ready.end(), 0);
        b.num_ready = 0;
      }
      c.next_to_launch = 0;
    }
  }
  // Megatron's finalize_model_grads after the DP reduction: SP params over tp (one coalesced sum),
  // then the tied embedding over the first and last stage.
  if (comm_->info("tp").size > 1) {
    std::vector<at::Tensor> sp;
    for (Chunk& c : chunks_)
      for (size_t i = 0; i < c.params.size(); ++i)
        if (c.params[i].flags & MH_PARAM_SEQUENCE_PARALLEL)
          sp.push_back(buffer_view(c.grad_buffer, c.plan.param_offset[i], c.params[i].data));
    if (!sp.empty()) {
      std::vector<at::Tensor> flat_parts;
      for (auto& g : sp) flat_parts.push_back(g.reshape({-1}));
      at::Tensor flat = at::cat(flat_parts);  // [sum of SP numels]
      comm_->all_reduce_sum("tp", flat, false);
      int64_t off = 0;
      for (auto& g : sp) {
        g.copy_(flat.narrow(0, off, g.numel()).view(g.sizes()));
        off += g.numel();
      }
    }
  }
  const dp_detail::GroupInfo emb = comm_->info("embedding");
  if (emb.member && emb.size > 1)
    for (Chunk& c : chunks_)
      for (size_t i = 0; i < c.params.size(); ++i)
        if (c.params[i].flags & MH_PARAM_SHARED_EMBEDDING)
          comm_->all_reduce_sum("embedding", buffer_view(c.grad_buffer, c.plan.param_offset[i], c.params[i].data),
                                false);
}

double DataParallel::grad_norm() { return grad_norm_tensor().item<double>(); }

at::Tensor DataParallel::grad_norm_tensor() {
  at::NoGradGuard no_grad;
  const dp_detail::GroupInfo tp = comm_->info("tp"), emb = comm_->info("embedding"), dpcp = comm_->info("dp-cp");
  const at::Device device = chunks_.front().grad_buffer.device();
  at::Tensor sq = at::zeros({1}, at::TensorOptions().dtype(at::kDouble).device(device));  // [1]
  for (Chunk& c : chunks_) {
    // The counted parts of the buffer as few contiguous runs (one reduction each, not one per param).
    std::vector<std::pair<int64_t, int64_t>> runs;
    for (size_t i = 0; i < c.params.size(); ++i) {
      if (!is_counted_in_norm(c.params[i], tp, emb)) continue;
      int64_t lo = c.plan.param_offset[i], hi = lo + c.params[i].data.numel();
      if (opts_.use_distributed_optimizer) {  // only the owned shard is reduced (and counted)
        const auto [s0, s1] = bucket_shard(c.plan.buckets[c.plan.param_bucket[i]], dpcp.rank, dpcp.size);
        lo = std::max(lo, s0);
        hi = std::min(hi, s1);
      }
      if (lo < hi) runs.emplace_back(lo, hi);
    }
    std::sort(runs.begin(), runs.end());
    std::vector<std::pair<int64_t, int64_t>> merged;
    for (const auto& r : runs)
      if (!merged.empty() && merged.back().second == r.first) merged.back().second = r.second;
      else merged.push_back(r);
    for (const auto& [lo, hi] : merged) {
      const at::Tensor g = c.grad_buffer.narrow(0, lo, hi - lo);
      // CUDA: one fp32-accumulating reduction that reads the buffer once; CPU (tests compare
      // layouts to 1e-5): exact float64 sums.
      // bf16 main gradients: the norm accumulated and returned in float32, not rounded to bf16.
      sq += device.is_cuda()
                ? at::linalg_vector_norm(g, 2, at::OptionalIntArrayRef{}, false, at::kFloat).to(at::kDouble).pow(2)
                : g.to(at::kDouble).pow(2).sum();
    }
  }
  if (opts_.use_distributed_optimizer) comm_->all_reduce_sum("dp-cp", sq, false);
  comm_->all_reduce_sum("tp-pp", sq, false);
  return sq.sqrt_();
}

double DataParallel::clip_coefficient(double norm, double max_norm) {
  if (max_norm <= 0 || !std::isfinite(norm)) return 1.0;
  const double coeff = max_norm / (norm + 1e-6);  // Megatron's clip coefficient
  return coeff < 1.0 ? coeff : 1.0;
}

at::Tensor DataParallel::clip_coefficient_tensor(const at::Tensor& norm, double max_norm) {
  at::NoGradGuard no_grad;
  const at::Tensor one = at::ones_like(norm);  // float64 [1]
  if (max_norm <= 0) return one.to(at::kFloat);
  // as clip_coefficient, in float64 (a true division: `double / Tensor` would multiply by a reciprocal)
  const at::Tensor coeff = at::full_like(norm, max_norm).div_(norm + 1e-6).clamp_max_(1.0);
  return at::where(at::isfinite(norm), coeff, one).to(at::kFloat);
}

double DataParallel::grad_norm_and_clip(double max_norm) {
  const double norm = grad_norm();
  const double coeff = clip_coefficient(norm, max_norm);
  if (coeff < 1.0) {
    at::NoGradGuard no_grad;
    for (Chunk& c : chunks_) c.grad_buffer.mul_(coeff);
  }
  return norm;
}

void DataParallel::build_optimizer_views(bool remainders) {
  const dp_detail::GroupInfo dpcp = comm_->info("dp-cp");
  slices_.clear();
  for (size_t ci = 0; ci < chunks_.size(); ++ci) {
    Chunk& c = chunks_[ci];
    for (size_t i = 0; i < c.params.size(); ++i) {
      OptSlice s{ci, i, 0, {}, {}, {}, {}};
      const int64_t off = c.plan.param_offset[i], n = c.params[i].data.numel();
      if (opts_.use_distributed_optimizer) {
        const auto [s0, s1] = bucket_shard(c.plan.buckets[c.plan.param_bucket[i]], dpcp.rank, dpcp.size);
        const int64_t lo = std::max(off, s0), hi = std::min(off + n, s1);
        if (lo >= hi) continue;  // another rank owns all of it
        s.offset = lo - off;
        s.data = c.param_buffer.narrow(0, lo, hi - lo);  // [owned part], 1-D
        s.grad = c.grad_buffer.narrow(0, lo, hi - lo);
      } else {
        s.data = buffer_view(c.param_buffer, off, c.params[i].data);
        s.grad = buffer_view(c.grad_buffer, off, c.params[i].data);
      }
      if (remainders && s.data.scalar_type() == at::kBFloat16) {  // masters = params exactly: remainders 0
        if (opts_.use_distributed_optimizer) {
          s.remainder = at::zeros(s.data.sizes(), s.data.options().dtype(at::kShort));
        } else {
          if (!c.remainder_buffer.defined())
            c.remainder_buffer = at::zeros({c.param_buffer.numel()}, c.param_buffer.options().dtype(at::kShort));
          s.remainder = buffer_view(c.remainder_buffer, off, c.params[i].data);
        }
      } else if (s.data.scalar_type() != at::kFloat) {  // fp32 master weights
        if (opts_.use_distributed_optimizer) {
          s.master = s.data.to(at::kFloat);
        } else {  // views of one fp32 mirror of the buffer: step() copies back in one kernel
          if (!c.master_buffer.defined()) c.master_buffer = c.param_buffer.to(at::kFloat);
          s.master = buffer_view(c.master_buffer, off, c.params[i].data);
        }
      }
      slices_.push_back(std::move(s));
    }
  }
  auto a = std::make_unique<Model::AbiParams>();
  a->shapes.reserve(3 * slices_.size());  // the DLTensors point into these: no reallocation
  auto dl = [&a](const at::Tensor& t) {
    a->shapes.emplace_back(t.sizes().begin(), t.sizes().end());
    auto d = std::make_unique<DLTensor>();
    d->data = t.data_ptr();
    d->device = sdk::to_dl_device(t.device());
    d->ndim = static_cast<int32_t>(t.dim());
    d->dtype = sdk::to_dl_dtype(t.scalar_type());
    d->shape = a->shapes.back().data();
    d->strides = nullptr;  // contiguous
    d->byte_offset = 0;
    a->tensors.push_back(std::move(d));
    return a->tensors.back().get();
  };
  bool any_master = false, any_remainder = false;
  for (const OptSlice& s : slices_) {
    any_master = any_master || s.master.defined();
    any_remainder = any_remainder || s.remainder.defined();
  }
  for (const OptSlice& s : slices_) {
    const Param& p = chunks_[s.chunk].params[s.param];
    a->names.push_back(p.name);
    mh_param_view v{};
    v.struct_size = sizeof(mh_param_view);
    v.data = dl(s.master.defined() ? s.master : s.data);
    if (any_master) a->model_copies.push_back(s.master.defined() ? dl(s.data) : nullptr);
    if (any_remainder) a->remainders.push_back(s.remainder.defined() ? dl(s.remainder) : nullptr);
    if (opts_.use_distributed_optimizer) a->offsets.push_back(s.offset);  // the shard's start
    v.grad = dl(s.grad);
    // A shard is 1-D: the parameter's split dim no longer applies to it.
    v.tensor_parallel_dim = opts_.use_distributed_optimizer ? -1 : p.tensor_parallel_dim;
    v.flags = p.flags;
    a->views.push_back(v);
  }
  for (size_t i = 0; i < a->views.size(); ++i) a->views[i].name = a->names[i].c_str();
  opt_params_ = std::move(a);
}

void DataParallel::setup_optimizer(Optimizer& opt) {
  const bool remainders = opts_.store_param_remainders && opt.takes_param_remainders();
  if (opts_.store_param_remainders && !remainders)
    spdlog::warn("store_param_remainders: optimizer '{}' predates ABI 1.8 (param_remainders); keeping fp32 master "
                 "weights", opt.id());
  build_optimizer_views(remainders);
  opt.setup(*opt_params_);
  if (!opts_.overlap_optimizer_step) return;
  std::string why;
  if (opts_.use_distributed_optimizer) why = "the distributed optimizer overlaps its all-gather instead";
  else if (!gated_) why = "the model cannot name its parameters before a forward (ABI 1.9 set_param_gate)";
  else if (!opt.updates_param_ranges()) why = "optimizer '" + opt.id() + "' predates ABI 1.9 (parameter ranges)";
  if (!why.empty()) {
    spdlog::warn("overlap_optimizer_step is off: {}", why);
    return;
  }
  overlap_opt_ = true;
  plan_optimizer_pieces();
}

void DataParallel::step(Optimizer& opt, double lr, double weight_decay, int64_t iteration, double grad_scale,
                        const at::Tensor& grad_scale_tensor) {
  MH_CORE_CHECK(opt_params_ != nullptr, "DataParallel::step before setup_optimizer"
                                        "\nHINT: call setup_optimizer(optimizer) once after building DataParallel");
  wait_param_gather();  // a forward that gates finished them all already; a plain one waited before
  at::NoGradGuard no_grad;
  if (grad_scale != 1.0 && !opt.applies_grad_scale()) {  // an ABI < 1.2 plugin: scale here
    for (Chunk& c : chunks_) c.grad_buffer.mul_(grad_scale);
    grad_scale = 1.0;
  }
  if (overlap_opt_) {
    step_in_pieces(opt, lr, weight_decay, iteration, grad_scale, grad_scale_tensor);
    return;
  }
  opt.step(*opt_params_, lr, weight_decay, iteration, grad_scale, grad_scale_tensor);
  // bf16/fp16 <- fp32 masters, unless the optimizer wrote them in its update pass (ABI 1.5).
  if (!opt.writes_model_copies() || opt_params_->model_copies.empty()) {
    for (Chunk& c : chunks_)
      if (c.master_buffer.defined()) c.param_buffer.copy_(c.master_buffer);
    for (OptSlice& s : slices_)
      if (s.master.defined() && !chunks_[s.chunk].master_buffer.defined()) s.data.copy_(s.master);
  }
  if (!opts_.use_distributed_optimizer) {
    for (Chunk& c : chunks_)
      if (!c.bound) copy_params_out(c);
    return;
  }
  // Every rank updated its shard: gather the buckets back (Megatron's param all-gather).
  const dp_detail::GroupInfo dpcp = comm_->info("dp-cp");
  for (Chunk& c : chunks_)
    for (size_t bi = 0; bi < c.buckets.size(); ++bi) {
      const BucketPlan::Bucket& b = c.plan.buckets[bi];
      const auto [lo, hi] = bucket_shard(b, dpcp.rank, dpcp.size);
      at::Tensor mine = c.param_buffer.narrow(0, lo, hi - lo).clone();  // not aliasing the output
      at::Tensor whole = c.param_buffer.narrow(0, b.begin, b.end - b.begin);
      auto op = std::make_unique<ThenOp>();
      op->op = comm_->all_gather("dp-cp", mine, whole, opts_.overlap_param_gather);
      op->then = [mine] {};  // keeps the input alive until the gather completed
      c.buckets[bi].param_op = std::move(op);
    }
  param_gather_pending_ = true;
  if (!opts_.overlap_param_gather) wait_param_gather();
}

void DataParallel::reload_model_params() {
  wait_param_gather();
  at::NoGradGuard no_grad;
  for (Chunk& c : chunks_)
    if (!c.bound) {
      std::vector<Param> now = c.model->params();
      for (size_t i = 0; i < now.size(); ++i)
        buffer_view(c.param_buffer, c.plan.param_offset[i], now[i].data).copy_(now[i].data);
    }
  for (OptSlice& s : slices_) {
    if (s.master.defined()) s.master.copy_(s.data);
    if (s.remainder.defined()) s.remainder.zero_();  // the masters are the loaded bf16 values exactly
  }
}

void DataParallel::wait_param_gather() {
  if (!pieces_.empty()) finish_pieces_through(pieces_.size() - 1);
  if (!param_gather_pending_) return;
  for (Chunk& c : chunks_) {
    for (BucketState& b : c.buckets) {
      if (b.param_op) b.param_op->wait();
      b.param_op.reset();
    }
    if (!c.bound) copy_params_out(c);
  }
  param_gather_pending_ = false;
}

void DataParallel::visit_optimizer_state(Optimizer& opt,
                                         const std::function<void(const std::string&, at::Tensor)>& fn) {
  MH_CORE_CHECK(opt_params_ != nullptr, "DataParallel::visit_optimizer_state before setup_optimizer");
  wait_param_gather();  // the state and masters of every piece are the updated ones
  opt.visit_state(*opt_params_, fn);
  // The fp32 master weights of bf16/fp16 parameters are optimizer state too (Megatron saves
  // them): a resume continues from them, not from the rounded parameters.
  for (size_t i = 0; i < slices_.size(); ++i) {
    OptSlice& s = slices_[i];
    if (s.master.defined()) fn(opt_params_->names[i] + ".fp32_master", s.master);
    if (s.remainder.defined()) {
      // The same entry, composed on the device and handed over in host memory (a save keeps it,
      // so device memory does not grow by a master copy); what a load writes into it is split back.
      at::NoGradGuard no_grad;
      at::Tensor master = sdk::compose_fp32(s.data, s.remainder);
      if (master.is_cuda()) master = master.to(at::kCPU);
      fn(opt_params_->names[i] + ".fp32_master", master);
      sdk::split_fp32(master.to(s.data.device()), s.data, s.remainder);
    }
  }
}

std::vector<DataParallel::ShardInfo> DataParallel::optimizer_shards() const {
  std::vector<ShardInfo> out;
  for (const OptSlice& s : slices_) {
    const Param& p = chunks_[s.chunk].params[s.param];
    out.push_back({p.name, s.offset, s.data.numel(), p.data.numel()});
  }
  return out;
}

DataParallelMemory DataParallel::memory(Optimizer* opt) {
  DataParallelMemory m;
  wait_param_gather();
  for (const Chunk& c : chunks_) {
    for (const Param& p : c.params) m.num_params += p.data.numel();
    m.param_buffer_bytes += static_cast<int64_t>(c.param_buffer.nbytes());
    m.grad_buffer_bytes += static_cast<int64_t>(c.grad_buffer.nbytes());
  }
  for (const OptSlice& s : slices_) {
    if (s.master.defined()) m.master_bytes += static_cast<int64_t>(s.master.nbytes());
    if (s.remainder.defined()) m.master_bytes += static_cast<int64_t>(s.remainder.nbytes());
  }
  if (opt != nullptr && opt_params_ != nullptr) {
    if (std::optional<int64_t> bytes = opt->state_bytes())
      m.optimizer_state_bytes = *bytes;  // as stored: fp16 / fp8 moments are visited widened
    else
      opt->visit_state(*opt_params_, [&m](const std::string&, const at::Tensor& t) {
        m.optimizer_state_bytes += static_cast<int64_t>(t.nbytes());
      });
  }
  return m;
}

}  // namespace megahost::core
