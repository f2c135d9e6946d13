// megahost core — Megatron-Core's DistributedDataParallel + DistributedOptimizer, from parameter
// metadata only (names, shapes, MH_PARAM_* flags): the model never reduces its own gradients.
//
//   per model chunk: param buffer [N] (the parameters' dtype) and grad buffer [N] float32 (main
//   grads), parameters laid out in REVERSE order (the order backward produces them), cut into
//   buckets of ~bucket_size elements; under the distributed optimizer every bucket is padded to a
//   multiple of the dp-cp size and rank r owns the r-th equal shard of each bucket.
//
// One iteration, in the order the trainer calls it:
//
//   dp.before_forward();                    // pending parameter updates, unless the models gate
//   for each micro-batch (schedule):
//     dp.enable_grad_sync(chunk, is_last);  // on before the chunk's last micro-batch backward
//     forward + backward                    // overlap_grad_reduce: buckets launch as grads land
//   dp.finish_grad_sync();                  // reduce what is left over dp-cp, SP over tp, embedding
//   norm = dp.grad_norm();                  // (grad_norm_and_clip: clips in a pass of its own)
//   dp.step(optimizer, lr, wd, iteration, clip_coefficient(norm, clip_grad) / loss_scale);
//                                           // optimizer on this rank's shard, then all-gather
//     or, without the host waiting for the norm (bf16 / fp32 on an ABI >= 1.7 optimizer):
//   norm = dp.grad_norm_tensor();           // float64 [1] on the device
//   dp.step(optimizer, lr, wd, iteration, 1.0, clip_coefficient_tensor(norm, clip_grad));
//   dp.zero_grad();
//
// Gradient convention (mh_model.h): SUM over "dp-cp", then divide by the dp size; then, as
// Megatron's finalize_model_grads does after the DP reduction, grads of MH_PARAM_SEQUENCE_PARALLEL
// params summed over "tp" and MH_PARAM_SHARED_EMBEDDING grads over "embedding". All three are
// linear, so any order gives the single-process gradient; this order needs the shared embedding
// in a bucket of its own (same shard on the first and last stage), as Megatron does.
#pragma once

#include <ATen/ATen.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "megahost/core/instances.h"

namespace megahost::core {

struct DataParallelOptions {
  // Elements per bucket; <= 0: Megatron's default, max(40M, 1M * dp) with overlap_grad_reduce,
  // one bucket without.
  int64_t bucket_size = 0;
  bool overlap_grad_reduce = false;
  bool use_distributed_optimizer = false;
  bool overlap_param_gather = false;  // needs use_distributed_optimizer
  // Megatron's store_param_remainders: bf16 parameters keep their fp32 masters as the parameter
  // plus an int16 remainder (2 bytes per parameter instead of 4), exact; needs an optimizer
  // plugin of ABI >= 1.8 (fp32 masters otherwise). fp16 parameters keep fp32 masters.
  bool store_param_remainders = false;
  // Megatron's --main-grads-dtype: the gradient buffers' dtype (float32, or the parameters' bf16:
  // half the bytes written by the weight-gradient products and read by the optimizer; the same
  // precision as autocast's weight gradients, which are bf16 products cast to float32).
  at::ScalarType main_grads_dtype = at::kFloat;
  // The optimizer step in pieces, each finished only when the next forward needs its parameters
  // (the models name them through the ABI 1.9 parameter gate): on CUDA every piece is queued at
  // once on a side stream and the forward waits piece by piece, so the update runs under the
  // forward; on the CPU a piece runs when the forward asks for it. Needs models that gate, an
  // optimizer of ABI >= 1.9 and no distributed optimizer (overlap_param_gather is its overlap).
  bool overlap_optimizer_step = false;
  int64_t optimizer_piece_size = 0;  // elements per piece; <= 0: 1/48 of the parameters, at least 1M
};

// ---- Megatron's buffer arithmetic (pure, unit-tested) ----

struct BucketPlan {
  struct Bucket {
    int64_t begin = 0, end = 0;  // [begin, end) in the buffer; end - begin is a multiple of pad_to
    std::vector<size_t> params;  // parameter indices, in buffer order (reverse of model order)
  };
  std::vector<int64_t> param_offset;  // per parameter (model order): first element in the buffer
  std::vector<size_t> param_bucket;   // per parameter: its bucket
  std::vector<Bucket> buckets;
  int64_t numel = 0;  // buffer length, padding included
};

// Every parameter starts at a multiple of this many elements: 16 bytes in a 16-bit buffer (32 in
// the fp32 gradients), the alignment cuBLASLt's fastest kernels and our vector loads need. Packed
// back to back, one parameter of odd size (BERT's binary-head bias, 2 elements) shifted every later
// one to a 4-byte boundary, and each product on them ran an sm80 "align2" kernel (~250 TFLOP/s on
// an H200) or, for bf16 into fp32 gradients, cuBLAS's non-tensor-core sgemmEx.
constexpr int64_t kParamAlignElems = 8;

// numels: per parameter in model order. own_bucket[i]: parameter i gets a bucket to itself
// (Megatron: the shared embedding under pipelining). pad_to: dp-cp size under the distributed
// optimizer, 1 otherwise. Parameters start at multiples of kParamAlignElems (the gaps stay zero).
BucketPlan plan_buckets(const std::vector<int64_t>& numels, const std::vector<bool>& own_bucket, int64_t bucket_size,
                        int64_t pad_to);

// Rank `rank` of `size`'s equal shard of a bucket: [begin, end).
std::pair<int64_t, int64_t> bucket_shard(const BucketPlan::Bucket& b, int64_t rank, int64_t size);

// Megatron's default bucket size for a dp size.
int64_t default_bucket_size(int64_t dp_size);

// What the buffers and the optimizer hold on this rank (bytes, measured as the tensors' nbytes).
struct DataParallelMemory {
  int64_t num_params = 0;        // this rank's parameter elements (padding not counted)
  int64_t param_buffer_bytes = 0;
  int64_t grad_buffer_bytes = 0;
  int64_t master_bytes = 0;      // fp32 master copies (only for non-fp32 params), or their int16 remainders
  int64_t optimizer_state_bytes = 0;
  double bytes_per_param() const {
    return num_params == 0 ? 0.0
                           : static_cast<double>(param_buffer_bytes + grad_buffer_bytes + master_bytes +
                                                 optimizer_state_bytes) / static_cast<double>(num_params);
  }
};

namespace dp_detail {
struct Comm;  // the groups and collectives (data_parallel_comm.cpp)
struct PendingOp;
struct PieceStream;  // the side stream and events of the optimizer's pieces (data_parallel_pieces.cpp)
}  // namespace dp_detail

class DataParallel {
 public:
  // chunks: this rank's model chunks (several under interleaved pipelining), alive as long as
  // this object. Groups come from core::ParallelRuntime::get() (size 1 everywhere when it is not
  // initialised). Binds the buffers with Model::bind_storage, or copies when a model cannot bind.
  DataParallel(std::vector<Model*> chunks, const DataParallelOptions& opts);
  ~DataParallel();
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;

