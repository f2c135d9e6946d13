// Megatron's schedules (see schedules.h). The pipelined ones follow Megatron-Core's
// forward_backward_pipelining_without_interleaving / _with_interleaving step by step, so that
// the order of forwards, backwards and p2p exchanges is the same on every rank as there.
#include "megahost/core/engine/schedules.h"

#include <deque>

#include "megahost/core/engine/pipeline_layout.h"
#include "megahost/core/error.h"

namespace megahost::core {

namespace {

// A Model driven through its mh.model.pipeline/1 extension.
class ModelStage : public ScheduleStage {
 public:
  explicit ModelStage(Model* m) : m_(m) {}
  Forward forward(const MicroBatch& batch, const at::Tensor& input, bool with_grad) override {
    Model::StageForward f = m_->forward_stage(batch, input, with_grad);
    Forward out;
    out.activation = f.activation;
    out.loss = f.loss;
    if (with_grad) out.state = std::make_shared<Model::InFlight>(std::move(f.state));
    return out;
  }
  at::Tensor backward(std::shared_ptr<void> state, const at::Tensor& output_grad, double grad_scale) override {
    auto* in_flight = static_cast<Model::InFlight*>(state.get());
    return m_->backward_stage(std::move(*in_flight), output_grad, grad_scale);
  }
  Model::StageIO stage_io(int64_t micro_batch_size) const override { return m_->stage_io(micro_batch_size); }

 private:
  Model* m_;
};

// Python's k % n (never negative): Megatron indexes chunks with it.
int64_t py_mod(int64_t k, int64_t n) { return ((k % n) + n) % n; }

// Per-chunk queues of one step: activations received and not yet consumed, in-flight autograd
// states (oldest first), gradients received for outputs.
struct ChunkState {
  std::deque<at::Tensor> inputs;
  std::deque<std::shared_ptr<void>> in_flight;
  std::deque<at::Tensor> output_grads;
  int64_t forwards = 0, backwards = 0;
};

class Pipeline {
 public:
  Pipeline(const ScheduleArgs& args, std::vector<ScheduleStage*> stages, PipelineComm* comm)
      : args_(args),
        stages_(std::move(stages)),
        comm_(comm),
        rank_(comm ? comm->rank() : 0),
        pp_(comm ? comm->size() : 1),
        vp_(static_cast<int64_t>(stages_.size())),
        chunks_(stages_.size()) {
    const Model::StageIO io = stages_.front()->stage_io(args.micro_batch_size);
    io_shape_ = io.shape;
    io_dtype_ = io.dtype;
  }

  std::vector<Loss> run() {
    if (vp_ == 1)
      one_f_one_b();
    else
      interleaved();
    return std::move(losses_);
  }

 private:
  bool first_virtual(int64_t v) const { return rank_ == 0 && v == 0; }
  bool last_virtual(int64_t v) const { return rank_ == pp_ - 1 && v == vp_ - 1; }

  // Forward of chunk v's next micro-batch; returns the output to send on (undefined on the
  // model's last stage).
  at::Tensor forward_chunk(int64_t v) {
    ChunkState& c = chunks_[v];
    at::Tensor input;
    if (!first_virtual(v)) {
      MH_CORE_CHECK(!c.inputs.empty(), "pipeline schedule: chunk ", v, " on pipeline rank ", rank_,
                    " has no input for micro-batch ", c.forwards, "\nHINT: a schedule bug; please report it");
      input = c.inputs.front();
      c.inputs.pop_front();
    }
    const int64_t micro = c.forwards++;
    ScheduleStage::Forward f = stages_[v]->forward(args_.batch(micro), input, !args_.forward_only);
    if (last_virtual(v)) losses_.push_back(f.loss);
    if (!args_.forward_only) c.in_flight.push_back(std::move(f.state));
    return last_virtual(v) ? at::Tensor() : f.activation.contiguous();
  }

  // Backward of chunk v's oldest micro-batch in flight; returns the input's gradient to send
  // back (undefined on the model's first stage).
  at::Tensor backward_chunk(int64_t v) {
    ChunkState& c = chunks_[v];
    at::Tensor output_grad;
    if (!last_virtual(v)) {
      MH_CORE_CHECK(!c.output_grads.empty(), "pipeline schedule: chunk ", v, " on pipeline rank ", rank_,
                    " has no output gradient for micro-batch ", c.backwards,
                    "\nHINT: a schedule bug; please report it");
      output_grad = c.output_grads.front();
      c.output_grads.pop_front();
    }
    MH_CORE_CHECK(!c.in_flight.empty(), "pipeline schedule: chunk ", v, " on pipeline rank ", rank_,
                  " has no micro-batch in flight for backward\nHINT: a schedule bug; please report it");
    std::shared_ptr<void> state = std::move(c.in_flight.front());
    c.in_flight.pop_front();
    if (c.backwards == args_.num_microbatches - 1 && args_.before_last_backward)
      args_.before_last_backward(static_cast<size_t>(v));
    ++c.backwards;
    at::Tensor input_grad = stages_[v]->backward(std::move(state), output_grad, args_.grad_scale);
    return first_virtual(v) ? at::Tensor() : input_grad.contiguous();
  }

