// megahost SDK — parameter registry (see megahost/sdk/nn/params.h).
#include "megahost/sdk/nn/params.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros_like.h>
#include <ATen/core/grad_mode.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <unordered_map>

#include "megahost/sdk/error.h"
#include "megahost/sdk/torch_interop.h"

namespace megahost::sdk::nn {

std::string join_name(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

uint64_t param_seed(uint64_t init_seed, const std::string& name) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a over the name
  for (unsigned char c : name) h = (h ^ c) * 1099511628211ull;
  uint64_t z = init_seed ^ h;  // splitmix64 finaliser so nearby names land far apart
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

ParamRegistry::ParamRegistry(at::Device device, at::ScalarType dtype, uint64_t init_seed)
    : device_(device), dtype_(dtype), init_seed_(init_seed) {}

at::Tensor ParamRegistry::create(const std::string& name, at::IntArrayRef shape, const Init& init,
                                 int32_t tensor_parallel_dim, uint32_t flags) {
  MH_CHECK(find(name) == nullptr, MH_ERR_INTERNAL, "parameter '", name, "' is registered twice",
           "\nHINT: this is a bug in the model plugin");
  MH_CHECK(tensor_parallel_dim >= -1 && tensor_parallel_dim < static_cast<int64_t>(shape.size()),
           MH_ERR_INTERNAL, "parameter '", name, "': tensor_parallel_dim ", tensor_parallel_dim,
           " is out of range for a ", shape.size(), "-d tensor");
  at::NoGradGuard no_grad;
  // Drawn in float32 on the CPU so the values are the same for every device and dtype.
  at::Tensor cpu = at::empty(shape, at::TensorOptions().dtype(at::kFloat));
  switch (init.kind) {
    case Init::Kind::Zeros: cpu.zero_(); break;
    case Init::Kind::Ones: cpu.fill_(1.0); break;
    case Init::Kind::Normal: {
      at::Generator gen = at::detail::createCPUGenerator(param_seed(init_seed_, name));
      cpu.normal_(0.0, init.std, gen);
      break;
    }
  }
  at::Tensor data = cpu.to(at::TensorOptions().device(device_).dtype(dtype_)).contiguous();
  at::Tensor grad = at::zeros_like(data);
  data.set_requires_grad(true);
  data.mutable_grad() = grad;
  params_.push_back(Param{name, data, grad, tensor_parallel_dim, flags});
  return data;
}

at::Tensor ParamRegistry::create_sharded(const std::string& name, at::IntArrayRef full_shape, const Init& init,
                                         int32_t tensor_parallel_dim, int64_t tp_rank, int64_t tp_size,
                                         uint32_t flags, bool glu_halves) {
  if (tp_size == 1) return create(name, full_shape, init, tensor_parallel_dim, flags);
  MH_CHECK(tensor_parallel_dim >= 0 && tensor_parallel_dim < static_cast<int64_t>(full_shape.size()),
           MH_ERR_INTERNAL, "parameter '", name, "': tensor_parallel_dim ", tensor_parallel_dim,
           " is not a dim of a ", full_shape.size(), "-d tensor");
  const int64_t parts = glu_halves ? 2 * tp_size : tp_size;
  const int64_t full = full_shape[tensor_parallel_dim];
  MH_CHECK(full % parts == 0 && tp_rank >= 0 && tp_rank < tp_size, MH_ERR_INVALID_ARG, "parameter '", name,
           "': dim ", tensor_parallel_dim, " of size ", full, " does not split into ", parts,
           " equal parts (tensor parallel size ", tp_size, glu_halves ? ", GLU halves" : "", ")",
           "\nHINT: pick a tensor_model_parallel_size that divides the layer's width");
  // Draw the full tensor under a scratch registry (same seed), keep this rank's slice.
  ParamRegistry scratch(at::kCPU, at::kFloat, init_seed_);
  const at::Tensor whole = scratch.create(name, full_shape, init, -1, 0).detach();
  const int64_t part = full / parts;
  at::Tensor mine = whole.narrow(tensor_parallel_dim, tp_rank * part, part);
  if (glu_halves)
    mine = at::cat({mine, whole.narrow(tensor_parallel_dim, full / 2 + tp_rank * part, part)}, tensor_parallel_dim);
  std::vector<int64_t> shape(full_shape.begin(), full_shape.end());
  shape[tensor_parallel_dim] = mine.size(tensor_parallel_dim);
  at::Tensor data = create(name, shape, Init::zeros(), tensor_parallel_dim,
                           flags | (glu_halves ? MH_PARAM_TP_GLU_HALVES : 0u));
  at::NoGradGuard no_grad;
  data.copy_(mine);
  return data;
}

void ParamRegistry::add_flags(const std::string& name, uint32_t flags) {
  for (auto& p : params_)
    if (p.name == name) {
      p.flags |= flags;
      return;
    }
  throw Error(MH_ERR_INTERNAL, str_cat("no parameter named '", name, "'"));
}

const Param* ParamRegistry::find(const std::string& name) const {
  for (const auto& p : params_)
    if (p.name == name) return &p;
  return nullptr;
}

int64_t ParamRegistry::numel() const {
  int64_t n = 0;
  for (const auto& p : params_) n += p.data.numel();
  return n;
}

void ParamRegistry::zero_grad() {
  at::NoGradGuard no_grad;
  for (auto& p : params_) p.grad.zero_();
  restore_grads();
}

void ParamRegistry::restore_grads() {
  // Someone (a torch optimizer, Module::zero_grad(set_to_none)) may have swapped .grad out:
  // put ours back so backward keeps accumulating where the host's views point.
  for (auto& p : params_)
    if (!p.data.grad().defined() || !p.data.grad().is_same(p.grad)) p.data.mutable_grad() = p.grad;
}

namespace {

// Runs after AccumulateGrad has added this backward's gradient into .grad (the engine sums every
// use of a parameter before running its accumulator, so once per backward per parameter). No
// incoming gradient: a fused layer added it and already notified (notify_grad_accumulated).
struct GradReadyHook final : torch::autograd::FunctionPostHook {
  GradReadyHook(mh_grad_ready_fn fn, void* ctx, size_t index) : fn(fn), ctx(ctx), index(index) {}
  torch::autograd::variable_list operator()(const torch::autograd::variable_list& outputs,
                                            const torch::autograd::variable_list& inputs) override {
    if (!inputs.empty() && inputs[0].defined()) fn(ctx, index);
    return outputs;
  }
  mh_grad_ready_fn fn;
  void* ctx;
  size_t index;
};

// The grad_ready callback of each bound parameter, by TensorImpl (what fused layers hold).
struct GradReadyTarget {
  mh_grad_ready_fn fn;
  void* ctx;
  size_t index;
};
std::mutex targets_mutex;
std::unordered_map<const c10::TensorImpl*, GradReadyTarget>& grad_ready_targets() {
  static auto* t = new std::unordered_map<const c10::TensorImpl*, GradReadyTarget>();
  return *t;
}

void forget_targets(const std::vector<Param>& params) {
  const std::lock_guard<std::mutex> lock(targets_mutex);
  for (const auto& p : params) grad_ready_targets().erase(p.data.unsafeGetTensorImpl());
}

// zero_grad_deferred's flags, by TensorImpl: set when the gradient counts as zero.
std::mutex deferred_mutex;
std::unordered_map<const c10::TensorImpl*, std::shared_ptr<std::atomic<bool>>>& deferred_flags() {
  static auto* f = new std::unordered_map<const c10::TensorImpl*, std::shared_ptr<std::atomic<bool>>>();
  return *f;
}

std::shared_ptr<std::atomic<bool>> deferred_flag(const c10::TensorImpl* impl) {
  const std::lock_guard<std::mutex> lock(deferred_mutex);
  const auto it = deferred_flags().find(impl);
  return it == deferred_flags().end() ? nullptr : it->second;
}

void forget_deferred(const std::vector<Param>& params) {
  const std::lock_guard<std::mutex> lock(deferred_mutex);
  for (const auto& p : params) deferred_flags().erase(p.data.unsafeGetTensorImpl());
}

// Before autograd adds a gradient into a deferred one: zero it first (once).
struct DeferredZeroHook final : torch::autograd::FunctionPreHook {
  DeferredZeroHook(std::shared_ptr<std::atomic<bool>> flag, at::Tensor leaf)
      : flag(std::move(flag)), leaf(std::move(leaf)) {}
  torch::autograd::variable_list operator()(const torch::autograd::variable_list& grads) override {
    if (!grads.empty() && grads[0].defined() && flag->exchange(false) && leaf.grad().defined()) {
      at::NoGradGuard no_grad;
      leaf.mutable_grad().zero_();
    }
    return grads;
  }
  std::shared_ptr<std::atomic<bool>> flag;
  at::Tensor leaf;  // the parameter (its accumulator holds it too)
};

// The bound tensor for one side of a binding, checked against the parameter (undefined if NULL).
at::Tensor bound_tensor(const DLTensor* dl, const Param& p, const char* what, bool any_float_dtype) {
  if (dl == nullptr) return {};
  at::Tensor t = to_torch(dl);
  const auto where = str_cat("bind_storage: parameter '", p.name, "' ", what);
  MH_CHECK(t.sizes() == p.data.sizes(), MH_ERR_INVALID_ARG, where, " has shape ", t.sizes(), ", the parameter ",
           p.data.sizes(), "\nHINT: binding i is for the i-th parameter of visit_params");
  MH_CHECK(t.device() == p.data.device(), MH_ERR_INVALID_ARG, where, " is on ", t.device().str(),
           ", the parameter on ", p.data.device().str());
  MH_CHECK(any_float_dtype ? at::isFloatingType(t.scalar_type()) : t.scalar_type() == p.data.scalar_type(),
           MH_ERR_INVALID_ARG, where, " has dtype ", c10::toString(t.scalar_type()), ", the parameter ",
           c10::toString(p.data.scalar_type()), "\nHINT: data keeps the parameter's dtype; grad may be float32");
  MH_CHECK(t.is_contiguous(), MH_ERR_INVALID_ARG, where, " is not contiguous");
  return t;
}

}  // namespace

void ParamRegistry::bind(const mh_param_binding* bindings, size_t n, mh_grad_ready_fn grad_ready, void* ctx) {
  MH_CHECK(n == params_.size() && (bindings != nullptr || n == 0), MH_ERR_INVALID_ARG, "bind_storage: ", n,
           " bindings for ", params_.size(), " parameters\nHINT: one binding per parameter, in visit order");
  // Check everything first: nothing changes unless every binding is usable.
  std::vector<at::Tensor> data(n), grad(n);
  for (size_t i = 0; i < n; ++i) {
    MH_CHECK(bindings[i].struct_size >= sizeof(mh_param_binding), MH_ERR_INVALID_ARG, "bind_storage: binding ", i,
             " has struct_size ", bindings[i].struct_size, "\nHINT: set struct_size = sizeof(mh_param_binding)");
    data[i] = bound_tensor(bindings[i].data, params_[i], "data", false);
    grad[i] = bound_tensor(bindings[i].grad, params_[i], "grad", true);
  }
  at::NoGradGuard no_grad;
  ++storage_generation_;
  for (size_t i = 0; i < n; ++i) {
    Param& p = params_[i];
    if (data[i].defined()) {
      data[i].copy_(p.data);
      // Same TensorImpl, new storage: layers (and tied uses) that hold p.data see the host's memory.
      p.data.set_data(data[i]);
    }
    if (grad[i].defined()) {
      grad[i].copy_(p.grad);
      p.grad = grad[i];
    }
    p.data.mutable_grad() = p.grad;
  }
  // Hooks of an earlier bind go; the accumulators are kept alive here so new hooks persist.
  for (size_t i = 0; i < grad_accumulators_.size(); ++i) grad_accumulators_[i]->del_post_hook(hook_keys_[i]);
  grad_accumulators_.clear();
  hook_keys_.clear();
  forget_targets(params_);
  if (grad_ready == nullptr) return;
  {
    const std::lock_guard<std::mutex> lock(targets_mutex);
    for (size_t i = 0; i < n; ++i) grad_ready_targets()[params_[i].data.unsafeGetTensorImpl()] = {grad_ready, ctx, i};
  }
  for (size_t i = 0; i < n; ++i) {
    grad_accumulators_.push_back(torch::autograd::impl::grad_accumulator(params_[i].data));
    MH_CHECK(grad_accumulators_.back() != nullptr, MH_ERR_INTERNAL, "bind_storage: parameter '", params_[i].name,
             "' has no gradient accumulator (not a leaf with requires_grad)");
    hook_keys_.push_back(grad_accumulators_.back()->add_post_hook(std::make_unique<GradReadyHook>(grad_ready, ctx, i)));
  }
}

void ParamRegistry::install_zeroing_hooks() {
  std::vector<std::shared_ptr<std::atomic<bool>>> flags;
  for (const auto& p : params_) {
    auto acc = torch::autograd::impl::grad_accumulator(p.data);
    MH_CHECK(acc != nullptr, MH_ERR_INTERNAL, "zero_grad_deferred: parameter '", p.name,
             "' has no gradient accumulator (not a leaf with requires_grad)");
    auto flag = deferred_flag(p.data.unsafeGetTensorImpl());  // kept when the accumulators are rebuilt
    flags.push_back(flag != nullptr ? flag : std::make_shared<std::atomic<bool>>(false));
    acc->add_pre_hook(std::make_unique<DeferredZeroHook>(flags.back(), p.data));
    zeroing_accumulators_.push_back(std::move(acc));
  }
  const std::lock_guard<std::mutex> lock(deferred_mutex);
  for (size_t i = 0; i < params_.size(); ++i) deferred_flags()[params_[i].data.unsafeGetTensorImpl()] = flags[i];
}

void ParamRegistry::zero_grad_deferred() {
  restore_grads();
  if (zeroing_accumulators_.empty()) install_zeroing_hooks();
  for (const auto& p : params_)
    if (auto flag = deferred_flag(p.data.unsafeGetTensorImpl())) flag->store(true);
}

void ParamRegistry::rebuild_accumulators() {
  MH_CHECK(grad_accumulators_.empty(), MH_ERR_UNSUPPORTED,
           "rebuild_accumulators: grad_ready hooks are bound and cannot move to new accumulators");
  zeroing_accumulators_.clear();  // autograd holds its accumulators weakly: these were the last owners
  install_zeroing_hooks();         // asks autograd for new ones (made on the current stream) and keeps them
}

void ParamRegistry::finish_deferred_zero() {
  at::NoGradGuard no_grad;
  for (auto& p : params_)
    if (take_deferred_zero(p.data)) p.grad.zero_();
}

ParamRegistry::DeferredZero ParamRegistry::deferred_zero_state() const {
  size_t pending = 0;
  for (const auto& p : params_)
    if (const auto flag = deferred_flag(p.data.unsafeGetTensorImpl()); flag != nullptr && flag->load()) ++pending;
  if (pending == 0) return DeferredZero::kNone;
  return pending == params_.size() ? DeferredZero::kAll : DeferredZero::kMixed;
}

void ParamRegistry::clear_deferred_zero() {
  for (const auto& p : params_) take_deferred_zero(p.data);
}

bool take_deferred_zero(const at::Tensor& param) {
  const auto flag = deferred_flag(param.unsafeGetTensorImpl());
  return flag != nullptr && flag->exchange(false);
}

ParamRegistry::~ParamRegistry() {
  forget_targets(params_);
  forget_deferred(params_);
}

void notify_grad_accumulated(const at::Tensor& weight) {
  GradReadyTarget target{};
  {
    const std::lock_guard<std::mutex> lock(targets_mutex);
    const auto it = grad_ready_targets().find(weight.unsafeGetTensorImpl());
    if (it == grad_ready_targets().end()) return;
    target = it->second;
  }
  target.fn(target.ctx, target.index);
}

bool has_grad_ready(const at::Tensor& weight) {
  const std::lock_guard<std::mutex> lock(targets_mutex);
  return grad_ready_targets().count(weight.unsafeGetTensorImpl()) != 0;
}

void ParamRegistry::set_gate(mh_param_gate_fn fn, void* ctx) {
  gate_fn_ = fn;
  gate_ctx_ = ctx;
}

void ParamRegistry::mark_layer(size_t first, size_t count) { layers_.emplace_back(first, count); }

size_t ParamRegistry::layers_end() const {
  size_t end = 0;
  for (const auto& [f, c] : layers_) end = std::max(end, f + c);
  return end;
}

bool ParamRegistry::is_last_layer(size_t first, size_t count) const { return first + count == layers_end(); }

void ParamRegistry::gate(size_t first, size_t count) {
  if (gate_fn_ == nullptr || count == 0) return;
  if (!in_scope_) {  // e.g. a recomputed layer in backward: its forward named it already
    gate_fn_(gate_ctx_, first, count);
    return;
  }
  // One call per run of parameters not yet named in this forward.
  const size_t end = std::min(first + count, params_.size());
  for (size_t i = first; i < end;) {
    if (gated_[i]) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < end && !gated_[j]) gated_[j++] = 1;
    gate_fn_(gate_ctx_, i, j - i);
    i = j;
  }
}

void ParamRegistry::gate_after_layers() {
  const size_t end = layers_end();
  if (end < params_.size()) gate(end, params_.size() - end);
}

ParamRegistry::ForwardScope::ForwardScope(ParamRegistry& reg) : reg_(&reg) {
  if (reg.gate_fn_ == nullptr || reg.in_scope_) {  // no gate, or nested in an outer forward
    reg_ = nullptr;
    return;
  }
  reg.in_scope_ = true;
  reg.gated_.assign(reg.params_.size(), 0);
  // What no layer holds and does not come after the last layer (embeddings and the like): the
  // gaps before each layer, in creation order.
  if (reg.layers_.empty()) {
    reg.gate(0, reg.params_.size());
    return;
  }
  size_t from = 0;
  for (const auto& [f, c] : reg.layers_) {
    if (f > from) reg.gate(from, f - from);
    from = std::max(from, f + c);
  }
}

void ParamRegistry::ForwardScope::end() {
  if (reg_ == nullptr) return;
  reg_->gate(0, reg_->params_.size());  // only the ones not named yet
  reg_->in_scope_ = false;
  reg_ = nullptr;
}

mh_error* ParamRegistry::visit(mh_param_visit_fn fn, void* ctx) const {
  for (const auto& p : params_) {
    DLView data(p.data), grad(p.grad);
    mh_param_view view{};
    view.struct_size = sizeof(mh_param_view);
    view.name = p.name.c_str();
    view.data = data.get();
    view.grad = grad.get();
    view.tensor_parallel_dim = p.tensor_parallel_dim;
    view.flags = p.flags;
    if (mh_error* err = fn(ctx, &view)) return err;
  }
  return nullptr;
}

}  // namespace megahost::sdk::nn