  // Zeroes the grad buffers (and the models' own grads when unbound); resets bucket readiness.
  void zero_grad();
  // The schedule turns sync on before the chunk's last micro-batch backward (Megatron's
  // no_sync() around the others); with overlap_grad_reduce buckets launch only while it is on.
  void enable_grad_sync(size_t chunk, bool on);
  void enable_grad_sync(bool on);  // every chunk
  // Launches what has not been launched, waits for everything, then the SP (tp) and embedding sums.
  void finish_grad_sync();
  // The global L2 norm of the gradients as one process would compute it; scales them by
  // max_norm / (norm + 1e-6) when that is below 1 (max_norm <= 0: no clipping).
  double grad_norm_and_clip(double max_norm);
  // The same norm without touching the gradients; the trainer folds clipping (and fp16's
  // 1 / loss scale) into step()'s grad_scale instead of a pass over the gradients.
  double grad_norm();
  // The same norm as a float64 [1] tensor on the gradients' device, queued, not waited for.
  at::Tensor grad_norm_tensor();
  static double clip_coefficient(double norm, double max_norm);  // 1 when no clipping is needed
  // clip_coefficient on the device: float32 [1] from grad_norm_tensor()'s float64 [1], with the
  // same float64 arithmetic (so the same value); 1 for a non-finite norm or max_norm <= 0.
  static at::Tensor clip_coefficient_tensor(const at::Tensor& norm, double max_norm);

  // The optimizer plugin works on what this object hands it: every parameter, or this rank's
  // shard of every bucket under the distributed optimizer (1-D views, same names and flags).
  void setup_optimizer(Optimizer& opt);
  // grad_scale multiplies the gradients (in the optimizer when its plugin can, else here first).
  // grad_scale_tensor (a float32 [1] on the device, e.g. clip_coefficient_tensor) multiplies them
  // too; it needs opt.applies_grad_scale_tensor().
  void step(Optimizer& opt, double lr, double weight_decay, int64_t iteration, double grad_scale = 1.0,
            const at::Tensor& grad_scale_tensor = {});
  // After the parameters were written from outside (checkpoint load): refreshes the fp32 master
  // copies (and the buffers of a model that could not bind). Megatron's reload_model_params.
  void reload_model_params();
  // Finishes every parameter update step() left in flight (overlap_param_gather's all-gathers,
  // overlap_optimizer_step's pieces): before an evaluation, a save, or reading the parameters.
  void wait_param_gather();
  // Before a training forward: wait_param_gather(), unless every model names its parameters to
  // the gate (ABI 1.9), which then finishes each update when the forward needs it.
  void before_forward();
  bool gates_forward() const { return gated_; }
  bool optimizer_overlapped() const { return overlap_opt_; }
  size_t optimizer_pieces() const { return pieces_.size(); }
  // fn(name, state tensor) for checkpoints: the optimizer's state over the views it was given.
  void visit_optimizer_state(Optimizer& opt, const std::function<void(const std::string&, at::Tensor)>& fn);
  // The views the optimizer sees (checkpointing writes them, e.g. the shards' names and sizes).
  const Model::AbiParams& optimizer_params() const { return *opt_params_; }