  void exchange(P2PStep& s) {
    if (!s.send_next.defined() && !s.send_prev.defined() && !s.recv_prev && !s.recv_next) return;
    MH_CORE_CHECK(comm_ != nullptr, "pipeline schedule: a p2p exchange without pipeline ranks",
                  "\nHINT: a schedule bug; please report it");
    comm_->exchange(s, io_shape_, io_dtype_);
  }

  // ---- 1F1B (Megatron's forward_backward_pipelining_without_interleaving) ----
  void one_f_one_b() {
    const int64_t m = args_.num_microbatches;
    const bool is_first = rank_ == 0, is_last = rank_ == pp_ - 1;
    const int64_t warmup = args_.forward_only ? m : std::min(pp_ - rank_ - 1, m);
    const int64_t remaining = m - warmup;
    ChunkState& c = chunks_[0];

    auto recv_forward = [&] {
      if (is_first) return;
      P2PStep s;
      s.recv_prev = true;
      exchange(s);
      c.inputs.push_back(s.from_prev);
    };
    auto send_forward = [&](const at::Tensor& out) {
      if (is_last) return;
      P2PStep s;
      s.send_next = out;
      exchange(s);
    };
    auto send_backward = [&](const at::Tensor& grad) {
      if (is_first) return;
      P2PStep s;
      s.send_prev = grad;
      exchange(s);
    };

    for (int64_t i = 0; i < warmup; ++i) {
      recv_forward();
      send_forward(forward_chunk(0));
    }
    if (remaining > 0) recv_forward();
    for (int64_t i = 0; i < remaining; ++i) {
      const bool last_iteration = i == remaining - 1;
      const at::Tensor out = forward_chunk(0);
      P2PStep fwd;  // send_forward_recv_backward
      if (!is_last) {
        fwd.send_next = out;
        fwd.recv_next = true;
      }
      exchange(fwd);
      if (!is_last) c.output_grads.push_back(fwd.from_next);
      const at::Tensor grad = backward_chunk(0);
      if (last_iteration) {
        send_backward(grad);
      } else {
        P2PStep bwd;  // send_backward_recv_forward
        if (!is_first) {
          bwd.send_prev = grad;
          bwd.recv_prev = true;
        }
        exchange(bwd);
        if (!is_first) c.inputs.push_back(bwd.from_prev);
      }
    }
    if (args_.forward_only) return;
    for (int64_t i = 0; i < warmup; ++i) {  // cool-down
      if (!is_last) {
        P2PStep s;
        s.recv_next = true;
        exchange(s);
        c.output_grads.push_back(s.from_next);
      }
      send_backward(backward_chunk(0));
    }
  }

  // ---- interleaved 1F1B (Megatron's forward_backward_pipelining_with_interleaving) ----
  // Iteration k of the forward (backward) sequence runs chunk chunk_id(k): groups of pp
  // micro-batches go through chunk 0, 1, ..., vp - 1 (backward: vp - 1 down to 0).
  int64_t chunk_id(int64_t k, bool forward) const {
    const int64_t in_group = py_mod(k, pp_ * vp_);
    const int64_t chunk = in_group / pp_;
    return forward ? chunk : vp_ - chunk - 1;
  }

