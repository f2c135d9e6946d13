// The mh.model.pipeline/1 extension written once, for every model that splits into pipeline
// stages the way Megatron splits a transformer: the first stage embeds the batch, every stage
// runs its share of the layers, the last one computes the loss. Between stages travels one
// activation tensor (the hidden states); the batch itself is given to every stage, so a stage
// reads from it what it needs (BERT: the padding mask on every stage, labels on the last).
//
// A plugin adds to its sdk::ModelTable traits (model_plugin.h):
//
//   struct BertPlugin {
//     using Model = BertModel;                   // Model::stage() -> const sdk::PipelineStage&
//     static constexpr const char* kName = "bert";
//     // Batch read_stage_batch(const Model&, const mh_named_tensor*, size_t n): checked tensors
//     // this stage needs; Batch has `tokens` [b, s] (the micro-batch size is tokens.size(0))
//     static constexpr auto read_stage_batch = ...;
//     // std::vector<int64_t> stage_io_shape(const Model&, int64_t micro_batch_size)
//     static constexpr auto stage_io_shape = ...;
//     // at::Tensor stage_hidden(const Instance&, const Batch&, const at::Tensor& input): the
//     // first stage gets an undefined input and embeds; then this stage's layers
//     static constexpr auto stage_hidden = ...;
//     // at::Tensor stage_loss(const Instance&, const Batch&, const at::Tensor& hidden, mh_loss* out):
//     // the last stage's objective (autograd) from its layers' output; writes *out when not NULL
//     static constexpr auto stage_loss = ...;
//   };
//   get_extension: if id is MH_EXT_MODEL_PIPELINE return &sdk::PipelineTable<BertPlugin>::ext();
//
// Tied word embeddings: a last stage that is not also the first creates its own copy of the
// word embeddings under the same name (same seeded init, ParamRegistry draws by name) and flags
// it MH_PARAM_SHARED_EMBEDDING; the host sums both copies' gradients over the "embedding" group
// (Megatron's _allreduce_embedding_grads), so the copies stay equal.
#pragma once

#include <ATen/ATen.h>
#include <ATen/DLConvertor.h>
#include <ATen/core/grad_mode.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "megahost/megahost.h"
#include "megahost/sdk/error.h"
#include "megahost/sdk/model_plugin.h"
#include "megahost/sdk/torch_interop.h"

namespace megahost::sdk {

// The pipeline stage an instance holds (mh_model_create_args' stage fields).
struct PipelineStage {
  int64_t layer_offset = 0;  // first GLOBAL layer held (parameter names keep the global index)
  int64_t num_layers = -1;   // < 0: all from layer_offset on
  bool first = true, last = true;

  bool whole_model() const { return first && last; }

  // num_layers resolved against the model's; throws when the stage lies outside it.
  PipelineStage resolved(const char* plugin, int64_t model_layers) const {
    PipelineStage s = *this;
    if (s.num_layers < 0) s.num_layers = model_layers - s.layer_offset;
    MH_CHECK(s.layer_offset >= 0 && s.num_layers >= 0 && s.layer_offset + s.num_layers <= model_layers,
             MH_ERR_INVALID_ARG, plugin, ": pipeline stage layers [", s.layer_offset, ", ",
             s.layer_offset + s.num_layers, ") are outside the model's ", model_layers,
             " layers\nHINT: the host's stage assignment must follow [model] num_layers");
    return s;
  }
};

// The stage create asks for: the whole model when the host sent none (ABI 1.0 hosts, or an
// all-zero, zero-initialised struct).
inline PipelineStage pipeline_stage(const mh_model_create_args* args) {
  PipelineStage stage;
  const bool has_stage = args->struct_size >= offsetof(mh_model_create_args, stage_flags) + sizeof(args->stage_flags);
  if (has_stage && (args->num_stage_layers != 0 || args->stage_flags != 0 || args->layer_offset != 0)) {
    stage.layer_offset = args->layer_offset;
    stage.num_layers = args->num_stage_layers;
    stage.first = (args->stage_flags & MH_STAGE_FIRST) != 0;
    stage.last = (args->stage_flags & MH_STAGE_LAST) != 0;
  }
  return stage;
}

// A copy of the borrowed batch that the micro-batch's autograd graph may keep (embedding and
// cross-entropy backward hold the token / label tensors past the forward call).
class OwnedBatch {
 public:
  OwnedBatch(const mh_named_tensor* batch, size_t n) {
    names_.reserve(n);
    tensors_.reserve(n);
    views_.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      names_.emplace_back(batch[i].name != nullptr ? batch[i].name : "");
      tensors_.push_back(to_torch(batch[i].tensor).clone());
      views_.push_back(std::make_unique<DLView>(tensors_.back()));
    }
    for (size_t i = 0; i < n; ++i) named_.push_back({names_[i].c_str(), views_[i]->get()});
  }
  const mh_named_tensor* data() const { return named_.data(); }
  size_t size() const { return named_.size(); }

