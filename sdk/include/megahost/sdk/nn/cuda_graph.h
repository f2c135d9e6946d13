// megahost SDK — full-iteration CUDA graphs (Megatron's --cuda-graph-impl full_iteration).
//
// One micro-batch's forward and backward are recorded once into a CUDA graph and then replayed:
// the next batch is copied into the recorded inputs and the ~1,000 kernels of a GPT iteration go
// out as one launch, without the gaps between them.
//
// A replay is only right where nothing the recording depended on has changed. What it depends on,
// and how each is kept:
// - the batch's shapes and dtypes and the training flag: part of a graph's key (each key warms up
//   and records on its own; all graphs share one memory pool, as they never run at once);
// - whether the weight gradients start from zero (zero_grad_deferred: the backward stores) or
//   accumulate (the next micro-batches of a step): part of the key. When steps have several
//   micro-batches, once their accumulating micro-batches have a key, a step's first micro-batch
//   zeroes the gradients and uses that key too, so such a step holds one graph's activations,
//   not two (one micro-batch per step keeps the storing graph, which zeroes nothing);
// - the parameters' and gradients' storage: ParamRegistry::storage_generation(); a bind_storage
//   drops every graph;
// - grad_scale (fp16's loss scale moves): a device scalar filled before each replay;
// - dropout's masks: libtorch's graph-safe Philox state. The recording takes each dropout's
//   offset relative to the generator's offset at replay time, and every replay advances the
//   generator by the whole graph's draws, so replays draw the masks eager calls would have. An
//   activation recompute would have to rewind that state inside the recording (a host call that
//   the recording cannot hold): recompute with dropout is refused, recompute without it records;
// - no host code may run inside the backward: grad-ready callbacks (the host's overlapped
//   gradient reduction) and the parameter gate are refused with an error.
// Eager calls (warm-up) and the recording run on a side stream of the graphs' own, after the
// caller's stream and before its next work; replays go on the caller's stream.
// The loss is copied to pinned memory inside the graph, between forward and backward, and an
// external event marks the copy: the host reads it without waiting for the backward.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Stream.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "megahost/sdk/host.h"
#include "megahost/sdk/nn/params.h"
#include "megahost/sdk/parallel/loss.h"
#include "megahost/sdk/parallel/mappings.h"

