// megahost core — typed handles over model, optimizer and checkpoint-format plugin instances.
#pragma once

#include <ATen/ATen.h>

#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "megahost/core/plugins.h"
#include "megahost/megahost.h"

namespace megahost::core {

// A parameter as the core sees it: live torch views of the model's storage plus metadata.
struct Param {
  std::string name;
  at::Tensor data, grad;
  int32_t tensor_parallel_dim = -1;
  uint32_t flags = 0;
};

struct Loss {
  double loss_sum = 0, num_tokens = 0;
};

class Model {
 public:
  Model(mh_model* m, const mh_model_api* api, std::string id, std::shared_ptr<void> config_tree);
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  // Every parameter, in the model's order. Views share storage with the plugin's tensors.
  std::vector<Param> params();
  // The same parameters as ABI views, for handing to an optimizer plugin (valid while `keep` lives).
  struct AbiParams {
    std::vector<mh_param_view> views;
    std::vector<std::string> names;
    std::vector<std::unique_ptr<DLTensor>> tensors;
    std::vector<std::vector<int64_t>> shapes;
    // Empty, or one per view: the half-precision model parameter the view's fp32 master is
    // copied into after a step (null: none); see Optimizer::writes_model_copies.
    std::vector<DLTensor*> model_copies;
    // Empty, or one per view: the int16 remainder of a bf16 view whose fp32 master it completes
    // (ABI 1.8 param_remainders; null: none); see Optimizer::takes_param_remainders.
    std::vector<DLTensor*> remainders;
    // Empty, or one per view: the flat index of the view's first element within its whole
    // parameter (ABI 1.10 param_offsets: a distributed-optimizer shard's start).
    std::vector<int64_t> offsets;
  };
  std::unique_ptr<AbiParams> abi_params();

  void set_training(bool training);
  void zero_grad();
  // ABI 1.6: the gradients count as zero until the next backward writes them (see
  // mh_model_api.zero_grad_deferred); false when the plugin cannot.
  bool can_zero_grad_deferred() const;
  void zero_grad_deferred();
  Loss forward_backward(const std::vector<std::pair<std::string, at::Tensor>>& batch, double grad_scale);
  Loss forward_loss(const std::vector<std::pair<std::string, at::Tensor>>& batch);
  bool has_logits() const;
  at::Tensor logits(const at::Tensor& tokens);  // [b, s] int64 -> [b, s, V] float32 (a copy)
  // The whole model's training FLOPs per sample (extension mh.model.flops/1, ABI 1.4); nullopt
  // when the plugin does not report them.
  std::optional<double> train_flops_per_sample() const;
  const std::string& id() const { return id_; }

  // ---- host-owned parameter/gradient storage (ABI 1.1 bind_storage) ----
  bool can_bind_storage() const;
  // data[i] / grad[i] for the i-th parameter of params() (an undefined tensor keeps the
  // plugin's). The tensors must outlive the model. grad_ready(i) runs on the autograd thread
  // after parameter i's gradient of a backward is complete (may be empty).
  void bind_storage(const std::vector<at::Tensor>& data, const std::vector<at::Tensor>& grad,
                    std::function<void(size_t)> grad_ready);

  // ---- the parameter gate (ABI 1.9 set_param_gate) ----
  bool can_gate_params() const;
  // gate(first, count) runs on the forward's thread before the forward reads parameters
  // [first, first + count) (see mh_model_api.set_param_gate); an empty function clears it.
  void set_param_gate(std::function<void(size_t, size_t)> gate);

  // ---- one pipeline stage (extension mh.model.pipeline/1) ----
  bool has_pipeline() const;
  struct StageIO {
    std::vector<int64_t> shape;  // the activation between stages for one micro-batch
    at::ScalarType dtype = at::kFloat;
  };
  StageIO stage_io(int64_t micro_batch_size) const;
  // A micro-batch in flight: owns the plugin's autograd state until backward or destruction.
  class InFlight {
   public:
    InFlight() = default;
    InFlight(Model* model, mh_pipeline_microbatch* mb) : model_(model), mb_(mb) {}
    InFlight(InFlight&& o) noexcept : model_(o.model_), mb_(o.mb_) { o.mb_ = nullptr; }
    InFlight& operator=(InFlight&& o) noexcept;
    InFlight(const InFlight&) = delete;
    InFlight& operator=(const InFlight&) = delete;
    ~InFlight();
    mh_pipeline_microbatch* release() {
      auto* m = mb_;
      mb_ = nullptr;
      return m;
    }

   private:
    Model* model_ = nullptr;
    mh_pipeline_microbatch* mb_ = nullptr;
  };
  struct StageForward {
    at::Tensor activation;  // non-last stage: this stage's output (to send on)
    Loss loss;              // last stage
    InFlight state;         // with_grad: what backward_stage consumes
  };
  // input: the previous stage's output, undefined on the first stage.
  StageForward forward_stage(const std::vector<std::pair<std::string, at::Tensor>>& batch, const at::Tensor& input,
                             bool with_grad);
  // output_grad undefined on the last stage. Returns the input's gradient (undefined on the
  // first stage).
  at::Tensor backward_stage(InFlight state, const at::Tensor& output_grad, double grad_scale);

