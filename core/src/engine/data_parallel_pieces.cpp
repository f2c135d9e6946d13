// megahost core — DataParallel's parameter gate and the optimizer step in pieces
// (overlap_optimizer_step, overlap_param_gather bucket by bucket; see data_parallel.h).
//
// After a step some parameter updates may still be in flight: the distributed optimizer's
// all-gathers, or the optimizer's own pieces. A model of ABI >= 1.9 names every parameter to the
// gate before its forward reads it (mh_model_api.set_param_gate); the gate finishes exactly what
// those parameters need:
//
//   step():   side stream waits for the main stream (the gradient norm, the clip coefficient),
//             then runs piece 0, 1, ..., each followed by an event             (CUDA)
//             or only remembers the step's arguments                            (CPU)
//   forward:  gate(params of layer k) -> the main stream waits for the event of the piece that
//             holds them (CUDA) / the pieces up to it run now (CPU)
//
// Pieces follow the model's parameter order (embeddings, layer 0, 1, ...), the order a forward
// reads them, so the first layers wait least. On the CPU nothing runs concurrently; running a
// piece only when asked makes a parameter the model read without naming it keep its old value,
// so the CPU tests comparing against the plain step catch a missing gate deterministically.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <c10/core/StreamGuard.h>

#include <algorithm>
#include <cstdlib>
#include <string>

#include <spdlog/spdlog.h>

#include "data_parallel_comm.h"
#include "megahost/core/engine/data_parallel.h"
#include "megahost/core/error.h"

namespace megahost::core {

namespace {
// Elements per piece: 1/48 of the parameters (GPT-1.3B: ~27M, about half a layer), at least 1M.
int64_t piece_elems(int64_t wanted, int64_t total) {
  if (wanted > 0) return wanted;
  return std::max<int64_t>(1 << 20, total / 48);
}
// MEGAHOST_DEBUG_OPTIMIZER_DELAY=N (GPU checks): N products of two 4096 x 4096 bf16 matrices
// (~0.2 ms each on an H200) on the side stream before the first piece, so the pieces finish late
// and the forward's waits are exercised (DpCuda tests; whether a missing wait shows depends on
// what else the GPU runs meanwhile: docs/performance.md).
void delay_side_stream_for_tests(const c10::Device& device) {
  static const int n = [] {
    const char* v = std::getenv("MEGAHOST_DEBUG_OPTIMIZER_DELAY");
    return v == nullptr ? 0 : std::atoi(v);
  }();
  if (n <= 0) return;
  at::NoGradGuard no_grad;
  const at::Tensor a = at::ones({4096, 4096}, at::TensorOptions().dtype(at::kBFloat16).device(device));
  at::Tensor c;
  for (int i = 0; i < n; ++i) c = at::mm(a, a);
}

}  // namespace

void DataParallel::plan_optimizer_pieces() {
  pieces_.clear();
  piece_of_param_.assign(chunks_.size(), {});
  for (size_t ci = 0; ci < chunks_.size(); ++ci) piece_of_param_[ci].assign(chunks_[ci].params.size(), -1);
  int64_t total = 0;
  for (const OptSlice& s : slices_) total += s.data.numel();
  const int64_t target = piece_elems(opts_.optimizer_piece_size, total);
  Piece open;
  int64_t open_elems = 0;
  for (size_t k = 0; k < slices_.size(); ++k) {
    if (open.num_slices == 0) open.first_slice = k;
    ++open.num_slices;
    open_elems += slices_[k].data.numel();
    piece_of_param_[slices_[k].chunk][slices_[k].param] = static_cast<int32_t>(pieces_.size());
    if (open_elems >= target || k + 1 == slices_.size()) {
      pieces_.push_back(open);
      open = Piece{};
      open_elems = 0;
    }
  }
  if (!slices_.empty() && slices_.front().data.is_cuda()) {
    const c10::Device dev = slices_.front().data.device();
    const auto* impl = c10::impl::getDeviceGuardImpl(dev.type());
    // The pool's low-priority stream; the trainer runs the forward on a high-priority one, so the
    // block scheduler prefers the forward's kernels and the update fills what they leave.
    piece_stream_ = std::make_unique<dp_detail::PieceStream>(dev, impl->getStreamFromGlobalPool(dev, false));
    for (size_t i = 0; i < pieces_.size(); ++i)
      piece_stream_->done.push_back(std::make_unique<c10::Event>(dev.type()));
  }
}

void DataParallel::run_piece(size_t piece) {
  at::NoGradGuard no_grad;
  const PendingStep& st = *pending_step_;
  const Piece& p = pieces_[piece];
  st.opt->step(*opt_params_, st.lr, st.weight_decay, st.iteration, st.grad_scale, st.grad_scale_tensor,
               {p.first_slice, p.num_slices});
  // bf16/fp16 <- fp32 masters, unless the optimizer wrote them in its update pass (ABI 1.5).
  if (!st.opt->writes_model_copies() || opt_params_->model_copies.empty())
    for (size_t k = p.first_slice; k < p.first_slice + p.num_slices; ++k)
      if (slices_[k].master.defined()) slices_[k].data.copy_(slices_[k].master);
}

void DataParallel::step_in_pieces(Optimizer& opt, double lr, double weight_decay, int64_t iteration,
                                  double grad_scale, const at::Tensor& grad_scale_tensor) {
  pending_step_ = PendingStep{&opt, lr, weight_decay, grad_scale, iteration, grad_scale_tensor};
  pieces_done_ = 0;
  if (!piece_stream_) return;  // CPU: each piece runs when a forward asks for it
  dp_detail::PieceStream& ps = *piece_stream_;
  ps.main_ready.record(ps.current());
  ps.main_ready.block(ps.side);
  c10::StreamGuard on_side(ps.side);  // the optimizer plugin launches on the current stream
  delay_side_stream_for_tests(ps.device);
  for (size_t i = 0; i < pieces_.size(); ++i) {
    run_piece(i);
    ps.done[i]->record(ps.side);
  }
}

void DataParallel::finish_pieces_through(size_t piece) {
  if (!pending_step_ || pieces_.empty()) return;
  piece = std::min(piece, pieces_.size() - 1);
  if (piece < pieces_done_) return;
  if (piece_stream_) {
    // Events complete in order on one stream: waiting for this piece's covers the ones before.
    piece_stream_->done[piece]->block(piece_stream_->current());
    pieces_done_ = piece + 1;
  } else {
    while (pieces_done_ <= piece) run_piece(pieces_done_++);
  }
  // The current stream now waits for every piece: what the step held may go.
  if (pieces_done_ == pieces_.size()) pending_step_.reset();
}

void DataParallel::on_params_needed(size_t chunk, size_t first, size_t count) {
  if (chunk >= chunks_.size()) return;
  Chunk& c = chunks_[chunk];
  const size_t end = std::min(first + count, c.params.size());
  if (pending_step_) {
    int32_t need = -1;
    for (size_t i = first; i < end; ++i) need = std::max(need, piece_of_param_[chunk][i]);
    if (need >= 0) finish_pieces_through(static_cast<size_t>(need));
  }
  if (param_gather_pending_) {
    for (size_t i = first; i < end; ++i) {
      BucketState& b = c.buckets[c.plan.param_bucket[i]];
      if (b.param_op) {
        b.param_op->wait();  // NCCL: the current stream waits; Gloo: this thread
        b.param_op.reset();
      }
    }
  }
}

void DataParallel::before_forward() {
  if (!gated_) wait_param_gather();
}

}  // namespace megahost::core
