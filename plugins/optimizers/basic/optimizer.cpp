#include "optimizer.h"

#include <cmath>
#include <cstddef>
#include <map>
#include <tuple>

#include "megahost/sdk/param_remainders.h"
#include "megahost/sdk/scaled_state.h"
#include "megahost/sdk/torch_interop.h"

namespace megahost::optim {

using sdk::DLView;
using sdk::initial_scale;
using sdk::is_scaled_dtype;
using sdk::store_scaled;
using sdk::unscale;
using sdk::str_cat;
using sdk::to_torch;

namespace {

// fp64 params keep fp64 state; everything else (fp32, bf16, fp16) works in fp32.
at::ScalarType working_dtype(at::ScalarType param) { return param == at::kDouble ? at::kDouble : at::kFloat; }

}  // namespace

Optimizer::Optimizer(const mh_host* host, std::vector<std::string> state_names,
                     std::vector<at::ScalarType> state_dtypes)
    : host_(host),
      state_names_(std::move(state_names)),
      state_dtypes_(std::move(state_dtypes)),
      step_(at::zeros({1}, at::kLong)) {}

int64_t Optimizer::steps_taken() const { return step_.data_ptr<int64_t>()[0]; }

int64_t Optimizer::state_bytes() const {
  int64_t bytes = static_cast<int64_t>(step_.nbytes());
  for (const Slot& s : slots_)
    for (size_t k = 0; k < s.state.size(); ++k) {
      bytes += static_cast<int64_t>(s.state[k].nbytes());
      if (s.scale[k].defined()) bytes += static_cast<int64_t>(s.scale[k].nbytes());
    }
  return bytes;
}

void Optimizer::setup(const mh_param_view* params, size_t n) {
  MH_CHECK(!ready_, MH_ERR_INVALID_ARG, "optimizer setup called twice");
  MH_CHECK(params != nullptr || n == 0, MH_ERR_INVALID_ARG, "optimizer setup: null parameter list");
  slots_.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    const mh_param_view& v = params[i];
    MH_CHECK(v.name != nullptr && v.data != nullptr, MH_ERR_INVALID_ARG, "optimizer setup: parameter ", i,
             " has no name or data");
    at::Tensor p = to_torch(v.data);
    MH_CHECK(at::isFloatingType(p.scalar_type()), MH_ERR_INVALID_ARG, "parameter '", v.name, "' is ",
             c10::toString(p.scalar_type()), "; only floating-point parameters can be optimized");
    Slot s;
    s.name = v.name;
    s.shape = p.sizes().vec();
    s.dtype = p.scalar_type();
    s.device = p.device();
    for (size_t k = 0; k < state_names_.size(); ++k) {
      at::ScalarType dtype = working_dtype(s.dtype);
      if (dtype == at::kFloat && k < state_dtypes_.size()) dtype = state_dtypes_[k];
      s.state.push_back(at::zeros(p.sizes(), p.options().dtype(dtype)));
      s.scale.push_back(is_scaled_dtype(dtype) ? initial_scale(s.state.back()) : at::Tensor());
    }
    slots_.push_back(std::move(s));
  }
  ready_ = true;
}

void Optimizer::check_same_params(const mh_param_view* params, size_t n, const char* call) const {
  MH_CHECK(ready_, MH_ERR_INVALID_ARG, "optimizer ", call, " before setup. HINT: the host calls setup first");
  MH_CHECK(n == slots_.size(), MH_ERR_INVALID_ARG, "optimizer ", call, " got ", n, " parameters, setup got ",
           slots_.size(), ". HINT: pass the same parameter list, in the same order, to every call");
  for (size_t i = 0; i < n; ++i) {
    const mh_param_view& v = params[i];
    const Slot& s = slots_[i];
    MH_CHECK(v.name != nullptr && s.name == v.name, MH_ERR_INVALID_ARG, "optimizer ", call, ": parameter ", i, " is '",
             v.name ? v.name : "(null)", "', setup had '", s.name, "'. HINT: keep the parameter order of setup");
    MH_CHECK(v.data != nullptr && v.data->ndim == int32_t(s.shape.size()) &&
                 std::equal(s.shape.begin(), s.shape.end(), v.data->shape),
             MH_ERR_INVALID_ARG, "optimizer ", call, ": parameter '", s.name, "' changed shape since setup");
  }
}