 private:
  std::vector<std::string> names_;
  std::vector<at::Tensor> tensors_;
  std::vector<std::unique_ptr<DLView>> views_;
  std::vector<mh_named_tensor> named_;
};

template <class Plugin>
struct PipelineTable {
  using Model = typename Plugin::Model;
  using Instance = ModelInstance<Model>;

  // What a stage's backward needs of one micro-batch (mh_pipeline_microbatch).
  struct MicroBatch {
    std::unique_ptr<OwnedBatch> batch;  // the tensors the graph may hold
    at::Tensor input;                   // not the first stage: the received activation, a leaf
    at::Tensor output;                  // not the last stage: this stage's output with its graph
    at::Tensor loss;                    // the last stage: the objective, 0-d
  };

  static Instance* self(mh_model* m) { return reinterpret_cast<Instance*>(m); }

  static mh_error* MH_ABI stage_io(const mh_model* m, int64_t micro_batch_size, int64_t* shape, int32_t* ndim,
                                   DLDataType* dtype) {
    const Instance* s = reinterpret_cast<const Instance*>(m);
    MH_SDK_TRY {
      MH_CHECK(shape != nullptr && ndim != nullptr && dtype != nullptr, MH_ERR_INVALID_ARG, Plugin::kName,
               ": stage_io got a NULL output");
      const std::vector<int64_t> io = Plugin::stage_io_shape(*s->model, micro_batch_size);
      MH_CHECK(!io.empty() && io.size() <= 8, MH_ERR_INTERNAL, Plugin::kName, ": stage_io_shape has ", io.size(),
               " dims (1 to 8 cross the ABI)");
      for (size_t i = 0; i < io.size(); ++i) shape[i] = io[i];
      *ndim = static_cast<int32_t>(io.size());
      *dtype = to_dl_dtype(s->model->params.dtype());
      return nullptr;
    }
    MH_SDK_CATCH(s->host)
  }