namespace megahost::sdk::nn {

// The [model] keys, named as Megatron's arguments.
struct CudaGraphConfig {
  bool full_iteration = false;  // cuda_graph_impl = "full_iteration" ("none": off)
  int64_t warmup_steps = 3;     // cuda_graph_warmup_steps: eager calls per key before recording
  double hidden_dropout = 0.0, attention_dropout = 0.0;  // the model's, for check_cuda_graph
};

// The keys' schema docs, for each model plugin's key table.
inline constexpr const char* kCudaGraphImplDoc =
    "CUDA graphs: none | full_iteration (each micro-batch's forward and backward recorded once, then replayed; "
    "needs the whole model on each GPU or split by tensor parallelism (not pipeline or context parallelism), no "
    "overlapped gradient reduction or parameter gather, no dropout under activation recompute, and under tensor "
    "parallelism no dropout drawn per TP rank: attention_dropout, or hidden_dropout with sequence_parallel)";
inline constexpr const char* kCudaGraphWarmupDoc = "full_iteration: eager micro-batches of each shape before recording";

// Reads cuda_graph_impl / cuda_graph_warmup_steps; throws the config error naming the key (per-layer
// graphs, an unknown value, warm-up < 1, full_iteration with dropout under activation recompute).
CudaGraphConfig parse_cuda_graph(const Config& cfg, double hidden_dropout, double attention_dropout, bool recompute);
// full_iteration against where the model runs: the whole model (no pipeline stage), no context
// parallelism, under tensor parallelism no dropout from the per-TP-rank generator (it is rebuilt
// from a host-side draw at each use, which a recording cannot hold), a CUDA device. The
// collectives of tensor and sequence parallelism record as NCCL kernels on the graph's stream.
void check_cuda_graph(const Config& cfg, const CudaGraphConfig& graph, const at::Device& device, bool whole_model,
                      const parallel::ParallelContext* parallel);

// True while the current CUDA stream is recording a graph (false on CPU builds): host-side state
// (a generator's get_state) cannot be read there.
bool recording_cuda_graph();

// What one micro-batch's forward gives: the objective backward differentiates and the reported
// (loss_sum, num_tokens), all 0-d on the model's device.
struct StepLoss {
  at::Tensor objective;   // with autograd
  at::Tensor loss_sum;    // reported, no autograd
  at::Tensor num_tokens;  // reported
};
inline StepLoss step_loss(const parallel::MaskedLoss& l) { return {l.objective(), l.global_sum, l.global_num_tokens}; }

// One micro-batch's work, split where the loss is known.
struct MicroBatchStep {
  // inputs (the batch; inside a graph the recorded copies) -> the loss
  std::function<StepLoss(const std::vector<at::Tensor>& inputs)> forward;
  // scaled objective -> its backward, the held column sums and finish_deferred_zero
  std::function<void(const at::Tensor& scaled_objective)> backward;
};

// Runs a step eagerly: the loss readback is queued before the backward, read after it is queued.
// Returns (loss_sum, num_tokens).
std::pair<double, double> run_eager(const MicroBatchStep& step, const std::vector<at::Tensor>& inputs,
                                    double grad_scale);

// Whether a training micro-batch whose weight gradients start from zero (a step's first,
// DeferredZero::kAll) should zero them and replay the accumulating graph instead of recording a
// storing one of its own. Only when steps have several micro-batches: a training call found the
// gradients accumulating (kNone) right after another training call. (The first step's first call
// also accumulates, after the host's real zeroing, but follows no call.) With one micro-batch per
// step the storing graph is kept and nothing is zeroed before its replays.
class FirstMicroBatchPolicy {
 public:
  bool use_accumulating_graph(ParamRegistry::DeferredZero zero, bool training, bool accumulating_graph_exists);

 private:
  bool several_micro_batches_ = false;
  std::optional<ParamRegistry::DeferredZero> previous_training_zero_;
};

class FullIterationGraphs {
 public:
  explicit FullIterationGraphs(int64_t warmup_steps);
  ~FullIterationGraphs();
  FullIterationGraphs(const FullIterationGraphs&) = delete;
  FullIterationGraphs& operator=(const FullIterationGraphs&) = delete;

  // One forward_backward: eager while the key warms up, recorded on the call after, replayed from
  // then on. inputs may hold undefined tensors (absent optional inputs). Throws sdk::Error when the
  // run cannot be recorded (no CUDA, host callbacks in the backward). Returns (loss_sum, num_tokens).
  std::pair<double, double> run(ParamRegistry& params, const MicroBatchStep& step,
                                const std::vector<at::Tensor>& inputs, bool training, double grad_scale);

  size_t recorded() const;  // graphs recorded so far (for logs and tests)
  // Whether the last recorded graph adds to the gradients (a step's later micro-batches, and its
  // first one zeroing first) rather than storing them (one micro-batch per step).
  bool last_recorded_accumulates() const { return last_recorded_accumulates_; }

  struct Entry;  // one key's warm-up count, graph and recorded buffers (cuda_graph.cpp)

 private:
  int64_t warmup_steps_;
  uint64_t generation_ = 0;
  // Every call runs on this stream (the recording needs a stream of its own, and autograd
  // accumulates gradients on the stream their accumulators were made on: they are remade here).
  std::optional<c10::Stream> side_;
  bool accumulators_on_side_ = false;
  FirstMicroBatchPolicy first_micro_batch_;
  bool last_recorded_accumulates_ = false;
  std::map<std::string, std::unique_ptr<Entry>> entries_;
  std::pair<uint64_t, uint64_t> pool_{0, 0};  // the memory pool all graphs share ({0, 0}: none yet)
};

}  // namespace megahost::sdk::nn