void Optimizer::step(const mh_param_view* params, size_t n, const mh_optimizer_step_args& args) {
  check_same_params(params, n, "step");
  visit_copies_.clear();
  MH_CHECK(args.lr >= 0 && args.weight_decay >= 0, MH_ERR_INVALID_ARG, "optimizer step: lr (", args.lr,
           ") and weight_decay (", args.weight_decay, ") must be >= 0");
  // ABI 1.2: the host folds clipping and 1 / loss scale into one factor on the gradients.
  constexpr size_t kHasGradScale = offsetof(mh_optimizer_step_args, grad_scale) + sizeof(double);
  const double grad_scale = args.struct_size >= kHasGradScale ? args.grad_scale : 1.0;
  MH_CHECK(std::isfinite(grad_scale), MH_ERR_INVALID_ARG, "optimizer step: grad_scale is ", grad_scale);
  // ABI 1.5: half-precision model parameters to write the updated fp32 values into.
  constexpr size_t kHasModelCopies = offsetof(mh_optimizer_step_args, model_copies) + sizeof(DLTensor* const*);
  DLTensor* const* model_copies = args.struct_size >= kHasModelCopies ? args.model_copies : nullptr;
  // ABI 1.7: the clipping coefficient as a one-element float32 tensor, read on the stream only.
  constexpr size_t kHasScaleTensor =
      offsetof(mh_optimizer_step_args, grad_scale_tensor) + sizeof(const DLTensor*);
  at::Tensor scale_tensor;
  if (args.struct_size >= kHasScaleTensor && args.grad_scale_tensor != nullptr) {
    scale_tensor = to_torch(args.grad_scale_tensor);
    MH_CHECK(scale_tensor.numel() == 1 && scale_tensor.scalar_type() == at::kFloat, MH_ERR_INVALID_ARG,
             "optimizer step: grad_scale_tensor must be one float32 element");
  }

  // ABI 1.8: bf16 parameters whose fp32 masters' lower halves are int16 remainders.
  constexpr size_t kHasRemainders =
      offsetof(mh_optimizer_step_args, param_remainders) + sizeof(DLTensor* const*);
  DLTensor* const* remainders = args.struct_size >= kHasRemainders ? args.param_remainders : nullptr;

  // ABI 1.10: where each view starts within its parameter (distributed-optimizer shards).
  constexpr size_t kHasOffsets = offsetof(mh_optimizer_step_args, param_offsets) + sizeof(const int64_t*);
  const int64_t* offsets = args.struct_size >= kHasOffsets ? args.param_offsets : nullptr;

  // ABI 1.9: a step split into consecutive parameter ranges; the step counts at the last one.
  constexpr size_t kHasRange = offsetof(mh_optimizer_step_args, num_params) + sizeof(size_t);
  size_t first = 0, last = n;
  if (args.struct_size >= kHasRange && args.num_params != 0) {
    MH_CHECK(args.first_param <= n && args.num_params <= n - args.first_param, MH_ERR_INVALID_ARG,
             "optimizer step: parameter range [", args.first_param, ", ", args.first_param + args.num_params,
             ") is outside the ", n, " parameters");
    first = args.first_param;
    last = first + args.num_params;
  }
  MH_CHECK(first == 0 || first == next_range_first_, MH_ERR_INVALID_ARG, "optimizer step: the range starting at ",
           first, " does not continue the previous one (which ended at ", next_range_first_,
           ")\nHINT: split a step into consecutive ranges, in increasing order, that end at the last parameter");
  const int64_t t = first == 0 ? steps_taken() + 1 : range_step_;
  range_step_ = t;
  next_range_first_ = last == n ? 0 : last;

  auto add_state = [this](Group& grp, const Slot& s) {
    grp.state.resize(state_names_.size());
    grp.scales.resize(state_names_.size());
    for (size_t k = 0; k < state_names_.size(); ++k) {
      grp.state[k].push_back(s.state[k]);
      grp.scales[k].push_back(s.scale[k]);
    }
  };
  // Group parameters so each group is one set of _foreach_* calls (reused while the storage is).
  RangeCache& cache = caches_[{first, last}];
  std::vector<const void*>& cached_storage_ = cache.storage;
  std::vector<std::pair<GroupKey, Group>>& cached_groups_ = cache.groups;
  std::vector<const void*> storage;
  storage.reserve(4 * (last - first));
  for (size_t i = first; i < last; ++i) {
    storage.push_back(remainders != nullptr && remainders[i] != nullptr ? remainders[i]->data : nullptr);
    storage.push_back(model_copies != nullptr && model_copies[i] != nullptr ? model_copies[i]->data : nullptr);
    storage.push_back(params[i].data != nullptr ? static_cast<const char*>(params[i].data->data) +
                                                      params[i].data->byte_offset
                                                : nullptr);
    storage.push_back(params[i].grad != nullptr ? static_cast<const char*>(params[i].grad->data) +
                                                      params[i].grad->byte_offset
                                                : nullptr);
    storage.push_back(reinterpret_cast<const void*>(static_cast<intptr_t>(offsets != nullptr ? offsets[i] : 0)));
  }
  if (storage != cached_storage_) {
    std::map<GroupKey, Group> groups;
    bool has_copies = false;
    for (size_t i = first; i < last; ++i) {
      if (params[i].grad == nullptr) continue;  // no gradient, no update (as torch.optim skips p.grad None)
      const Slot& s = slots_[i];
      at::Tensor p = to_torch(params[i].data);
      at::Tensor g = to_torch(params[i].grad);
      MH_CHECK(p.device() == s.device && g.device() == s.device, MH_ERR_INVALID_ARG, "parameter '", s.name,
               "' or its gradient is not on ", s.device.str(), " where setup found it");
      const bool decay = (params[i].flags & MH_PARAM_NO_WEIGHT_DECAY) == 0;
      const bool has_remainder = remainders != nullptr && remainders[i] != nullptr;
      Group& grp = groups[{s.device.str(), int(s.dtype), decay, has_remainder}];
      grp.decay = decay;
      grp.offsets.push_back(offsets != nullptr ? offsets[i] : 0);
      const at::ScalarType wt = working_dtype(s.dtype);
      if (has_remainder) {  // the live bf16 parameter and its remainder, updated in place
        at::Tensor r = to_torch(remainders[i]);
        MH_CHECK(p.scalar_type() == at::kBFloat16 && r.scalar_type() == at::kShort && r.sizes() == p.sizes() &&
                     r.device() == p.device() && p.is_contiguous() && r.is_contiguous(),
                 MH_ERR_INVALID_ARG, "optimizer step: param_remainders[", i, "] of '", s.name,
                 "' must be a contiguous int16 tensor of the parameter's shape, and the parameter bf16");
        MH_CHECK(model_copies == nullptr || model_copies[i] == nullptr, MH_ERR_INVALID_ARG,
                 "optimizer step: '", s.name, "' has both a remainder and a model copy");
        grp.params.push_back(p);
        grp.remainders.push_back(r);
        const bool keep = g.scalar_type() == wt || reads_bf16_grads(g);
        grp.grads.push_back(keep ? g : g.to(wt));
        if (!keep) has_copies = true;
        grp.model_copies.push_back(at::Tensor());
        add_state(grp, s);
        continue;
      }
      const bool keep_grad = g.scalar_type() == wt || (p.scalar_type() == wt && reads_bf16_grads(g));
      if (p.scalar_type() != wt || !keep_grad) has_copies = true;
      if (p.scalar_type() == wt) {
        grp.params.push_back(p);
      } else {
        grp.params.push_back(p.to(wt));  // half-precision param: update an fp32 copy, then write back
        grp.write_back.push_back(p);
      }
      grp.grads.push_back(keep_grad ? g : g.to(wt));
      at::Tensor copy;
      if (model_copies != nullptr && model_copies[i] != nullptr) {
        copy = to_torch(model_copies[i]);
        MH_CHECK(copy.sizes() == p.sizes() && copy.device() == p.device() && copy.is_contiguous(),
                 MH_ERR_INVALID_ARG, "optimizer step: model_copies[", i, "] of '", s.name,
                 "' must be a contiguous tensor of the parameter's shape on its device");
      }
      grp.model_copies.push_back(copy);
      add_state(grp, s);
    }
    cached_groups_.assign(groups.begin(), groups.end());
    cached_storage_ = std::move(storage);
    if (has_copies) cached_storage_.clear();  // working copies are per step: rebuild next time
  }
  for (auto& [key, grp] : cached_groups_) {
    grp.grad_scale = 1.0;
    grp.grad_scale_tensor = at::Tensor();
    if (folds_grad_scale(grp)) {
      grp.grad_scale = grad_scale;
      grp.grad_scale_tensor = scale_tensor;
    } else {  // in place: the host zeroes them next
      if (grad_scale != 1.0) at::_foreach_mul_(grp.grads, grad_scale);
      if (scale_tensor.defined())
        for (at::Tensor& g : grp.grads) g.mul_(scale_tensor.to(g.device()).reshape({}));
    }
    if (!grp.remainders.empty() && !handles_remainders(grp)) {  // fp32 working copies, split back after
      std::vector<at::Tensor> live = grp.params;
      for (size_t i = 0; i < live.size(); ++i) grp.params[i] = sdk::compose_fp32(live[i], grp.remainders[i]);
      update(grp, args.lr, grp.decay ? args.weight_decay : 0.0, t);
      for (size_t i = 0; i < live.size(); ++i) sdk::split_fp32(grp.params[i], live[i], grp.remainders[i]);
      grp.params = std::move(live);
      continue;
    }
    update(grp, args.lr, grp.decay ? args.weight_decay : 0.0, t);
    for (size_t i = 0; i < grp.write_back.size(); ++i) grp.write_back[i].copy_(grp.params[i]);
    if (!writes_model_copies(grp))
      for (size_t i = 0; i < grp.model_copies.size(); ++i)
        if (grp.model_copies[i].defined()) grp.model_copies[i].copy_(grp.params[i]);
  }
  if (last == n) step_.data_ptr<int64_t>()[0] = t;
}

