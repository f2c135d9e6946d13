// The "gpt" model plugin: the mh.model/1 factory and instance table over GptModel.
// Every entry point catches (MH_SDK_TRY / MH_SDK_CATCH): no exception crosses the ABI.
#include <ATen/ATen.h>
#include <ATen/DLConvertor.h>
#include <ATen/core/grad_mode.h>

#include <cstddef>
#include <cstring>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "gpt_config.h"
#include "gpt_model.h"
#include "megahost/megahost.h"
#include "megahost/sdk/error.h"
#include "megahost/sdk/host.h"
#include "megahost/sdk/model_pipeline.h"
#include "megahost/sdk/model_plugin.h"
#include "megahost/sdk/nn/attention.h"
#include "megahost/sdk/parallel/loss.h"
#include "megahost/sdk/plugin.h"
#include "megahost/sdk/torch_interop.h"

namespace megahost::gpt {
namespace {

using Instance = sdk::ModelInstance<GptModel>;

// The entry points that only touch the parameters come from sdk::ModelTable, the pipeline
// extension from sdk::PipelineTable (GptPipeline below); forward is gpt's own (loss readback
// queued before backward).
struct GptPlugin {
  using Model = GptModel;
  static constexpr const char* kName = "gpt";
  static double train_flops_per_sample(const GptModel& m) { return gpt::train_flops_per_sample(m.config()); }
};
using Table = sdk::ModelTable<GptPlugin>;

Instance* as_instance(mh_model* m) { return reinterpret_cast<Instance*>(m); }

// The micro-batch, checked: tokens/labels [b, s] int64, loss_mask [b, s] float32, position_ids optional.
struct Batch {
  at::Tensor tokens, labels, loss_mask, position_ids;
};

const char* dtype_name(at::ScalarType t) { return c10::toString(t); }

at::Tensor batch_tensor(const mh_named_tensor* batch, size_t n, const char* name, bool required) {
  for (size_t i = 0; i < n; ++i)
    if (batch[i].name != nullptr && std::strcmp(batch[i].name, name) == 0) return sdk::to_torch(batch[i].tensor);
  MH_CHECK(!required, MH_ERR_INVALID_ARG, "gpt: the batch has no tensor named '", name,
           "'\nHINT: a GPT batch holds tokens, labels, loss_mask [b, s] and optionally position_ids");
  return {};
}

Batch read_batch(const GptModel& model, const mh_named_tensor* batch, size_t n, bool with_labels) {
  MH_CHECK(batch != nullptr || n == 0, MH_ERR_INVALID_ARG, "gpt: batch is NULL with n = ", n);
  Batch b;
  b.tokens = batch_tensor(batch, n, "tokens", true);
  MH_CHECK(b.tokens.dim() == 2 && b.tokens.scalar_type() == at::kLong, MH_ERR_INVALID_ARG,
           "gpt: tokens must be [b, s] int64, got ", b.tokens.sizes(), " ", dtype_name(b.tokens.scalar_type()),
           "\nHINT: the data pipeline must widen token ids to int64");
  const auto want = b.tokens.sizes();
  auto check_like_tokens = [&](const at::Tensor& t, const char* name, at::ScalarType dtype) {
    MH_CHECK(t.sizes() == want && t.scalar_type() == dtype, MH_ERR_INVALID_ARG, "gpt: ", name, " must be ", want,
             " ", dtype_name(dtype), " like tokens, got ", t.sizes(), " ", dtype_name(t.scalar_type()),
             "\nHINT: every batch tensor is [micro_batch_size, seq_length]");
  };
  if (with_labels) {
    b.labels = batch_tensor(batch, n, "labels", true);
    b.loss_mask = batch_tensor(batch, n, "loss_mask", true);
    check_like_tokens(b.labels, "labels", at::kLong);
    check_like_tokens(b.loss_mask, "loss_mask", at::kFloat);
  }
  b.position_ids = batch_tensor(batch, n, "position_ids", false);
  if (b.position_ids.defined()) check_like_tokens(b.position_ids, "position_ids", at::kLong);
  const at::Device dev = model.params.device();
  MH_CHECK(b.tokens.device() == dev, MH_ERR_INVALID_ARG, "gpt: the batch is on ", b.tokens.device().str(),
           " but the model is on ", dev.str(), "\nHINT: the host must move batches to the model's device");
  return b;
}

// sum(CE * loss_mask) on this rank (autograd), and the sums over the context-parallel group that
// the call reports; the 0-d tensors stay on device.
sdk::parallel::MaskedLoss masked_loss(const GptModel& model, const at::Tensor& token_loss,
                                      const at::Tensor& loss_mask) {
  return sdk::parallel::masked_loss(token_loss, loss_mask, model.config().transformer.parallel.get());
}

void check_loss_out(const mh_loss* out) {
  MH_CHECK(out == nullptr || out->struct_size >= sizeof(mh_loss), MH_ERR_INVALID_ARG, "gpt: mh_loss.struct_size = ",
           out ? out->struct_size : 0, " is smaller than ", sizeof(mh_loss), "\nHINT: set struct_size = sizeof(mh_loss)");
}

void write_loss(mh_loss* out, const sdk::parallel::LossReadback& readback) {
  if (out == nullptr) return;
  std::tie(out->loss_sum, out->num_tokens) = readback.read();
}

// ---- instance table ----

mh_error* MH_ABI gpt_forward_backward(mh_model* m, const mh_named_tensor* batch, size_t n, double grad_scale,
                                      mh_stream /*stream*/, mh_loss* out) {
  Instance* self = as_instance(m);
  MH_SDK_TRY {
    at::AutoGradMode grad_on(true);  // grad mode is thread-local: the caller's thread may have it off
    check_loss_out(out);
    GptModel& model = *self->model;
    const Batch b = read_batch(model, batch, n, /*with_labels=*/true);
    sdk::nn::MicroBatchStep step;
    // inputs: tokens, labels, loss_mask, position_ids (undefined when absent); inside a CUDA
    // graph these are the recorded copies.
    step.forward = [&](const std::vector<at::Tensor>& in) {
      sdk::nn::ParamRegistry::ForwardScope gate(model.params);  // names parameters before use
      const auto loss = masked_loss(model, model.token_loss(in[0], in[1], in[3], self->training), in[2]);
      gate.end();
      return sdk::nn::step_loss(loss);
    };
    step.backward = sdk::model_backward(model.params);
    // local_sum / global_num_tokens (all-masked: nothing instead of 0/0); the host's sum over cp
    // makes it the whole sequence's mean. The loss is read back without waiting for backward.
    const std::vector<at::Tensor> inputs = {b.tokens, b.labels, b.loss_mask, b.position_ids};
    const auto loss = sdk::run_micro_batch(*self, "gpt", step, inputs, grad_scale);
    if (out != nullptr) std::tie(out->loss_sum, out->num_tokens) = loss;
    return nullptr;
  }
  MH_SDK_CATCH(self->host)
}

mh_error* MH_ABI gpt_forward_loss(mh_model* m, const mh_named_tensor* batch, size_t n, mh_stream /*stream*/,
                                  mh_loss* out) {
  Instance* self = as_instance(m);
  MH_SDK_TRY {
    at::NoGradGuard no_grad;
    check_loss_out(out);
    sdk::nn::ParamRegistry::ForwardScope gate(self->model->params);
    const Batch b = read_batch(*self->model, batch, n, /*with_labels=*/true);
    const auto loss = masked_loss(*self->model, self->model->token_loss(b.tokens, b.labels, b.position_ids,
                                                                        self->training), b.loss_mask);
    write_loss(out, sdk::parallel::start_loss_readback(loss));
    return nullptr;
  }
  MH_SDK_CATCH(self->host)
}

mh_error* MH_ABI gpt_logits(mh_model* m, const DLTensor* tokens, mh_stream /*stream*/, mh_tensor_visit_fn on_logits,
                            void* ctx) {
  Instance* self = as_instance(m);
  MH_SDK_TRY {
    MH_CHECK(on_logits != nullptr, MH_ERR_INVALID_ARG, "gpt: logits got a NULL callback");
    const auto& parallel = self->model->config().transformer.parallel;
    MH_CHECK(parallel == nullptr || parallel->single(), MH_ERR_UNSUPPORTED,
             "gpt: the logits extension (generation) runs on one process; this model is split with tensor parallel "
             "size ", parallel->tp.size(), " and context parallel size ", parallel->cp.size(),
             "\nHINT: generate with tensor_model_parallel_size = 1 and context_parallel_size = 1");
    at::NoGradGuard no_grad;
    sdk::nn::ParamRegistry::ForwardScope gate(self->model->params);
    mh_named_tensor batch{"tokens", const_cast<DLTensor*>(tokens)};
    const Batch b = read_batch(*self->model, &batch, 1, /*with_labels=*/false);
    // [s, b, V] -> [b, s, V] float32, contiguous for the borrowed view
    const at::Tensor logits = self->model->logits_sbv(b.tokens, at::Tensor(), self->training)
                                  .transpose(0, 1)
                                  .to(at::kFloat)
                                  .contiguous();
    sdk::DLView view(logits);
    const mh_named_tensor named{"logits", view.get()};
    return on_logits(ctx, &named);
  }
  MH_SDK_CATCH(self->host)
}

const mh_model_logits_ext kLogitsExt = {MH_TABLE_HEADER(mh_model_logits_ext), gpt_logits};

// ---- extension mh.model.pipeline/1: this instance's stage (sdk/model_pipeline.h) ----

Batch read_stage_batch(const GptModel& model, const mh_named_tensor* batch, size_t n) {
  return read_batch(model, batch, n, /*with_labels=*/model.stage().last);  // labels: the last stage's
}

std::vector<int64_t> stage_io_shape(const GptModel& model, int64_t micro_batch_size) {
  const GptConfig& cfg = model.config();
  // [s / cp (/ tp under sequence parallelism), b, h] between stages: what this rank's decoder
  // layers see.
  int64_t s = cfg.seq_length;
  if (const auto& par = cfg.transformer.parallel) {
    s /= par->cp.size();
    if (par->sequence_parallel) s /= par->tp.size();
  }
  return {s, micro_batch_size, cfg.transformer.hidden_size};
}

// input [s, b, h] (undefined on the first stage) -> this stage's layers' output [s, b, h]
at::Tensor stage_hidden(const Instance& self, const Batch& b, const at::Tensor& input) {
  const GptModel& model = *self.model;
  const at::Tensor h = model.stage().first ? model.embed(b.tokens, b.position_ids, self.training) : input;
  return model.decode(h, b.tokens.size(1), self.training);
}

at::Tensor stage_loss(const Instance& self, const Batch& b, const at::Tensor& hidden, mh_loss* out) {
  const GptModel& model = *self.model;
  const auto loss = masked_loss(model, model.loss_from_hidden(hidden, b.labels), b.loss_mask);
  write_loss(out, sdk::parallel::start_loss_readback(loss));
  return loss.objective();  // local_sum / global_num_tokens; all-masked: nothing
}

struct GptPipeline : GptPlugin {
  static constexpr auto read_stage_batch = gpt::read_stage_batch;
  static constexpr auto stage_io_shape = gpt::stage_io_shape;
  static constexpr auto stage_hidden = gpt::stage_hidden;
  static constexpr auto stage_loss = gpt::stage_loss;
};

const void* MH_ABI gpt_get_extension(const mh_model* /*m*/, const char* id) {
  if (id != nullptr && std::strcmp(id, MH_EXT_MODEL_LOGITS) == 0) return &kLogitsExt;
  if (id != nullptr && std::strcmp(id, MH_EXT_MODEL_PIPELINE) == 0) return &sdk::PipelineTable<GptPipeline>::ext();
  if (id != nullptr && std::strcmp(id, MH_EXT_MODEL_FLOPS) == 0) return &sdk::FlopsExtension<GptPlugin>::ext();
  return nullptr;
}

const mh_model_api kModelApi = {MH_TABLE_HEADER(mh_model_api), Table::destroy,    Table::visit_params,
                                Table::set_training,            Table::zero_grad,  gpt_forward_backward,
                                gpt_forward_loss,               gpt_get_extension, Table::bind_storage,
                                Table::zero_grad_deferred,      Table::set_param_gate};

// ---- factory ----

const char* const kAliases[] = {"GPTModel", nullptr};

const mh_plugin_descriptor& descriptor() {
  static const mh_plugin_descriptor d = {
      sizeof(mh_plugin_descriptor),
      "gpt",
      "GPT (Megatron-Core GPTModel)",
      "megahost",
      "0.1.0",
      "decoder-only transformer LM: learned/rope positions, LayerNorm/RMSNorm, GeLU/SwiGLU, grouped-query attention",
      kAliases,
      config_schema_json()};
  return d;
}

uint32_t MH_ABI gpt_count(void) { return 1; }

const mh_plugin_descriptor* MH_ABI gpt_descriptor(uint32_t i) { return i == 0 ? &descriptor() : nullptr; }

mh_error* MH_ABI gpt_create(const char* id, const mh_host* host, const mh_model_create_args* args, mh_model** out,
                            const mh_model_api** out_api) {
  MH_SDK_TRY {
    const mh_plugin_descriptor* descs[] = {&descriptor()};
    MH_CHECK(id != nullptr && sdk::find_descriptor(descs, 1, id) == 0, MH_ERR_NOT_FOUND, "gpt: unknown model id '",
             id ? id : "(null)", "'\nHINT: this library provides \"gpt\" (alias \"GPTModel\")");
    MH_CHECK(args != nullptr && out != nullptr && out_api != nullptr, MH_ERR_INVALID_ARG,
             "gpt: create got a NULL argument");
    // ABI 1.0 hosts fill the fields up to padded_vocab_size and want the whole model.
    constexpr size_t kSize10 = offsetof(mh_model_create_args, layer_offset);
    MH_CHECK(args->struct_size >= kSize10, MH_ERR_INVALID_ARG, "gpt: mh_model_create_args.struct_size = ",
             args->struct_size, " is smaller than ABI 1.0's ", kSize10,
             "\nHINT: the host's headers are older than the plugin's");
    const GptStage stage = sdk::pipeline_stage(args);
    const sdk::Config cfg(host, args->config);
    GptConfig config = parse_config(cfg, args->padded_vocab_size);
    // Tensor / sequence / context parallelism happen inside the SDK's blocks (1.0 hosts: none).
    const bool has_parallel_flags =
        args->struct_size >= offsetof(mh_model_create_args, parallel_flags) + sizeof(args->parallel_flags);
    config.transformer.parallel =
        sdk::parallel::ParallelContext::from_host(host, has_parallel_flags ? args->parallel_flags : 0u);
    check_parallel(cfg, config);
    const at::Device device = sdk::to_torch_device(args->device);
    sdk::nn::check_cuda_graph(cfg, config.cuda_graph, device, stage.whole_model(), config.transformer.parallel.get());
    const at::ScalarType dtype = sdk::to_scalar_type(args->param_dtype);
    MH_CHECK(at::isFloatingType(dtype), MH_ERR_INVALID_ARG, "gpt: param_dtype ", c10::toString(dtype),
             " is not a floating type\nHINT: use float32 (bf16/fp16 mixed precision keeps fp32 masters in the core)");
    MH_CHECK(sdk::nn::select_attention_backend(config.attention_backend), MH_ERR_INVALID_ARG,
             "gpt: unknown attention_backend '", config.attention_backend, "'");
    const auto& rng = sdk::service<mh_rng_service>(host, MH_SERVICE_RNG);
    const uint64_t init_seed = rng.derive_seed(host, "model.init", 0, MH_SEED_SAME_ON_ALL_RANKS);

    auto inst = std::make_unique<Instance>();
    inst->host = host;
    inst->name = args->instance_name != nullptr ? args->instance_name : "model";
    inst->model = std::make_unique<GptModel>(config, device, dtype, init_seed, stage);
    if (config.cuda_graph.full_iteration)
      inst->graphs = std::make_unique<sdk::nn::FullIterationGraphs>(config.cuda_graph.warmup_steps);
    const auto& t = config.transformer;
    sdk::log(host, MH_LOG_INFO, inst->name.c_str(), "gpt: ", t.num_layers, " layers, hidden ", t.hidden_size,
             ", heads ", t.num_attention_heads, " (groups ", t.num_query_groups, "), ffn ", t.ffn_hidden_size,
             ", vocab ", config.padded_vocab_size, ", ", inst->model->params.numel(), " parameters on ", device.str());
    *out = reinterpret_cast<mh_model*>(inst.release());
    *out_api = &kModelApi;
    return nullptr;
  }
  MH_SDK_CATCH(host)
}

const mh_model_factory kFactory = {MH_TABLE_HEADER(mh_model_factory), gpt_count, gpt_descriptor, gpt_create};

const void* get_factory(const char* id) {
  return std::strcmp(id, MH_FACTORY_MODEL) == 0 ? &kFactory : nullptr;
}

}  // namespace
}  // namespace megahost::gpt

MH_SDK_PLUGIN_ENTRY(megahost::gpt::get_factory)