  // Where each optimizer view lies in its parameter (flattened): view i of optimizer_params()
  // covers elements [offset, offset + numel) of a param_numel-element parameter. Checkpoints of
  // the distributed optimizer's state need it to reshard under another dp size.
  struct ShardInfo {
    std::string name;
    int64_t offset = 0, numel = 0, param_numel = 0;
  };
  std::vector<ShardInfo> optimizer_shards() const;

  DataParallelMemory memory(Optimizer* opt = nullptr);
  const BucketPlan& plan(size_t chunk) const { return chunks_[chunk].plan; }
  bool bound(size_t chunk) const { return chunks_[chunk].bound; }
  const DataParallelOptions& options() const { return opts_; }
  int64_t dp_size() const;
  // Bucket reductions launched from grad_ready during backward so far (overlap_grad_reduce).
  int64_t overlapped_launches() const { return overlapped_launches_; }

 private:
  struct BucketState {
    std::vector<char> ready;  // per bucket parameter (index in Bucket::params order)
    size_t num_ready = 0;
    std::unique_ptr<dp_detail::PendingOp> grad_op, param_op;
  };
  struct Chunk {
    Model* model = nullptr;
    std::vector<Param> params;  // model order; data/grad: views into the buffers once bound
    std::vector<size_t> pos_in_bucket;  // per parameter: its index in its bucket's params
    BucketPlan plan;
    at::Tensor param_buffer, grad_buffer;  // [numel]
    at::Tensor master_buffer;  // [numel] fp32 mirror of a bf16/fp16 param_buffer (not under the distributed optimizer)
    at::Tensor remainder_buffer;  // [numel] int16: the masters' lower halves instead (store_param_remainders)
    std::vector<BucketState> buckets;
    size_t next_to_launch = 0;  // buckets launch in index order on every rank
    bool bound = false;
    bool sync_on = true;
    bool zeroed_once = false;  // the whole buffer (bucket padding too) was zeroed at least once
  };
  // One optimizer-visible piece of a parameter.
  struct OptSlice {
    size_t chunk, param;
    int64_t offset;         // first element within the (flattened) parameter
    at::Tensor data, grad;  // views of the buffers (1-D under the distributed optimizer)
    at::Tensor master;      // fp32 copy when the parameter is not fp32
    at::Tensor remainder;   // or, for bf16 with store_param_remainders, its int16 lower half
  };

  void on_grad_ready(size_t chunk, size_t param);
  // The gate (ABI 1.9): a forward of `chunk` is about to read parameters [first, first + count).
  void on_params_needed(size_t chunk, size_t first, size_t count);
  void plan_optimizer_pieces();
  void step_in_pieces(Optimizer& opt, double lr, double weight_decay, int64_t iteration, double grad_scale,
                      const at::Tensor& grad_scale_tensor);
  void run_piece(size_t piece);
  // CPU: runs the pending pieces up to `piece`; CUDA: the current stream waits for them.
  void finish_pieces_through(size_t piece);
  void launch_ready_buckets(Chunk& c);
  void launch_grad_reduce(Chunk& c, size_t bucket);
  void copy_model_grads_in(Chunk& c);
  void copy_params_out(Chunk& c);
  void build_optimizer_views(bool remainders);

  DataParallelOptions opts_;
  std::unique_ptr<dp_detail::Comm> comm_;
  std::vector<Chunk> chunks_;
  std::vector<OptSlice> slices_;
  std::unique_ptr<Model::AbiParams> opt_params_;
  std::mutex mu_;  // grad_ready runs on the autograd thread
  bool param_gather_pending_ = false;
  bool gated_ = false;        // every chunk's model calls on_params_needed before reading parameters
  bool overlap_opt_ = false;  // overlap_optimizer_step in effect (setup_optimizer decided)

  // overlap_optimizer_step: consecutive slices_ ranges, in model order.
  struct Piece {
    size_t first_slice = 0, num_slices = 0;
  };
  std::vector<Piece> pieces_;
  std::vector<std::vector<int32_t>> piece_of_param_;  // [chunk][param]: its piece (-1: none)
  struct PendingStep {
    Optimizer* opt = nullptr;
    double lr = 0, weight_decay = 0, grad_scale = 1;
    int64_t iteration = 0;
    at::Tensor grad_scale_tensor;  // held until the last piece is waited for (a side stream reads it)
  };
  std::optional<PendingStep> pending_step_;
  size_t pieces_done_ = 0;  // pieces [0, pieces_done_) ran (CPU) or the current stream waits for them (CUDA)
  std::unique_ptr<dp_detail::PieceStream> piece_stream_;  // CUDA only
  std::atomic<int64_t> overlapped_launches_{0};
};

}  // namespace megahost::core