  static mh_error* MH_ABI forward(mh_model* m, const mh_named_tensor* batch, size_t n, const DLTensor* input,
                                  bool with_grad, mh_stream /*stream*/, DLManagedTensor** out_activation,
                                  mh_loss* out_loss, mh_pipeline_microbatch** out_mb) {
    Instance* s = self(m);
    MH_SDK_TRY {
      const Model& model = *s->model;
      const PipelineStage& stage = model.stage();
      check_loss_out(Plugin::kName, out_loss);
      MH_CHECK(stage.last || out_activation != nullptr, MH_ERR_INVALID_ARG, Plugin::kName,
               ": pipeline forward of a non-last stage needs out_activation");
      MH_CHECK(!with_grad || out_mb != nullptr, MH_ERR_INVALID_ARG, Plugin::kName,
               ": pipeline forward with_grad needs out_mb");
      MH_CHECK(stage.first == (input == nullptr), MH_ERR_INVALID_ARG, Plugin::kName, ": pipeline forward of ",
               stage.first ? "the first stage got an input" : "a non-first stage got no input",
               "\nHINT: only stages after the first take the previous stage's activation");
      MH_CHECK(batch != nullptr || n == 0, MH_ERR_INVALID_ARG, Plugin::kName, ": batch is NULL with n = ", n);
      if (out_activation != nullptr) *out_activation = nullptr;
      if (out_mb != nullptr) *out_mb = nullptr;
      at::AutoGradMode grad_mode(with_grad);  // grad mode is thread-local
      auto mb = std::make_unique<MicroBatch>();
      if (with_grad) {  // the graph outlives this call but the batch is borrowed for it
        mb->batch = std::make_unique<OwnedBatch>(batch, n);
        batch = mb->batch->data();
      }
      const auto b = Plugin::read_stage_batch(model, batch, n);
      nn::ParamRegistry::ForwardScope gate(s->model->params);  // names parameters before use (ABI 1.9)
      at::Tensor in;
      if (!stage.first) {
        // Our own copy (the input is borrowed for this call only), a leaf whose grad we return.
        mb->input = to_torch(input).clone().requires_grad_(with_grad);
        const std::vector<int64_t> want = Plugin::stage_io_shape(model, b.tokens.size(0));
        MH_CHECK(mb->input.sizes() == at::IntArrayRef(want), MH_ERR_INVALID_ARG, Plugin::kName,
                 ": pipeline input is ", mb->input.sizes(), ", expected ", at::IntArrayRef(want),
                 "\nHINT: the host must send the shape stage_io reports");
        in = mb->input;
      }
      const at::Tensor hidden = Plugin::stage_hidden(*s, b, in);
      if (stage.last) {
        mb->loss = Plugin::stage_loss(*s, b, hidden, out_loss);
      } else {
        mb->output = hidden;
        *out_activation = at::toDLPack(hidden.detach());
      }
      if (with_grad) *out_mb = reinterpret_cast<mh_pipeline_microbatch*>(mb.release());
      return nullptr;
    }
    MH_SDK_CATCH(s->host)
  }

  static mh_error* MH_ABI backward(mh_model* m, mh_pipeline_microbatch* handle, const DLTensor* output_grad,
                                   double grad_scale, mh_stream /*stream*/, DLManagedTensor** out_input_grad) {
    Instance* s = self(m);
    std::unique_ptr<MicroBatch> mb(reinterpret_cast<MicroBatch*>(handle));  // consumed, also on error
    MH_SDK_TRY {
      const PipelineStage& stage = s->model->stage();
      MH_CHECK(mb != nullptr, MH_ERR_INVALID_ARG, Plugin::kName, ": pipeline backward got a NULL micro-batch");
      MH_CHECK(stage.first || out_input_grad != nullptr, MH_ERR_INVALID_ARG, Plugin::kName,
               ": pipeline backward of a non-first stage needs out_input_grad");
      if (out_input_grad != nullptr) *out_input_grad = nullptr;
      at::AutoGradMode grad_on(true);
      fused::DeferredColumnSums column_sums;  // the norms' and biases' last sums: one launch per shape
      if (stage.last) {
        (mb->loss * grad_scale).backward();
      } else {
        MH_CHECK(output_grad != nullptr, MH_ERR_INVALID_ARG, Plugin::kName,
                 ": pipeline backward of a non-last stage needs output_grad");
        const at::Tensor grad = to_torch(output_grad);
        MH_CHECK(grad.sizes() == mb->output.sizes(), MH_ERR_INVALID_ARG, Plugin::kName, ": output_grad is ",
                 grad.sizes(), " but the stage's output is ", mb->output.sizes(),
                 "\nHINT: the host must send the shape stage_io reports");
        mb->output.backward(grad);
      }
      column_sums.flush();
      s->model->params.finish_deferred_zero();  // a gradient this backward did not write is zero
      if (!stage.first) {
        const at::Tensor g = mb->input.grad().defined() ? mb->input.grad() : at::zeros_like(mb->input);
        *out_input_grad = at::toDLPack(g.detach());
      }
      return nullptr;
    }
    MH_SDK_CATCH(s->host)
  }

  static void MH_ABI microbatch_free(mh_model* /*m*/, mh_pipeline_microbatch* mb) {
    delete reinterpret_cast<MicroBatch*>(mb);
  }

  static const mh_model_pipeline_ext& ext() {
    static const mh_model_pipeline_ext table = {MH_TABLE_HEADER(mh_model_pipeline_ext), stage_io, forward, backward,
                                                microbatch_free};
    return table;
  }
};

}  // namespace megahost::sdk
