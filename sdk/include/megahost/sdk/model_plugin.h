// The ABI glue every mh.model/1 plugin repeats, written once: the instance behind mh_model*,
// the instance-table entry points that only touch the model's ParamRegistry, the loss-driven
// forward_backward / forward_loss, and the factory's create-argument checks.
//
// A plugin describes itself with a traits struct and takes the table from ModelTable:
//
//   struct BertPlugin {
//     using Model = BertModel;
//     static constexpr const char* kName = "bert";  // prefixes every error message
//     // Batch read_batch(const Model&, const mh_named_tensor* batch, size_t n): checked tensors
//     static constexpr auto read_batch = bert::read_batch;
//     // nn::StepLoss loss(const sdk::ModelInstance<Model>&, const Batch&): the objective with
//     // autograd and the reported (loss_sum, num_tokens), 0-d tensors on the device
//     static constexpr auto loss = bert::loss;
//     // std::vector<at::Tensor*> batch_fields(Batch&): every tensor of a batch, in a fixed order
//     // (a CUDA graph records copies of them and swaps them in)
//     static constexpr auto batch_fields = bert::batch_fields;
//   };
//   *out_api = &sdk::ModelTable<BertPlugin>::api();  // in create
//
// Member functions of a class template are only instantiated when used: a plugin with its own
// forward (gpt: loss readback, pipeline stages) takes the other entry points one by one and
// needs no Batch / read_batch / loss.
#pragma once

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "megahost/megahost.h"
#include "megahost/sdk/error.h"
#include "megahost/sdk/host.h"
#include "megahost/sdk/nn/attention.h"
#include "megahost/sdk/nn/cuda_graph.h"
#include "megahost/sdk/nn/fused.h"
#include "megahost/sdk/nn/params.h"
#include "megahost/sdk/parallel/loss.h"
#include "megahost/sdk/plugin.h"
#include "megahost/sdk/torch_interop.h"

namespace megahost::sdk {

// What mh_model* points at.
template <class Model>
struct ModelInstance {
  const mh_host* host = nullptr;
  std::string name;  // the recipe's instance name, for log lines
  std::unique_ptr<Model> model;
  bool training = true;  // set_training: dropout on / off
  std::unique_ptr<nn::FullIterationGraphs> graphs;  // cuda_graph_impl = full_iteration, else null
};

// Every model's backward of one micro-batch: the scaled objective's backward, the held column
// sums run after it, and the gradients it did not write zeroed.
inline std::function<void(const at::Tensor&)> model_backward(nn::ParamRegistry& params) {
  return [&params](const at::Tensor& scaled_objective) {
    fused::DeferredColumnSums column_sums;  // the norms' and biases' last sums: one launch per shape
    scaled_objective.backward();
    column_sums.flush();
    params.finish_deferred_zero();  // a gradient this backward did not write is zero
  };
}

// One micro-batch: replayed from a CUDA graph when the instance has graphs
// (cuda_graph_impl = full_iteration), else eagerly. Returns (loss_sum, num_tokens).
template <class Model>
std::pair<double, double> run_micro_batch(ModelInstance<Model>& s, const char* plugin, const nn::MicroBatchStep& step,
                                          const std::vector<at::Tensor>& inputs, double grad_scale) {
  if (s.graphs == nullptr) return nn::run_eager(step, inputs, grad_scale);
  const size_t before = s.graphs->recorded();
  const auto loss = s.graphs->run(s.model->params, step, inputs, s.training, grad_scale);
  if (s.graphs->recorded() > before)
    log(s.host, MH_LOG_INFO, s.name.c_str(), plugin, ": recorded a CUDA graph of the forward and backward for a ",
        inputs.front().sizes(), " micro-batch, the gradients ",
        s.graphs->last_recorded_accumulates() ? "added to" : "stored", " (", s.graphs->recorded(), " recorded)");
  return loss;
}

// mh_loss grew by appending: a caller's struct must hold at least this ABI's fields.
inline void check_loss_out(const char* plugin, const mh_loss* out) {
  MH_CHECK(out == nullptr || out->struct_size >= sizeof(mh_loss), MH_ERR_INVALID_ARG, plugin,
           ": mh_loss.struct_size is too small\nHINT: set struct_size = sizeof(mh_loss)");
}

template <class Plugin>
struct ModelTable {
  using Model = typename Plugin::Model;
  using Instance = ModelInstance<Model>;

  static Instance* self(mh_model* m) { return reinterpret_cast<Instance*>(m); }

  static void MH_ABI destroy(mh_model* m) { delete self(m); }

  static mh_error* MH_ABI visit_params(mh_model* m, mh_param_visit_fn fn, void* ctx) {
    Instance* s = self(m);
    MH_SDK_TRY {
      MH_CHECK(fn != nullptr, MH_ERR_INVALID_ARG, Plugin::kName, ": visit_params got a NULL visitor");
      return s->model->params.visit(fn, ctx);
    }
    MH_SDK_CATCH(s->host)
  }