  void interleaved() {
    const int64_t total = args_.num_microbatches * vp_;
    check_interleaved_microbatches(args_.num_microbatches, pp_, vp_);
    bool all_warmup = false;
    int64_t warmup = 0;
    if (args_.forward_only) {
      warmup = total;
    } else if (args_.num_microbatches == pp_) {
      warmup = total;
      all_warmup = true;
    } else {
      warmup = std::min((pp_ - rank_ - 1) * 2 + (vp_ - 1) * pp_, total);
    }
    const int64_t remaining = total - warmup;
    const bool is_first_rank = rank_ == 0, is_last_rank = rank_ == pp_ - 1;

    if (!is_first_rank) {
      P2PStep s;
      s.recv_prev = true;
      exchange(s);
      chunks_[0].inputs.push_back(s.from_prev);
    }
    for (int64_t k = 0; k < warmup; ++k) {
      const at::Tensor out = forward_chunk(chunk_id(k, true));
      const int64_t next_forward = chunk_id(k + 1, true);
      bool recv_prev = !(is_first_rank && next_forward == 0) && k != total - 1;
      P2PStep s;
      s.send_next = out;
      s.recv_prev = recv_prev;
      const bool last_warmup = k == warmup - 1 && !args_.forward_only && !all_warmup;
      if (last_warmup) s.recv_next = !is_last_rank;
      exchange(s);
      if (last_warmup && s.recv_next) chunks_[vp_ - 1].output_grads.push_back(s.from_next);
      if (recv_prev) chunks_[next_forward].inputs.push_back(s.from_prev);
    }

    for (int64_t k = 0; k < remaining; ++k) {
      const int64_t forward_k = k + warmup, backward_k = k;
      const at::Tensor out = forward_chunk(chunk_id(forward_k, true));
      const at::Tensor grad = backward_chunk(chunk_id(backward_k, false));

      bool recv_prev = true;
      int64_t next_forward = 0;
      if (is_first_rank) {
        next_forward = chunk_id(forward_k - (pp_ - 1), true);
        if (next_forward == vp_ - 1) recv_prev = false;
        next_forward += 1;
      } else {
        next_forward = chunk_id(forward_k + 1, true);
      }
      bool recv_next = true;
      int64_t next_backward = 0;
      if (is_last_rank) {
        next_backward = chunk_id(backward_k - (pp_ - 1), false);
        if (next_backward == 0) recv_next = false;
        next_backward -= 1;
      } else {
        next_backward = chunk_id(backward_k + 1, false);
      }
      if (k == remaining - 1) recv_prev = false;

      P2PStep s;
      s.send_next = out;
      s.send_prev = grad;
      s.recv_prev = recv_prev;
      s.recv_next = recv_next;
      exchange(s);
      if (recv_prev) chunks_[next_forward].inputs.push_back(s.from_prev);
      if (recv_next) chunks_[next_backward].output_grads.push_back(s.from_next);
    }

    if (args_.forward_only) return;
    if (all_warmup && !is_last_rank) {
      P2PStep s;
      s.recv_next = true;
      exchange(s);
      chunks_[vp_ - 1].output_grads.push_back(s.from_next);
    }
    for (int64_t k = remaining; k < total; ++k) {
      const at::Tensor grad = backward_chunk(chunk_id(k, false));
      const int64_t next_backward = chunk_id(k + 1, false);
      const bool recv_next = !(is_last_rank && next_backward == vp_ - 1) && k != total - 1;
      P2PStep s;
      s.send_prev = grad;
      s.recv_next = recv_next;
      exchange(s);
      if (recv_next) chunks_[next_backward].output_grads.push_back(s.from_next);
    }
  }

  const ScheduleArgs& args_;
  std::vector<ScheduleStage*> stages_;
  PipelineComm* comm_;
  int64_t rank_, pp_, vp_;
  std::vector<ChunkState> chunks_;
  std::vector<int64_t> io_shape_;
  at::ScalarType io_dtype_ = at::kFloat;
  std::vector<Loss> losses_;
};

// pp = 1 with a whole model: Megatron's forward_backward_no_pipelining.
std::vector<Loss> no_pipelining(const ScheduleArgs& args) {
  MH_CORE_CHECK(args.chunks.size() == 1, "pipeline schedule: ", args.chunks.size(),
                " model chunks without pipeline parallelism",
                "\nHINT: num_layers_per_virtual_pipeline_stage needs pipeline_model_parallel_size > 1");
  Model& model = *args.chunks[0];
  std::vector<Loss> losses;
  for (int64_t m = 0; m < args.num_microbatches; ++m) {
    const MicroBatch batch = args.batch(m);
    if (args.forward_only) {
      losses.push_back(model.forward_loss(batch));
      continue;
    }
    if (m == args.num_microbatches - 1 && args.before_last_backward) args.before_last_backward(0);
    losses.push_back(model.forward_backward(batch, args.grad_scale));
  }
  return losses;
}

}  // namespace

std::vector<Loss> run_schedule(const ScheduleArgs& args) {
  MH_CORE_CHECK(args.num_microbatches >= 1, "pipeline schedule: num_microbatches = ", args.num_microbatches,
                "\nHINT: global_batch_size must be at least micro_batch_size x data_parallel_size");
  MH_CORE_CHECK(static_cast<bool>(args.batch), "pipeline schedule: no batch function",
                "\nHINT: set ScheduleArgs::batch");
  std::unique_ptr<PipelineComm> owned;
  PipelineComm* comm = args.comm;
  if (comm == nullptr) {
    owned = pipeline_comm_from_runtime();
    comm = owned.get();
  }
  const int64_t pp = comm ? comm->size() : 1;
  if (pp == 1 && args.stages.empty()) return no_pipelining(args);

  std::vector<std::unique_ptr<ModelStage>> adapters;
  std::vector<ScheduleStage*> stages = args.stages;
  if (stages.empty()) {
    for (Model* m : args.chunks) {
      MH_CORE_CHECK(m != nullptr && m->has_pipeline(), "model '", m ? m->id() : std::string("(null)"),
                    "' does not implement the pipeline extension (mh.model.pipeline/1)",
                    "\nHINT: run it with pipeline_model_parallel_size = 1, or use a model plugin with pipeline "
                    "support");
      adapters.push_back(std::make_unique<ModelStage>(m));
      stages.push_back(adapters.back().get());
    }
  }
  MH_CORE_CHECK(!stages.empty(), "pipeline schedule: no model chunks", "\nHINT: set ScheduleArgs::chunks");
  return Pipeline(args, std::move(stages), pp > 1 ? comm : nullptr).run();
}

}  // namespace megahost::core
