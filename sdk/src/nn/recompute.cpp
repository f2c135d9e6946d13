// megahost SDK — activation recompute (see megahost/sdk/nn/recompute.h).
#include "megahost/sdk/nn/recompute.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>

#include <mutex>
#include <utility>

#include "megahost/sdk/error.h"
#include "megahost/sdk/nn/cuda_graph.h"
#include "megahost/sdk/parallel/random.h"

namespace megahost::sdk::nn {
namespace {

// The generators a forward may draw dropout masks from, with their states at forward time.
struct RngSnapshot {
  std::vector<std::pair<at::Generator, at::Tensor>> states;  // (generator, get_state())
  at::Generator thread_default;                               // the forward thread's ScopedDefaultGenerator, if any

  void add(at::Generator gen) {
    for (const auto& s : states)
      if (s.first == gen) return;
    std::lock_guard<std::mutex> lock(gen.mutex());
    states.emplace_back(gen, gen.get_state());
  }

  static RngSnapshot capture(const std::vector<at::Tensor>& inputs) {
    RngSnapshot snap;
    std::vector<at::Device> devices{at::Device(at::kCPU)};
    // Inside a CUDA graph's recording the device generator's state cannot be read (it lives in
    // the graph's Philox offsets); full_iteration refuses dropout under recompute, so nothing
    // recomputed there draws from it.
    for (const auto& t : inputs)
      if (t.defined() && !t.device().is_cpu() && !(t.device().is_cuda() && recording_cuda_graph())) {
        devices.push_back(t.device());
        break;  // Megatron's tracker: one accelerator, the current one
      }
    for (const auto& d : devices) {
      const at::Generator global = at::globalContext().defaultGenerator(d);
      const at::Generator local = parallel::default_generator(d);
      snap.add(global);
      if (local != global) {
        snap.add(local);
        snap.thread_default = local;
      }
    }
    return snap;
  }

  // The current states of the same generators (to put back after the recompute).
  RngSnapshot current() const {
    RngSnapshot now;
    now.thread_default = thread_default;
    for (const auto& s : states) now.add(s.first);
    return now;
  }

  void restore() const {
    for (const auto& [gen, state] : states) {
      at::Generator g = gen;
      std::lock_guard<std::mutex> lock(g.mutex());
      g.set_state(state);
    }
  }
};

// What backward needs besides the saved inputs; rides in ctx->saved_data as a capsule.
struct Recomputation : torch::CustomClassHolder {
  RecomputeFn fn;
  RngSnapshot rng;
  std::vector<bool> defined;        // per original input: defined (undefined ones are not saved)
  std::vector<bool> requires_grad;  // per saved input
};

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Where a recomputed graph's input gradient lands.
struct GradSlot : torch::CustomClassHolder {
  at::Tensor grad;
};

// The identity on a recomputed graph's input whose backward keeps the gradient in a slot and
// sends none on to the leaf. Reading leaf.grad() instead would go through AccumulateGrad, which
// copies a gradient into a new contiguous tensor unless its strides are the leaf's: q / k / v
// are views of linear_qkv's output, and their gradients views of one packed buffer
// (fused::packed_causal_attention) that linear_split's backward then reads without a pack.
struct CaptureGrad : torch::autograd::Function<CaptureGrad> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, c10::intrusive_ptr<GradSlot> slot) {
    ctx->saved_data["slot"] = c10::IValue::make_capsule(slot);
    return x.view_as(x);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    auto slot = c10::static_intrusive_pointer_cast<GradSlot>(ctx->saved_data["slot"].toCapsule());
    slot->grad = slot->grad.defined() && grad[0].defined() ? slot->grad + grad[0] : grad[0];
    return {at::Tensor(), at::Tensor()};
  }
};

struct CheckpointFunction : torch::autograd::Function<CheckpointFunction> {
  // state: the callable and the RNG states; inputs: the defined inputs (a TensorList so the
  // autograd Function treats each as a differentiable input).
  static variable_list forward(AutogradContext* ctx, c10::intrusive_ptr<Recomputation> state,
                               at::TensorList inputs) {
    // Function::apply runs this under no-grad: no graph, no saved activations inside fn.
    std::vector<at::Tensor> full;
    size_t next = 0;
    for (bool d : state->defined) full.push_back(d ? inputs[next++] : at::Tensor());
    variable_list outputs = state->fn(full);
    ctx->save_for_backward(inputs.vec());
    ctx->saved_data["state"] = c10::IValue::make_capsule(state);
    return outputs;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    auto state = c10::static_intrusive_pointer_cast<Recomputation>(ctx->saved_data["state"].toCapsule());
    const variable_list saved = ctx->get_saved_variables();
    // Fresh leaves: the recompute's graph ends at them; their gradients are caught on the way in.
    std::vector<c10::intrusive_ptr<GradSlot>> slots;
    variable_list outputs;
    {
      at::AutoGradMode enable_grad(true);
      std::vector<at::Tensor> inputs;
      for (size_t i = 0; i < saved.size(); ++i) {
        const at::Tensor leaf = saved[i].detach().requires_grad_(state->requires_grad[i]);
        slots.push_back(c10::make_intrusive<GradSlot>());
        inputs.push_back(state->requires_grad[i] ? CaptureGrad::apply(leaf, slots[i]) : leaf);
      }
      std::vector<at::Tensor> full;
      size_t next = 0;
      for (bool d : state->defined) full.push_back(d ? inputs[next++] : at::Tensor());
      const RngSnapshot backward_rng = state->rng.current();
      state->rng.restore();  // the forward's masks
      std::optional<parallel::ScopedDefaultGenerator> thread_gen;
      if (state->rng.thread_default.defined()) thread_gen.emplace(state->rng.thread_default);
      outputs = state->fn(full);
      backward_rng.restore();  // backward leaves the RNG streams where it found them
    }
    variable_list roots, grads;
    for (size_t i = 0; i < outputs.size() && i < grad_outputs.size(); ++i)
      if (outputs[i].defined() && outputs[i].requires_grad() && grad_outputs[i].defined()) {
        roots.push_back(outputs[i]);
        grads.push_back(grad_outputs[i]);
      }
    // Re-entrant backward: parameter grads accumulate into .grad (bound storage, hooks) here.
    if (!roots.empty()) torch::autograd::backward(roots, grads);

    variable_list input_grads{at::Tensor()};  // none for the state argument
    for (const auto& slot : slots) input_grads.push_back(slot->grad);
    return input_grads;
  }
};

}  // namespace

