// megahost core — Megatron's forward/backward schedules over the micro-batches of one step:
//   no pipelining  pp = 1: forward + backward per micro-batch (Model::forward_backward)
//   1F1B           warm-up of pp - rank - 1 forwards, then one forward + one backward, then cool-down
//   interleaved    several model chunks (virtual stages) per rank, Megatron's order and warm-up
// Point-to-point between stages happens here (never in a model): each step posts its sends and
// receives asynchronously and waits for them together (Megatron's batched isend/irecv), so
// neighbouring stages cannot deadlock.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "megahost/core/instances.h"

namespace megahost::core {

using MicroBatch = std::vector<std::pair<std::string, at::Tensor>>;

// One communication step with the neighbouring pipeline ranks. The ring wraps (the last rank's
// next is rank 0): interleaving sends chunk v's output on the last rank to chunk v + 1 on rank 0.
struct P2PStep {
  at::Tensor send_next, send_prev;      // undefined: nothing to send that way
  bool recv_prev = false, recv_next = false;
  at::Tensor from_prev, from_next;      // set by exchange when asked for
};

class PipelineComm {
 public:
  virtual ~PipelineComm() = default;
  virtual int64_t rank() const = 0;
  virtual int64_t size() const = 0;
  // Posts every operation of the step asynchronously, then waits for all. Order of posting:
  // the forward direction (send_next, recv_prev) before the backward one (send_prev, recv_next),
  // so that with pp = 2 (next == prev) both ranks of a pair match activations with activations.
  // Receive buffers have `shape` and `dtype`.
  virtual void exchange(P2PStep& step, const std::vector<int64_t>& shape, at::ScalarType dtype) = 0;
};

// The "pp" group of core::ParallelRuntime; nullptr when the runtime is not initialised or pp = 1.
std::unique_ptr<PipelineComm> pipeline_comm_from_runtime();

// A pipeline stage as a schedule drives it: a Model through mh.model.pipeline/1, or a fake in tests.
class ScheduleStage {
 public:
  virtual ~ScheduleStage() = default;
  struct Forward {
    at::Tensor activation;        // not the last stage: the output to send on
    Loss loss;                    // the last stage
    std::shared_ptr<void> state;  // with_grad: what backward consumes
  };
  virtual Forward forward(const MicroBatch& batch, const at::Tensor& input, bool with_grad) = 0;
  // Returns the input's gradient (undefined on the first stage).
  virtual at::Tensor backward(std::shared_ptr<void> state, const at::Tensor& output_grad, double grad_scale) = 0;
  virtual Model::StageIO stage_io(int64_t micro_batch_size) const = 0;
};

struct ScheduleArgs {
  std::vector<Model*> chunks;  // one per virtual stage on this rank, in virtual-stage order
  int64_t num_microbatches = 1;
  int64_t micro_batch_size = 1;
  std::function<MicroBatch(int64_t micro_index)> batch;  // the same sequence on every chunk
  double grad_scale = 1.0;
  bool forward_only = false;
  // Called right before the last backward of a chunk in this step (DP turns its grad sync on).
  std::function<void(size_t chunk)> before_last_backward;
  // Optional: the pipeline ranks (default: pipeline_comm_from_runtime(); none = pp 1).
  PipelineComm* comm = nullptr;
  // Optional, instead of `chunks` (tests): stages driven through the pipeline path even at pp 1.
  std::vector<ScheduleStage*> stages;
};

// Runs every micro-batch of one step through this rank's chunks. Returns the last stage's loss
// per micro-batch (empty on other ranks). Gradients accumulate into the models' parameters.
std::vector<Loss> run_schedule(const ScheduleArgs& args);

}  // namespace megahost::core