  static mh_error* MH_ABI set_training(mh_model* m, bool training) {
    self(m)->training = training;
    return nullptr;
  }

  static mh_error* MH_ABI zero_grad(mh_model* m, mh_stream /*stream*/) {
    Instance* s = self(m);
    MH_SDK_TRY {
      s->model->params.zero_grad();
      return nullptr;
    }
    MH_SDK_CATCH(s->host)
  }

  // ABI 1.6: the gradients count as zero until the next backward writes them (no pass over them).
  static mh_error* MH_ABI zero_grad_deferred(mh_model* m, mh_stream /*stream*/) {
    Instance* s = self(m);
    MH_SDK_TRY {
      s->model->params.zero_grad_deferred();
      return nullptr;
    }
    MH_SDK_CATCH(s->host)
  }

  // Host-owned storage (Megatron-Core's contiguous buffers): the registry re-points every parameter.
  static mh_error* MH_ABI bind_storage(mh_model* m, const mh_param_binding* bindings, size_t n,
                                       mh_grad_ready_fn grad_ready, void* ctx) {
    Instance* s = self(m);
    MH_SDK_TRY {
      s->model->params.bind(bindings, n, grad_ready, ctx);
      return nullptr;
    }
    MH_SDK_CATCH(s->host)
  }

  static mh_error* MH_ABI forward_backward(mh_model* m, const mh_named_tensor* batch, size_t n, double grad_scale,
                                           mh_stream /*stream*/, mh_loss* out) {
    Instance* s = self(m);
    MH_SDK_TRY {
      at::AutoGradMode grad_on(true);  // grad mode is thread-local: the caller's thread may have it off
      check_loss_out(Plugin::kName, out);
      auto b = Plugin::read_batch(*s->model, batch, n);
      std::vector<at::Tensor> inputs;
      for (const at::Tensor* t : Plugin::batch_fields(b)) inputs.push_back(*t);
      nn::MicroBatchStep step;
      step.forward = [&](const std::vector<at::Tensor>& in) {  // inside a graph: the recorded copies
        auto local = b;
        const auto fields = Plugin::batch_fields(local);
        for (size_t i = 0; i < fields.size(); ++i) *fields[i] = in[i];
        nn::ParamRegistry::ForwardScope gate(s->model->params);  // names parameters before use (ABI 1.9)
        const nn::StepLoss loss = Plugin::loss(*s, local);
        gate.end();
        return loss;
      };
      step.backward = model_backward(s->model->params);
      const auto loss = run_micro_batch(*s, Plugin::kName, step, inputs, grad_scale);
      if (out != nullptr) std::tie(out->loss_sum, out->num_tokens) = loss;
      return nullptr;
    }
    MH_SDK_CATCH(s->host)
  }

  static mh_error* MH_ABI forward_loss(mh_model* m, const mh_named_tensor* batch, size_t n, mh_stream /*stream*/,
                                       mh_loss* out) {
    Instance* s = self(m);
    MH_SDK_TRY {
      at::NoGradGuard no_grad;
      check_loss_out(Plugin::kName, out);
      nn::ParamRegistry::ForwardScope gate(s->model->params);
      const nn::StepLoss loss = Plugin::loss(*s, Plugin::read_batch(*s->model, batch, n));
      if (out != nullptr)
        std::tie(out->loss_sum, out->num_tokens) = parallel::start_loss_readback(loss.loss_sum, loss.num_tokens).read();
      return nullptr;
    }
    MH_SDK_CATCH(s->host)
  }

  // ABI 1.9: the host's parameter gate; the SDK's forward scopes and transformer blocks call it.
  static mh_error* MH_ABI set_param_gate(mh_model* m, mh_param_gate_fn fn, void* ctx) {
    Instance* s = self(m);
    MH_SDK_TRY {
      s->model->params.set_gate(fn, ctx);
      return nullptr;
    }
    MH_SDK_CATCH(s->host)
  }

  static const void* MH_ABI no_extension(const mh_model* /*m*/, const char* /*id*/) { return nullptr; }