std::vector<at::Tensor> checkpoint(RecomputeFn fn, const std::vector<at::Tensor>& inputs) {
  if (!at::GradMode::is_enabled()) return fn(inputs);
  auto state = c10::make_intrusive<Recomputation>();
  state->fn = std::move(fn);
  state->rng = RngSnapshot::capture(inputs);
  std::vector<at::Tensor> defined;
  bool any_requires_grad = false;
  for (const auto& t : inputs) {
    state->defined.push_back(t.defined());
    if (!t.defined()) continue;
    defined.push_back(t);
    state->requires_grad.push_back(t.requires_grad());
    any_requires_grad = any_requires_grad || t.requires_grad();
  }
  // Parameters inside fn need grads even when no input does (e.g. a block fed plain data): a
  // dummy input that requires grad keeps the outputs in the graph.
  if (!any_requires_grad) {
    defined.push_back(at::empty({0}, at::TensorOptions().dtype(at::kFloat)).requires_grad_(true));
    state->requires_grad.push_back(true);
    auto inner = std::move(state->fn);
    state->fn = [inner](const std::vector<at::Tensor>& in) {
      return inner(std::vector<at::Tensor>(in.begin(), in.end() - 1));
    };
    state->defined.push_back(true);
  }
  return CheckpointFunction::apply(state, at::TensorList(defined));
}

at::Tensor checkpoint(const std::function<at::Tensor(const std::vector<at::Tensor>&)>& fn,
                      const std::vector<at::Tensor>& inputs) {
  return checkpoint([fn](const std::vector<at::Tensor>& in) { return std::vector<at::Tensor>{fn(in)}; }, inputs)
      .at(0);
}

bool parse_recompute_granularity(const std::string& s, RecomputeGranularity* out) {
  if (s == "none") *out = RecomputeGranularity::None;
  else if (s == "selective") *out = RecomputeGranularity::Selective;
  else if (s == "full") *out = RecomputeGranularity::Full;
  else return false;
  return true;
}

bool parse_recompute_method(const std::string& s, RecomputeMethod* out) {
  if (s == "uniform") *out = RecomputeMethod::Uniform;
  else if (s == "block") *out = RecomputeMethod::Block;
  else return false;
  return true;
}

std::optional<RecomputeIssue> find_recompute_issue(const TransformerConfig& cfg) {
  const bool has_method = cfg.recompute_method != RecomputeMethod::None;
  const bool has_layers = cfg.recompute_num_layers != 0;
  switch (cfg.recompute_granularity) {
    case RecomputeGranularity::None:
      if (has_method)
        return RecomputeIssue{"recompute_method", "recompute_method is set but recompute_granularity is none",
                              "add recompute_granularity = \"full\", or drop recompute_method"};
      if (has_layers)
        return RecomputeIssue{"recompute_num_layers", "recompute_num_layers is set but recompute_granularity is none",
                              "add recompute_granularity = \"full\" and recompute_method, or drop recompute_num_layers"};
      return std::nullopt;
    case RecomputeGranularity::Selective:
      // Megatron-LM: 'recompute method is not yet supported for selective recomputing granularity'
      if (has_method)
        return RecomputeIssue{"recompute_method",
                              "recompute_method is not supported with recompute_granularity = \"selective\"",
                              "selective recomputes the core attention of every layer; drop recompute_method"};
      if (has_layers)
        return RecomputeIssue{"recompute_num_layers",
                              "recompute_num_layers must be unset with recompute_granularity = \"selective\"",
                              "drop recompute_num_layers, or use recompute_granularity = \"full\""};
      return std::nullopt;
    case RecomputeGranularity::Full:
      if (!has_method)
        return RecomputeIssue{"recompute_method",
                              "recompute_granularity = \"full\" needs recompute_method \"uniform\" or \"block\"",
                              "add recompute_method = \"uniform\" (groups of recompute_num_layers layers) or "
                              "\"block\" (the first recompute_num_layers layers of each stage)"};
      if (cfg.recompute_num_layers < 1 || (cfg.num_layers > 0 && cfg.recompute_num_layers > cfg.num_layers))
        return RecomputeIssue{"recompute_num_layers",
                              str_cat("recompute_granularity = \"full\" needs recompute_num_layers between 1 and "
                                      "num_layers (",
                                      cfg.num_layers, "), got ", cfg.recompute_num_layers),
                              "e.g. recompute_num_layers = 1 (uniform: checkpoint every layer's input)"};
      return std::nullopt;
  }
  return std::nullopt;
}

void check_recompute(const TransformerConfig& cfg) {
  if (auto issue = find_recompute_issue(cfg))
    throw Error(MH_ERR_INVALID_ARG, str_cat(issue->key, ": ", issue->message, "\nHINT: ", issue->hint));
}

}  // namespace megahost::sdk::nn