 private:
  const mh_model_pipeline_ext* pipeline_ext() const;
  mh_model* m_;
  const mh_model_api* api_;
  std::string id_;
  std::shared_ptr<void> config_tree_;
  std::function<void(size_t)> grad_ready_;
  std::function<void(size_t, size_t)> param_gate_;
  std::exception_ptr gate_error_;  // what the gate threw during a forward (rethrown after it)
  void rethrow_gate_error();
};

class Optimizer {
 public:
  Optimizer(mh_optimizer* o, const mh_optimizer_api* api, std::string id, std::shared_ptr<void> config_tree);
  ~Optimizer();
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  void setup(const Model::AbiParams& params);
  // grad_scale multiplies every gradient first (clipping x 1/loss scale); != 1 needs applies_grad_scale().
  // grad_scale_tensor: undefined, or a float32 [1] on the device multiplying the gradients too (the
  // clipping coefficient, never read on the host); defined needs applies_grad_scale_tensor().
  // range: (first, count) updates only params[first, first + count) (ABI 1.9, a step split into
  // consecutive ranges ending at the last parameter); count 0: all of them.
  void step(const Model::AbiParams& params, double lr, double weight_decay, int64_t iteration,
            double grad_scale = 1.0, const at::Tensor& grad_scale_tensor = {},
            std::pair<size_t, size_t> range = {0, 0});
  // The plugin was built against ABI >= 1.2 and honours mh_optimizer_step_args.grad_scale.
  bool applies_grad_scale() const;
  // ABI >= 1.5: step writes params.model_copies itself (mh_optimizer_step_args.model_copies), so
  // the host skips its own master -> model copy.
  bool writes_model_copies() const;
  // ABI >= 1.7: step honours mh_optimizer_step_args.grad_scale_tensor.
  bool applies_grad_scale_tensor() const;
  // ABI >= 1.8: step updates bf16 params with int16 remainders in place of fp32 masters
  // (mh_optimizer_step_args.param_remainders).
  bool takes_param_remainders() const;
  // ABI >= 1.9: step updates a range of the parameters (mh_optimizer_step_args.first_param).
  bool updates_param_ranges() const;
  // Every state tensor as a live torch view, or a float32 copy whose contents the plugin stores
  // back (fp16 / fp8 moments): fn(name, tensor).
  void visit_state(const Model::AbiParams& params, const std::function<void(const std::string&, at::Tensor)>& fn);
  // The bytes the state holds as stored (extension "mh.optimizer.state_bytes/1"); nullopt for a
  // plugin without it (then the visited tensors' sizes are the state's).
  std::optional<int64_t> state_bytes() const;
  const std::string& id() const { return id_; }

 private:
  mh_optimizer* o_;
  const mh_optimizer_api* api_;
  std::string id_;
  std::shared_ptr<void> config_tree_;
};

struct CheckpointEntry {
  std::string name;
  bool is_blob = false;
  at::ScalarType dtype = at::kFloat;
  std::vector<int64_t> shape;
  uint64_t nbytes = 0;
};

class CheckpointFormat {
 public:
  CheckpointFormat(mh_checkpoint_format* c, const mh_checkpoint_api* api, std::string id,
                   std::shared_ptr<void> config_tree);
  ~CheckpointFormat();
  CheckpointFormat(const CheckpointFormat&) = delete;
  CheckpointFormat& operator=(const CheckpointFormat&) = delete;

  class Writer {
   public:
    Writer(mh_checkpoint_writer* w, const mh_checkpoint_api* api, std::string dir);
    ~Writer();  // aborts unless committed
    void tensor(const std::string& name, const at::Tensor& t);  // copied to CPU contiguous first
    void blob(const std::string& name, const std::string& bytes);
    void commit();

   private:
    mh_checkpoint_writer* w_;
    const mh_checkpoint_api* api_;
    std::string dir_;
  };
  class Reader {
   public:
    Reader(mh_checkpoint_reader* r, const mh_checkpoint_api* api, std::string dir);
    ~Reader();
    std::vector<CheckpointEntry> list();
    void tensor_into(const std::string& name, at::Tensor dst);  // dst may live on any device
    std::string blob(const std::string& name);

   private:
    mh_checkpoint_reader* r_;
    const mh_checkpoint_api* api_;
    std::string dir_;
  };
  std::unique_ptr<Writer> open_writer(const std::string& dir);
  std::unique_ptr<Reader> open_reader(const std::string& dir);
  const std::string& id() const { return id_; }

 private:
  mh_checkpoint_format* c_;
  const mh_checkpoint_api* api_;
  std::string id_;
  std::shared_ptr<void> config_tree_;
};

struct ModelOptions {
  DLDevice device{kDLCPU, 0};
  DLDataType param_dtype{kDLFloat, 32, 1};
  int64_t padded_vocab_size = 0;
  // The pipeline stage (ABI 1.1); num_stage_layers < 0 = the whole model.
  int32_t layer_offset = 0;
  int32_t num_stage_layers = -1;
  uint32_t stage_flags = MH_STAGE_FIRST | MH_STAGE_LAST;
  uint32_t parallel_flags = 0;  // MH_PARALLEL_*
};

std::unique_ptr<Model> create_model(const PluginRegistry& reg, const std::string& id, const ConfigSection& cfg,
                                    const ModelOptions& opts, const std::vector<std::string>& host_keys = {});
std::unique_ptr<Optimizer> create_optimizer(const PluginRegistry& reg, const std::string& id,
                                            const ConfigSection& cfg, DLDevice device,
                                            const std::vector<std::string>& host_keys = {});
std::unique_ptr<CheckpointFormat> create_checkpoint_format(const PluginRegistry& reg, const std::string& id,
                                                           const ConfigSection& cfg,
                                                           const std::vector<std::string>& host_keys = {});

}  // namespace megahost::core