void Optimizer::visit_state(const mh_param_view* params, size_t n, mh_tensor_visit_fn fn, void* ctx) {
  check_same_params(params, n, "visit_state");
  auto visit = [&](const std::string& name, const at::Tensor& t) {
    DLView view(t);
    mh_named_tensor nt{name.c_str(), view.get()};
    if (mh_error* err = fn(ctx, &nt)) throw sdk::HostError(host_, err);
  };
  for (Slot& s : slots_)
    for (size_t k = 0; k < state_names_.size(); ++k) {
      if (!s.scale[k].defined()) {
        visit(s.name + "." + state_names_[k], s.state[k]);
        continue;
      }
      // A scaled state is handed over as its float32 values (what Megatron's checkpoints hold, so
      // they load whatever the dtype and reshard as any other state), in host memory so the
      // device does not hold a float32 copy, kept until the next step (the host may hold on to
      // what it was handed, e.g. to write it to a file after the visit); what a load writes
      // into them is stored back, and a save leaves the stored state as it was.
      at::Tensor values = unscale(s.state[k], s.scale[k]).to(at::kCPU);
      const at::Tensor before = values.clone();
      visit_copies_.push_back(values);
      visit(s.name + "." + state_names_[k], values);
      if (!at::equal(values, before)) store_scaled(values.to(s.state[k].device()), s.state[k], s.scale[k]);
    }
  visit("step", step_);
}

}  // namespace megahost::optim