  // The whole table for a plugin whose forward is Plugin::loss.
  using GetExtensionFn = const void*(MH_ABI*)(const mh_model* m, const char* extension_id);
  static const mh_model_api& api(GetExtensionFn get_extension = no_extension) {
    static const mh_model_api table = {MH_TABLE_HEADER(mh_model_api), destroy,       visit_params,
                                       set_training,                  zero_grad,     forward_backward,
                                       forward_loss,                  get_extension, bind_storage,
                                       zero_grad_deferred,            set_param_gate};
    return table;
  }
};

// Extension mh.model.flops/1 (since ABI 1.4) from the traits' `double train_flops_per_sample(const
// Model&)`: the whole model's training FLOPs per sample, for the host's TFLOP/s line.
template <class Plugin>
struct FlopsExtension {
  using Instance = ModelInstance<typename Plugin::Model>;
  static mh_error* MH_ABI train_flops_per_sample(const mh_model* m, double* out) {
    const Instance* s = reinterpret_cast<const Instance*>(m);
    MH_SDK_TRY {
      MH_CHECK(out != nullptr, MH_ERR_INVALID_ARG, Plugin::kName, ": train_flops_per_sample got a NULL output");
      *out = Plugin::train_flops_per_sample(*s->model);
      return nullptr;
    }
    MH_SDK_CATCH(s->host)
  }
  static const mh_model_flops_ext& ext() {
    static const mh_model_flops_ext table = {MH_TABLE_HEADER(mh_model_flops_ext), train_flops_per_sample};
    return table;
  }
};

// ---- factory helpers ----

// The id, NULL and ABI-1.0-size checks at the top of every create. `desc` names the one model
// this library provides (its id and first alias go into the HINT).
inline void check_create_args(const char* plugin, const mh_plugin_descriptor& desc, const char* id,
                              const mh_model_create_args* args, const void* out, const void* out_api) {
  const mh_plugin_descriptor* descs[] = {&desc};
  const bool has_alias = desc.aliases != nullptr && desc.aliases[0] != nullptr;
  MH_CHECK(id != nullptr && find_descriptor(descs, 1, id) == 0, MH_ERR_NOT_FOUND, plugin, ": unknown model id '",
           id ? id : "(null)", "'\nHINT: this library provides \"", desc.id, "\"",
           has_alias ? str_cat(" (alias \"", desc.aliases[0], "\")") : std::string());
  MH_CHECK(args != nullptr && out != nullptr && out_api != nullptr, MH_ERR_INVALID_ARG, plugin,
           ": create got a NULL argument");
  constexpr size_t kSize10 = offsetof(mh_model_create_args, layer_offset);
  MH_CHECK(args->struct_size >= kSize10, MH_ERR_INVALID_ARG, plugin, ": mh_model_create_args.struct_size = ",
           args->struct_size, " is smaller than ABI 1.0's ", kSize10);
}

// For plugins without pipeline stages: accept only the whole model (an all-zero stage is a
// zero-initialised struct, ABI 1.0 hosts send none). `why` is appended to the error.
inline void require_whole_model(const char* plugin, const mh_model_create_args* args, const char* why = "") {
  const bool has_stage = args->struct_size >= offsetof(mh_model_create_args, stage_flags) + sizeof(args->stage_flags);
  if (!has_stage || (args->num_stage_layers == 0 && args->stage_flags == 0 && args->layer_offset == 0)) return;
  const bool whole = args->layer_offset == 0 && args->num_stage_layers < 0 &&
                     (args->stage_flags & (MH_STAGE_FIRST | MH_STAGE_LAST)) == (MH_STAGE_FIRST | MH_STAGE_LAST);
  MH_CHECK(whole, MH_ERR_UNSUPPORTED, plugin, ": pipeline stages are not supported by the ", plugin,
           " plugin (asked for layers from ", args->layer_offset, ", ", args->num_stage_layers, " of them)", why,
           "\nHINT: set [parallel] pipeline_model_parallel_size = 1 (tensor and data parallelism work)");
}

// The host's MH_PARALLEL_* flags (ABI 1.0 hosts: none).
inline uint32_t parallel_flags(const mh_model_create_args* args) {
  const bool has = args->struct_size >= offsetof(mh_model_create_args, parallel_flags) + sizeof(args->parallel_flags);
  return has ? args->parallel_flags : 0u;
}

// [model] attention_backend, checked and selected.
inline void select_attention_backend(const Config& cfg) {
  if (!nn::select_attention_backend(cfg.get_string("attention_backend", "auto")))
    throw cfg.error("attention_backend", "unknown attention_backend", "use auto, flash, cudnn, efficient or math");
}

// Where and how the parameters are made: device, a floating dtype, and the init seed every rank shares.
struct ModelPlacement {
  at::Device device;
  at::ScalarType dtype;
  uint64_t init_seed;
};

inline ModelPlacement model_placement(const char* plugin, const mh_host* host, const mh_model_create_args* args) {
  const at::Device device = to_torch_device(args->device);
  const at::ScalarType dtype = to_scalar_type(args->param_dtype);
  MH_CHECK(at::isFloatingType(dtype), MH_ERR_INVALID_ARG, plugin, ": param_dtype ", c10::toString(dtype),
           " is not a floating type\nHINT: use float32 (bf16/fp16 keep fp32 masters in the core)");
  const auto& rng = service<mh_rng_service>(host, MH_SERVICE_RNG);
  return {device, dtype, rng.derive_seed(host, "model.init", 0, MH_SEED_SAME_ON_ALL_RANKS)};
}

// A new instance (host, name) for create to fill with its model.
template <class Model>
std::unique_ptr<ModelInstance<Model>> new_instance(const mh_host* host, const mh_model_create_args* args) {
  auto inst = std::make_unique<ModelInstance<Model>>();
  inst->host = host;
  inst->name = args->instance_name != nullptr ? args->instance_name : "model";
  return inst;
}

}  // namespace megahost::sdk
