// Typed handles over model / optimizer / checkpoint plugin instances, and their creation.
#include "megahost/core/instances.h"

#include <ATen/DLConvertor.h>

#include <optional>

#include "create_instance.h"
#include "megahost/core/error.h"
#include "megahost/core/host_services.h"
#include "megahost/sdk/torch_interop.h"

namespace megahost::core {

using sdk::DLView;
using sdk::to_torch;

namespace {

// Named torch tensors as borrowed ABI views, alive as long as this object.
struct AbiBatch {
  std::vector<std::unique_ptr<DLView>> views;
  std::vector<mh_named_tensor> named;
  explicit AbiBatch(const std::vector<std::pair<std::string, at::Tensor>>& batch) {
    for (const auto& [name, t] : batch) {
      views.push_back(std::make_unique<DLView>(t));
      named.push_back({name.c_str(), views.back()->get()});
    }
  }
};

mh_stream cpu_stream() { return mh_stream{kDLCPU, 0, nullptr}; }
mh_stream stream_for(const at::Tensor& t) {
  return t.is_cuda() ? mh_stream{kDLCUDA, static_cast<int32_t>(t.get_device()), nullptr} : cpu_stream();
}

}  // namespace

// ---- model ------------------------------------------------------------------------------------

Model::Model(mh_model* m, const mh_model_api* api, std::string id, std::shared_ptr<void> tree)
    : m_(m), api_(api), id_(std::move(id)), config_tree_(std::move(tree)) {}
Model::~Model() { api_->destroy(m_); }

std::vector<Param> Model::params() {
  std::vector<Param> out;
  auto visit = [](void* ctx, const mh_param_view* p) -> mh_error* {
    try {
      auto* v = static_cast<std::vector<Param>*>(ctx);
      Param q;
      q.name = p->name;
      q.data = to_torch(p->data);
      if (p->grad != nullptr) q.grad = to_torch(p->grad);
      q.tensor_parallel_dim = p->tensor_parallel_dim;
      q.flags = p->flags;
      v->push_back(std::move(q));
      return nullptr;
    } catch (const std::exception& e) {
      return make_error(MH_ERR_INTERNAL, e.what());
    }
  };
  throw_if_error(api_->visit_params(m_, visit, &out), cat("model '", id_, "' visit_params"));
  return out;
}

std::unique_ptr<Model::AbiParams> Model::abi_params() {
  auto out = std::make_unique<AbiParams>();
  auto visit = [](void* ctx, const mh_param_view* p) -> mh_error* {
    auto* a = static_cast<AbiParams*>(ctx);
    // Deep-copy the view: the visitor's structs are borrowed for the callback only.
    auto copy_tensor = [a](const DLTensor* t) -> DLTensor* {
      if (t == nullptr) return nullptr;
      a->shapes.emplace_back(t->shape, t->shape + t->ndim);
      auto dl = std::make_unique<DLTensor>(*t);
      dl->shape = a->shapes.back().data();
      dl->strides = nullptr;  // parameters are contiguous (mh_param_view contract)
      a->tensors.push_back(std::move(dl));
      return a->tensors.back().get();
    };
    a->names.emplace_back(p->name);
    mh_param_view v = *p;
    v.struct_size = sizeof(mh_param_view);
    v.data = copy_tensor(p->data);
    v.grad = copy_tensor(p->grad);
    a->views.push_back(v);
    return nullptr;
  };
  out->shapes.reserve(4096);  // pointers into shapes must stay stable
  throw_if_error(api_->visit_params(m_, visit, out.get()), cat("model '", id_, "' visit_params"));
  MH_CORE_CHECK(out->shapes.size() <= 4096, "model has too many parameters for abi_params (", out->shapes.size(), ")");
  for (size_t i = 0; i < out->views.size(); ++i) out->views[i].name = out->names[i].c_str();
  return out;
}

void Model::set_training(bool training) {
  throw_if_error(api_->set_training(m_, training), cat("model '", id_, "'"));
}
void Model::zero_grad() { throw_if_error(api_->zero_grad(m_, cpu_stream()), cat("model '", id_, "'")); }

bool Model::can_zero_grad_deferred() const {
  return MH_HAS_SLOT(api_, mh_model_api, zero_grad_deferred) && api_->zero_grad_deferred != nullptr;
}

void Model::zero_grad_deferred() {
  MH_CORE_CHECK(can_zero_grad_deferred(), "model '", id_, "' cannot defer zero_grad (ABI 1.6 zero_grad_deferred)");
  throw_if_error(api_->zero_grad_deferred(m_, cpu_stream()), cat("model '", id_, "' zero_grad_deferred"));
}

Loss Model::forward_backward(const std::vector<std::pair<std::string, at::Tensor>>& batch, double grad_scale) {
  AbiBatch b(batch);
  mh_loss loss{sizeof(mh_loss), 0, 0};
  throw_if_error(api_->forward_backward(m_, b.named.data(), b.named.size(), grad_scale,
                                        stream_for(batch.front().second), &loss),
                 cat("model '", id_, "' forward_backward"));
  rethrow_gate_error();
  return {loss.loss_sum, loss.num_tokens};
}

Loss Model::forward_loss(const std::vector<std::pair<std::string, at::Tensor>>& batch) {
  AbiBatch b(batch);
  mh_loss loss{sizeof(mh_loss), 0, 0};
  throw_if_error(api_->forward_loss(m_, b.named.data(), b.named.size(), stream_for(batch.front().second), &loss),
                 cat("model '", id_, "' forward_loss"));
  rethrow_gate_error();
  return {loss.loss_sum, loss.num_tokens};
}

bool Model::has_logits() const { return api_->get_extension(m_, MH_EXT_MODEL_LOGITS) != nullptr; }

std::optional<double> Model::train_flops_per_sample() const {
  const auto* ext = static_cast<const mh_model_flops_ext*>(api_->get_extension(m_, MH_EXT_MODEL_FLOPS));
  if (!MH_HAS_SLOT(ext, mh_model_flops_ext, train_flops_per_sample)) return std::nullopt;
  double flops = 0;
  throw_if_error(ext->train_flops_per_sample(m_, &flops), cat("model '", id_, "' train_flops_per_sample"));
  return flops;
}

at::Tensor Model::logits(const at::Tensor& tokens) {
  const auto* ext = static_cast<const mh_model_logits_ext*>(api_->get_extension(m_, MH_EXT_MODEL_LOGITS));
  MH_CORE_CHECK(ext != nullptr, "model '", id_, "' does not offer ", MH_EXT_MODEL_LOGITS,
                "\nHINT: generation needs a model plugin with the logits extension");
  DLView view(tokens);
  at::Tensor out;
  auto grab = [](void* ctx, const mh_named_tensor* t) -> mh_error* {
    try {
      *static_cast<at::Tensor*>(ctx) = to_torch(t->tensor).clone();
      return nullptr;
    } catch (const std::exception& e) {
      return make_error(MH_ERR_INTERNAL, e.what());
    }
  };
  throw_if_error(ext->logits(m_, view.get(), stream_for(tokens), grab, &out), cat("model '", id_, "' logits"));
  rethrow_gate_error();
  return out;
}

bool Model::can_bind_storage() const { return MH_HAS_SLOT(api_, mh_model_api, bind_storage) && api_->bind_storage; }

void Model::bind_storage(const std::vector<at::Tensor>& data, const std::vector<at::Tensor>& grad,
                         std::function<void(size_t)> grad_ready) {
  MH_CORE_CHECK(can_bind_storage(), "model '", id_, "' cannot bind host storage (ABI 1.1 bind_storage)");
  MH_CORE_CHECK(data.size() == grad.size(), "bind_storage: ", data.size(), " data vs ", grad.size(), " grads");
  std::vector<std::unique_ptr<DLView>> views;
  std::vector<mh_param_binding> bindings(data.size());
  auto view_of = [&](const at::Tensor& t) -> DLTensor* {
    if (!t.defined()) return nullptr;
    views.push_back(std::make_unique<DLView>(t));
    return views.back()->get();
  };
  for (size_t i = 0; i < data.size(); ++i) bindings[i] = {sizeof(mh_param_binding), view_of(data[i]), view_of(grad[i])};
  grad_ready_ = std::move(grad_ready);
  auto trampoline = [](void* ctx, size_t index) {
    auto* self = static_cast<Model*>(ctx);
    if (self->grad_ready_) self->grad_ready_(index);
  };
  throw_if_error(api_->bind_storage(m_, bindings.data(), bindings.size(), grad_ready_ ? +trampoline : nullptr, this),
                 cat("model '", id_, "' bind_storage"));
}

void Model::rethrow_gate_error() {
  if (!gate_error_) return;
  std::exception_ptr e = gate_error_;
  gate_error_ = nullptr;
  std::rethrow_exception(e);
}

bool Model::can_gate_params() const {
  return MH_HAS_SLOT(api_, mh_model_api, set_param_gate) && api_->set_param_gate != nullptr;
}

void Model::set_param_gate(std::function<void(size_t, size_t)> gate) {
  MH_CORE_CHECK(can_gate_params(), "model '", id_, "' has no parameter gate (ABI 1.9 set_param_gate)");
  param_gate_ = std::move(gate);
  auto trampoline = [](void* ctx, size_t first, size_t count) {
    auto* self = static_cast<Model*>(ctx);
    try {  // nothing may cross the ABI: kept, and thrown when the forward returns
      if (self->param_gate_ && !self->gate_error_) self->param_gate_(first, count);
    } catch (...) {
      self->gate_error_ = std::current_exception();
    }
  };
  throw_if_error(api_->set_param_gate(m_, param_gate_ ? +trampoline : nullptr, this),
                 cat("model '", id_, "' set_param_gate"));
}

const mh_model_pipeline_ext* Model::pipeline_ext() const {
  return static_cast<const mh_model_pipeline_ext*>(api_->get_extension(m_, MH_EXT_MODEL_PIPELINE));
}
bool Model::has_pipeline() const { return pipeline_ext() != nullptr; }

Model::StageIO Model::stage_io(int64_t micro_batch_size) const {
  const auto* ext = pipeline_ext();
  MH_CORE_CHECK(ext != nullptr, "model '", id_, "' does not offer ", MH_EXT_MODEL_PIPELINE,
                "\nHINT: pipeline parallelism needs a model plugin with the pipeline extension");
  int64_t shape[8] = {0};
  int32_t ndim = 0;
  DLDataType dt{kDLFloat, 32, 1};
  throw_if_error(ext->stage_io(m_, micro_batch_size, shape, &ndim, &dt), cat("model '", id_, "' stage_io"));
  MH_CORE_CHECK(ndim > 0 && ndim <= 8, "model '", id_, "' stage_io returned ndim ", ndim);
  return {std::vector<int64_t>(shape, shape + ndim), sdk::to_scalar_type(dt)};
}

Model::InFlight& Model::InFlight::operator=(InFlight&& o) noexcept {
  if (this != &o) {
    if (mb_ != nullptr) model_->pipeline_ext()->microbatch_free(model_->m_, mb_);
    model_ = o.model_;
    mb_ = o.mb_;
    o.mb_ = nullptr;
  }
  return *this;
}
Model::InFlight::~InFlight() {
  if (mb_ != nullptr) model_->pipeline_ext()->microbatch_free(model_->m_, mb_);
}

Model::StageForward Model::forward_stage(const std::vector<std::pair<std::string, at::Tensor>>& batch,
                                         const at::Tensor& input, bool with_grad) {
  const auto* ext = pipeline_ext();
  MH_CORE_CHECK(ext != nullptr, "model '", id_, "' does not offer ", MH_EXT_MODEL_PIPELINE);
  AbiBatch b(batch);
  std::optional<DLView> in;
  if (input.defined()) in.emplace(input);
  DLManagedTensor* act = nullptr;
  mh_loss loss{sizeof(mh_loss), 0, 0};
  mh_pipeline_microbatch* mb = nullptr;
  throw_if_error(ext->forward(m_, b.named.data(), b.named.size(), in ? in->get() : nullptr, with_grad,
                              stream_for(batch.front().second), &act, &loss, &mb),
                 cat("model '", id_, "' pipeline forward"));
  StageForward out;
  out.state = InFlight(this, mb);
  out.loss = {loss.loss_sum, loss.num_tokens};
  if (act != nullptr) out.activation = at::fromDLPack(act);  // takes ownership (calls the deleter)
  rethrow_gate_error();
  return out;
}

at::Tensor Model::backward_stage(InFlight state, const at::Tensor& output_grad, double grad_scale) {
  const auto* ext = pipeline_ext();
  std::optional<DLView> og;
  if (output_grad.defined()) og.emplace(output_grad);
  DLManagedTensor* in_grad = nullptr;
  const mh_stream stream = output_grad.defined() ? stream_for(output_grad) : cpu_stream();
  throw_if_error(ext->backward(m_, state.release(), og ? og->get() : nullptr, grad_scale, stream, &in_grad),
                 cat("model '", id_, "' pipeline backward"));
  return in_grad != nullptr ? at::fromDLPack(in_grad) : at::Tensor();
}

// ---- optimizer --------------------------------------------------------------------------------

Optimizer::Optimizer(mh_optimizer* o, const mh_optimizer_api* api, std::string id, std::shared_ptr<void> tree)
    : o_(o), api_(api), id_(std::move(id)), config_tree_(std::move(tree)) {}
Optimizer::~Optimizer() { api_->destroy(o_); }

void Optimizer::setup(const Model::AbiParams& p) {
  throw_if_error(api_->setup(o_, p.views.data(), p.views.size()), cat("optimizer '", id_, "' setup"));
}
bool Optimizer::applies_grad_scale() const { return api_->hdr.abi.major == 1 && api_->hdr.abi.minor >= 2; }
bool Optimizer::writes_model_copies() const { return api_->hdr.abi.major == 1 && api_->hdr.abi.minor >= 5; }
bool Optimizer::applies_grad_scale_tensor() const { return api_->hdr.abi.major == 1 && api_->hdr.abi.minor >= 7; }
bool Optimizer::takes_param_remainders() const { return api_->hdr.abi.major == 1 && api_->hdr.abi.minor >= 8; }
bool Optimizer::updates_param_ranges() const { return api_->hdr.abi.major == 1 && api_->hdr.abi.minor >= 9; }

void Optimizer::step(const Model::AbiParams& p, double lr, double weight_decay, int64_t iteration,
                     double grad_scale, const at::Tensor& grad_scale_tensor, std::pair<size_t, size_t> range) {
  MH_CORE_CHECK(grad_scale == 1.0 || applies_grad_scale(), "optimizer '", id_, "' (ABI ", api_->hdr.abi.major, ".",
                api_->hdr.abi.minor, ") cannot apply grad_scale\nHINT: the host scales the gradients itself for it");
  MH_CORE_CHECK(!grad_scale_tensor.defined() || applies_grad_scale_tensor(), "optimizer '", id_, "' (ABI ",
                api_->hdr.abi.major, ".", api_->hdr.abi.minor,
                ") cannot apply grad_scale_tensor\nHINT: read the norm back and pass grad_scale alone");
  mh_optimizer_step_args args{sizeof(mh_optimizer_step_args), lr, weight_decay, iteration, grad_scale, nullptr, nullptr,
                              nullptr, 0, 0, nullptr};
  if (range.second > 0) {
    MH_CORE_CHECK(updates_param_ranges(), "optimizer '", id_, "' (ABI ", api_->hdr.abi.major, ".", api_->hdr.abi.minor,
                  ") cannot update a parameter range\nHINT: step all parameters in one call for it");
    args.first_param = range.first;
    args.num_params = range.second;
  }
  if (writes_model_copies() && !p.model_copies.empty()) args.model_copies = p.model_copies.data();
  MH_CORE_CHECK(p.remainders.empty() || takes_param_remainders(), "optimizer '", id_, "' (ABI ", api_->hdr.abi.major,
                ".", api_->hdr.abi.minor, ") cannot take param_remainders\nHINT: keep fp32 master weights for it");
  if (!p.remainders.empty()) args.param_remainders = p.remainders.data();
  if (!p.offsets.empty()) args.param_offsets = p.offsets.data();  // optional to read: any plugin
  std::optional<sdk::DLView> scale_view;
  if (grad_scale_tensor.defined()) args.grad_scale_tensor = scale_view.emplace(grad_scale_tensor).get();
  throw_if_error(api_->step(o_, p.views.data(), p.views.size(), &args, cpu_stream()),
                 cat("optimizer '", id_, "' step"));
}
std::optional<int64_t> Optimizer::state_bytes() const {
  const auto* ext =
      static_cast<const mh_optimizer_state_bytes_ext*>(api_->get_extension(o_, MH_EXT_OPTIMIZER_STATE_BYTES));
  if (!MH_HAS_SLOT(ext, mh_optimizer_state_bytes_ext, state_bytes)) return std::nullopt;
  int64_t bytes = 0;
  throw_if_error(ext->state_bytes(o_, &bytes), cat("optimizer '", id_, "' state_bytes"));
  return bytes;
}

void Optimizer::visit_state(const Model::AbiParams& p,
                            const std::function<void(const std::string&, at::Tensor)>& fn) {
  struct Ctx {
    const std::function<void(const std::string&, at::Tensor)>* fn;
    std::string error;
  } ctx{&fn, {}};
  auto visit = [](void* c, const mh_named_tensor* t) -> mh_error* {
    auto* x = static_cast<Ctx*>(c);
    try {
      (*x->fn)(t->name, to_torch(t->tensor));
      return nullptr;
    } catch (const std::exception& e) {
      return make_error(MH_ERR_INVALID_ARG, e.what());
    }
  };
  throw_if_error(api_->visit_state(o_, p.views.data(), p.views.size(), visit, &ctx), "");
}

// ---- checkpoint -------------------------------------------------------------------------------

CheckpointFormat::CheckpointFormat(mh_checkpoint_format* c, const mh_checkpoint_api* api, std::string id,
                                   std::shared_ptr<void> tree)
    : c_(c), api_(api), id_(std::move(id)), config_tree_(std::move(tree)) {}
CheckpointFormat::~CheckpointFormat() { api_->destroy(c_); }

CheckpointFormat::Writer::Writer(mh_checkpoint_writer* w, const mh_checkpoint_api* api, std::string dir)
    : w_(w), api_(api), dir_(std::move(dir)) {}
CheckpointFormat::Writer::~Writer() {
  if (w_ != nullptr) api_->writer_abort(w_);
}
void CheckpointFormat::Writer::tensor(const std::string& name, const at::Tensor& t) {
  at::Tensor cpu = t.detach().to(at::kCPU).contiguous();
  DLView view(cpu);
  throw_if_error(api_->writer_tensor(w_, name.c_str(), view.get()), dir_);
}
void CheckpointFormat::Writer::blob(const std::string& name, const std::string& bytes) {
  throw_if_error(api_->writer_blob(w_, name.c_str(), bytes.data(), bytes.size()), dir_);
}
void CheckpointFormat::Writer::commit() {
  mh_checkpoint_writer* w = w_;
  w_ = nullptr;  // commit frees the writer, also on error
  throw_if_error(api_->writer_commit(w), dir_);
}

CheckpointFormat::Reader::Reader(mh_checkpoint_reader* r, const mh_checkpoint_api* api, std::string dir)
    : r_(r), api_(api), dir_(std::move(dir)) {}
CheckpointFormat::Reader::~Reader() { api_->reader_close(r_); }
std::vector<CheckpointEntry> CheckpointFormat::Reader::list() {
  std::vector<CheckpointEntry> out;
  auto visit = [](void* ctx, const mh_checkpoint_entry* e) -> mh_error* {
    try {
      CheckpointEntry c;
      c.name = e->name;
      c.is_blob = e->is_blob != 0;
      if (!c.is_blob) {
        c.dtype = sdk::to_scalar_type(e->dtype);
        c.shape.assign(e->shape, e->shape + e->ndim);
      }
      c.nbytes = e->nbytes;
      static_cast<std::vector<CheckpointEntry>*>(ctx)->push_back(std::move(c));
      return nullptr;
    } catch (const std::exception& ex) {
      return make_error(MH_ERR_INTERNAL, ex.what());
    }
  };
  throw_if_error(api_->reader_list(r_, visit, &out), dir_);
  return out;
}
void CheckpointFormat::Reader::tensor_into(const std::string& name, at::Tensor dst) {
  at::Tensor cpu = dst.is_cpu() && dst.is_contiguous() ? dst : at::empty(dst.sizes(), dst.options().device(at::kCPU));
  DLView view(cpu);
  throw_if_error(api_->reader_tensor(r_, name.c_str(), view.get()), dir_);
  if (!cpu.is_same(dst)) dst.copy_(cpu);
}
std::string CheckpointFormat::Reader::blob(const std::string& name) {
  size_t len = 0;
  throw_if_error(api_->reader_blob(r_, name.c_str(), nullptr, 0, &len), dir_);
  std::string out(len, '\0');
  throw_if_error(api_->reader_blob(r_, name.c_str(), out.data(), out.size(), &len), dir_);
  return out;
}

std::unique_ptr<CheckpointFormat::Writer> CheckpointFormat::open_writer(const std::string& dir) {
  mh_checkpoint_writer* w = nullptr;
  throw_if_error(api_->writer_open(c_, dir.c_str(), &w), dir);
  return std::make_unique<Writer>(w, api_, dir);
}
std::unique_ptr<CheckpointFormat::Reader> CheckpointFormat::open_reader(const std::string& dir) {
  mh_checkpoint_reader* r = nullptr;
  throw_if_error(api_->reader_open(c_, dir.c_str(), &r), "");
  return std::make_unique<Reader>(r, api_, dir);
}

// ---- creation ---------------------------------------------------------------------------------

std::unique_ptr<Model> create_model(const PluginRegistry& reg, const std::string& id, const ConfigSection& cfg,
                                    const ModelOptions& opts, const std::vector<std::string>& host_keys) {
  mh_model_create_args args{};
  args.device = opts.device;
  args.param_dtype = opts.param_dtype;
  args.padded_vocab_size = opts.padded_vocab_size;
  args.layer_offset = opts.layer_offset;
  args.num_stage_layers = opts.num_stage_layers;
  args.stage_flags = opts.stage_flags;
  args.parallel_flags = opts.parallel_flags;
  return create_instance<Model, mh_model_factory, mh_model, mh_model_api>(reg.find(PluginKind::Model, id), cfg,
                                                                          host_keys, args, "model");
}

std::unique_ptr<Optimizer> create_optimizer(const PluginRegistry& reg, const std::string& id,
                                            const ConfigSection& cfg, DLDevice device,
                                            const std::vector<std::string>& host_keys) {
  mh_optimizer_create_args args{};
  args.device = device;
  return create_instance<Optimizer, mh_optimizer_factory, mh_optimizer, mh_optimizer_api>(
      reg.find(PluginKind::Optimizer, id), cfg, host_keys, args, "optimizer");
}

std::unique_ptr<CheckpointFormat> create_checkpoint_format(const PluginRegistry& reg, const std::string& id,
                                                           const ConfigSection& cfg,
                                                           const std::vector<std::string>& host_keys) {
  return create_instance<CheckpointFormat, mh_checkpoint_factory, mh_checkpoint_format, mh_checkpoint_api>(
      reg.find(PluginKind::Checkpoint, id), cfg, host_keys, mh_checkpoint_create_args{}, "checkpoint format");
}

}  // namespace megahost::core
