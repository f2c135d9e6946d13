// megahost SDK — full-iteration CUDA graphs (see megahost/sdk/nn/cuda_graph.h).
#include "megahost/sdk/nn/cuda_graph.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include "megahost/sdk/error.h"

#if defined(MH_SDK_WITH_CUDA)
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGraphsC10Utils.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#endif

namespace megahost::sdk::nn {

CudaGraphConfig parse_cuda_graph(const Config& cfg, double hidden_dropout, double attention_dropout, bool recompute) {
  CudaGraphConfig c;
  const std::string impl = cfg.get_string("cuda_graph_impl", "none");
  if (impl == "local" || impl == "transformer_engine")
    throw cfg.error("cuda_graph_impl", str_cat("cuda_graph_impl = \"", impl, "\" (per-layer graphs) is not built"),
                    "use \"full_iteration\" (the whole forward and backward as one graph) or \"none\"");
  if (impl != "none" && impl != "full_iteration")
    throw cfg.error("cuda_graph_impl", str_cat("unknown cuda_graph_impl '", impl, "'"),
                    "use \"none\" or \"full_iteration\"");
  c.full_iteration = impl == "full_iteration";
  c.hidden_dropout = hidden_dropout;
  c.attention_dropout = attention_dropout;
  c.warmup_steps = cfg.get_int("cuda_graph_warmup_steps", 3);
  if (c.warmup_steps < 1)
    throw cfg.error("cuda_graph_warmup_steps", str_cat("cuda_graph_warmup_steps = ", c.warmup_steps, " must be >= 1"),
                    "libraries set themselves up on the first call (cuBLAS, cuDNN): Megatron's default is 3");
  // Dropout alone records (graph-safe Philox offsets); a recompute restores the forward's RNG
  // state on the host in the middle of the backward, which a recording cannot replay.
  if (c.full_iteration && recompute && (hidden_dropout > 0.0 || attention_dropout > 0.0))
    throw cfg.error("cuda_graph_impl",
                    str_cat("cuda_graph_impl = \"full_iteration\" with activation recompute needs hidden_dropout = 0 "
                            "and attention_dropout = 0, got ", hidden_dropout, " and ", attention_dropout,
                            " (the recompute rewinds dropout's random state on the host, inside the recorded backward)"),
                    "drop recompute_granularity (graphs with dropout record without it), set both dropouts to 0.0, "
                    "or cuda_graph_impl = \"none\"");
  return c;
}

void check_cuda_graph(const Config& cfg, const CudaGraphConfig& graph, const at::Device& device, bool whole_model,
                      const parallel::ParallelContext* parallel) {
  if (!graph.full_iteration) return;
  if (!whole_model || (parallel != nullptr && parallel->cp.size() > 1))
    throw cfg.error("cuda_graph_impl",
                    "cuda_graph_impl = \"full_iteration\" records a whole model per GPU, or one split by tensor "
                    "parallelism: pipeline and context parallelism are not recorded yet",
                    "set pipeline_model_parallel_size and context_parallel_size to 1 (tensor and data parallelism "
                    "are fine), or cuda_graph_impl = \"none\"");
  const int64_t tp = parallel != nullptr ? parallel->tp.size() : 1;
  const bool sp = parallel != nullptr && parallel->sequence_parallel;
  if (tp > 1 && (graph.attention_dropout > 0.0 || (sp && graph.hidden_dropout > 0.0)))
    throw cfg.error("cuda_graph_impl",
                    str_cat("cuda_graph_impl = \"full_iteration\" with tensor_model_parallel_size = ", tp,
                            " cannot record dropout drawn per TP rank (attention_dropout = ", graph.attention_dropout,
                            sp ? str_cat(", hidden_dropout = ", graph.hidden_dropout, " under sequence_parallel")
                               : std::string(),
                            "): each use seeds its own generator from a host-side draw"),
                    "set attention_dropout = 0.0 (and hidden_dropout = 0.0 with sequence_parallel), or "
                    "cuda_graph_impl = \"none\"");
  if (!device.is_cuda())
    throw cfg.error("cuda_graph_impl",
                    str_cat("cuda_graph_impl = \"full_iteration\" needs a CUDA device; the model is on ", device.str()),
                    "set cuda_graph_impl = \"none\", or [training] device = \"cuda\"");
}

bool FirstMicroBatchPolicy::use_accumulating_graph(ParamRegistry::DeferredZero zero, bool training,
                                                   bool accumulating_graph_exists) {
  if (!training) return false;
  if (zero == ParamRegistry::DeferredZero::kNone && previous_training_zero_.has_value()) several_micro_batches_ = true;
  previous_training_zero_ = zero;
  return zero == ParamRegistry::DeferredZero::kAll && several_micro_batches_ && accumulating_graph_exists;
}

std::pair<double, double> run_eager(const MicroBatchStep& step, const std::vector<at::Tensor>& inputs,
                                    double grad_scale) {
  const StepLoss loss = step.forward(inputs);
  const auto readback = parallel::start_loss_readback(loss.loss_sum, loss.num_tokens);  // before backward: no stall
  step.backward(loss.objective * grad_scale);
  return readback.read();
}

#if defined(MH_SDK_WITH_CUDA)

bool recording_cuda_graph() {
  return c10::cuda::currentStreamCaptureStatusMayInitCtx() != c10::cuda::CaptureStatus::None;
}

namespace {

void check_cuda(cudaError_t rc, const char* what) {
  MH_CHECK(rc == cudaSuccess, MH_ERR_INTERNAL, "cuda_graph_impl = full_iteration: ", what, ": ",
           cudaGetErrorString(rc), "\nHINT: set cuda_graph_impl = \"none\" in [model] to run without graphs");
}

// The key of one recorded graph: everything a replay must share with its recording.
std::string graph_key(const std::vector<at::Tensor>& inputs, bool training, ParamRegistry::DeferredZero zero) {
  std::string key = training ? "train" : "eval";
  key += zero == ParamRegistry::DeferredZero::kAll ? "/store" : "/add";
  for (const at::Tensor& t : inputs) {
    key += "/";
    if (!t.defined()) {
      key += "-";
      continue;
    }
    key += c10::toString(t.scalar_type());
    for (const int64_t d : t.sizes()) key += str_cat(",", d);
  }
  return key;
}

}  // namespace

struct FullIterationGraphs::Entry {
  int64_t eager_calls = 0;
  std::unique_ptr<at::cuda::CUDAGraph> graph;
  std::vector<at::Tensor> inputs;  // the recorded batch: each replay copies the next one in
  at::Tensor grad_scale;           // float32 0-d, filled before each replay
  at::Tensor loss_device;          // float64 [2] (loss_sum, num_tokens), written by the graph
  at::Tensor loss_host;            // pinned float64 [2], copied inside the graph after the forward
  cudaEvent_t loss_copied = nullptr;
  ~Entry() {
    graph.reset();
    if (loss_copied != nullptr) cudaEventDestroy(loss_copied);
  }
};

FullIterationGraphs::FullIterationGraphs(int64_t warmup_steps) : warmup_steps_(warmup_steps) {}
FullIterationGraphs::~FullIterationGraphs() = default;

size_t FullIterationGraphs::recorded() const {
  size_t n = 0;
  for (const auto& [key, e] : entries_) n += e->graph != nullptr;
  return n;
}

std::pair<double, double> FullIterationGraphs::run(ParamRegistry& params, const MicroBatchStep& step,
                                                   const std::vector<at::Tensor>& inputs, bool training,
                                                   double grad_scale) {
  MH_CHECK(params.device().is_cuda(), MH_ERR_UNSUPPORTED,
           "cuda_graph_impl = full_iteration needs the model on a CUDA device, not ", params.device().str(),
           "\nHINT: set cuda_graph_impl = \"none\" in [model], or train on cuda");
  MH_CHECK(!params.has_grad_ready_hooks(), MH_ERR_UNSUPPORTED,
           "cuda_graph_impl = full_iteration cannot record the overlapped gradient reduction (its callbacks run on "
           "the host during the backward)\nHINT: set overlap_grad_reduce = false in [parallel], or cuda_graph_impl = "
           "\"none\" in [model]");
  MH_CHECK(!params.has_gate(), MH_ERR_UNSUPPORTED,
           "cuda_graph_impl = full_iteration cannot record the parameter gate of overlap_param_gather (it waits on "
           "the host inside the forward)\nHINT: set overlap_param_gather = false in [parallel], or cuda_graph_impl = "
           "\"none\" in [model]");
  const c10::cuda::CUDAGuard on_device(params.device());
  const c10::DeviceIndex device = params.device().index();
  if (!side_) side_ = c10::cuda::getStreamFromPool(false, device).unwrap();
  const c10::cuda::CUDAStream side(c10::cuda::CUDAStream::UNCHECKED, *side_);
  const c10::cuda::CUDAStream caller = c10::cuda::getCurrentCUDAStream(device);
  if (params.storage_generation() != generation_) {  // parameters or gradients moved: start over
    entries_.clear();
    generation_ = params.storage_generation();
    accumulators_on_side_ = false;
  }
  if (!accumulators_on_side_) {
    const c10::cuda::CUDAStreamGuard on_side(side);
    params.rebuild_accumulators();
    accumulators_on_side_ = true;
  }
  // An eager call on the side stream, ordered after the caller's work and before its next.
  auto eager = [&] {
    at::cuda::CUDAEvent ready, done;
    ready.record(caller);
    ready.block(side);
    std::pair<double, double> loss;
    {
      const c10::cuda::CUDAStreamGuard on_side(side);
      loss = run_eager(step, inputs, grad_scale);
      done.record(side);
    }
    done.block(caller);
    return loss;
  };

  ParamRegistry::DeferredZero zero = params.deferred_zero_state();
  // A half-done deferral (a backward stopped by an error) is no state a graph was recorded in.
  if (zero == ParamRegistry::DeferredZero::kMixed) return eager();
  // A step's first micro-batch stores the weight gradients, the others add to them: two
  // recordings, and each would keep a whole forward's activations in the pool. Once the adding
  // one exists, a first micro-batch zeroes the gradients instead (0 + g is g, bit for bit) and
  // runs as the others do: one graph's memory. One micro-batch per step keeps the storing graph
  // (zeroing every gradient there would cost one fill per parameter per step: GPT-345M at TP2
  // measured 1.4 ms/iter slower with the graph than without, most of it the fills' launch gaps).
  const bool accumulating_exists =
      entries_.count(graph_key(inputs, training, ParamRegistry::DeferredZero::kNone)) != 0;
  if (first_micro_batch_.use_accumulating_graph(zero, training, accumulating_exists)) {
    params.zero_grad();
    params.clear_deferred_zero();
    zero = ParamRegistry::DeferredZero::kNone;
  }
  std::unique_ptr<Entry>& slot = entries_[graph_key(inputs, training, zero)];
  if (slot == nullptr) slot = std::make_unique<Entry>();
  Entry& e = *slot;
  if (e.graph == nullptr && e.eager_calls < warmup_steps_) {
    ++e.eager_calls;
    return eager();
  }

  if (e.graph == nullptr) {
    // Static buffers first, outside the recording.
    for (const at::Tensor& t : inputs) e.inputs.push_back(t.defined() ? at::empty_like(t) : at::Tensor());
    e.grad_scale = at::empty({}, at::TensorOptions().dtype(at::kFloat).device(params.device()));
    e.loss_host = at::empty({2}, at::TensorOptions().dtype(at::kDouble).pinned_memory(true));
    check_cuda(cudaEventCreateWithFlags(&e.loss_copied, cudaEventDisableTiming), "creating the loss event");
    // The copies the first replay reads must be in place before anything is recorded: the
    // recording runs nothing, and the graph's reads of e.inputs happen at replay.
    c10::cuda::device_synchronize();
    // The warm-up's cached blocks go back (as torch.cuda.graph does): the graph's pool holds the
    // same activations again, and the two together would double the reserved memory.
    c10::cuda::CUDACachingAllocator::emptyCache();
    {
      const c10::cuda::CUDAStreamGuard on_side(side);
      auto graph = std::make_unique<at::cuda::CUDAGraph>();
      if (pool_.first != 0 || pool_.second != 0) graph->capture_begin(pool_);
      else graph->capture_begin();
      try {
        at::AutoGradMode grad_on(true);
        const StepLoss loss = step.forward(e.inputs);
        {
          at::NoGradGuard no_grad;
          e.loss_device = at::stack({loss.loss_sum.detach().to(at::kDouble), loss.num_tokens.detach().to(at::kDouble)});
        }
        check_cuda(cudaMemcpyAsync(e.loss_host.data_ptr(), e.loss_device.data_ptr(), 2 * sizeof(double),
                                   cudaMemcpyDeviceToHost, side.stream()),
                   "recording the loss copy");
        check_cuda(cudaEventRecordWithFlags(e.loss_copied, side.stream(), cudaEventRecordExternal),
                   "recording the loss event");
        step.backward(loss.objective * e.grad_scale);
        graph->capture_end();
      } catch (const std::exception& err) {
        cudaGraph_t broken = nullptr;  // end the recording so the stream and allocator recover
        if (cudaStreamEndCapture(side.stream(), &broken) == cudaSuccess && broken != nullptr)
          cudaGraphDestroy(broken);
        cudaGetLastError();
        entries_.erase(graph_key(inputs, training, zero));
        throw Error(MH_ERR_INTERNAL,
                    str_cat("cuda_graph_impl = full_iteration: recording the forward and backward failed: ", err.what(),
                            "\nHINT: set cuda_graph_impl = \"none\" in [model] to run without graphs"));
      }
      if (pool_.first == 0 && pool_.second == 0) pool_ = graph->pool();
      e.graph = std::move(graph);
      last_recorded_accumulates_ = zero == ParamRegistry::DeferredZero::kNone;
    }
    // The recording consumed the deferral flags on the host; the replay below does the work.
  }

  for (size_t i = 0; i < inputs.size(); ++i)
    if (inputs[i].defined()) e.inputs[i].copy_(inputs[i], /*non_blocking=*/true);
  e.grad_scale.fill_(grad_scale);
  e.graph->replay();
  // The graph stored (or added) every gradient and zeroed the ones it did not write, as the
  // recorded backward did: nothing is deferred any more.
  if (zero == ParamRegistry::DeferredZero::kAll) params.clear_deferred_zero();
  check_cuda(cudaEventSynchronize(e.loss_copied), "waiting for the loss");  // the forward's end only
  const double* v = e.loss_host.data_ptr<double>();
  return {v[0], v[1]};
}

#else  // CPU builds: the keys are refused when the model is created; this is never reached.

bool recording_cuda_graph() { return false; }
struct FullIterationGraphs::Entry {};
FullIterationGraphs::FullIterationGraphs(int64_t warmup_steps) : warmup_steps_(warmup_steps) {}
FullIterationGraphs::~FullIterationGraphs() = default;
size_t FullIterationGraphs::recorded() const { return 0; }
std::pair<double, double> FullIterationGraphs::run(ParamRegistry&, const MicroBatchStep&,
                                                   const std::vector<at::Tensor>&, bool, double) {
  throw Error(MH_ERR_UNSUPPORTED,
              "cuda_graph_impl = full_iteration needs a CUDA build of megahost\nHINT: set cuda_graph_impl = \"none\"");
}

#endif

}  // namespace megahost::sdk::nn
