// The "bert" model plugin: the mh.model/1 factory and instance table over BertModel.
// Every entry point catches (MH_SDK_TRY / MH_SDK_CATCH): no exception crosses the ABI.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <cstddef>
#include <cstring>
#include <memory>
#include <string>

#include "bert_config.h"
#include "bert_model.h"
#include "megahost/megahost.h"
#include "megahost/sdk/error.h"
#include "megahost/sdk/host.h"
#include "megahost/sdk/nn/attention.h"
#include "megahost/sdk/parallel/loss.h"
#include "megahost/sdk/plugin.h"
#include "megahost/sdk/torch_interop.h"

namespace megahost::bert {
namespace {

struct Instance {
  const mh_host* host;
  std::string name;
  std::unique_ptr<BertModel> model;
  bool training = true;
};

Instance* as_instance(mh_model* m) { return reinterpret_cast<Instance*>(m); }

// Megatron's BERT batch (core/engine/bert_batches.h): tokens, token_types, labels, padding_mask
// [b, s] int64, loss_mask [b, s] float32, is_random [b] int64 (with the binary head).
struct Batch {
  at::Tensor tokens, token_types, labels, padding_mask, loss_mask, is_random;
};

at::Tensor batch_tensor(const mh_named_tensor* batch, size_t n, const char* name) {
  for (size_t i = 0; i < n; ++i)
    if (batch[i].name != nullptr && std::strcmp(batch[i].name, name) == 0) return sdk::to_torch(batch[i].tensor);
  throw sdk::Error(MH_ERR_INVALID_ARG,
                   sdk::str_cat("bert: the batch has no tensor named '", name,
                                "'\nHINT: a BERT batch holds tokens, token_types, labels, padding_mask, loss_mask "
                                "[b, s] and is_random [b]: train with [data] dataset = \"bert\" (Megatron's BERT "
                                "samples of a --split-sentences corpus)"));
}

Batch read_batch(const BertModel& model, const mh_named_tensor* batch, size_t n) {
  MH_CHECK(batch != nullptr || n == 0, MH_ERR_INVALID_ARG, "bert: batch is NULL with n = ", n);
  Batch b;
  b.tokens = batch_tensor(batch, n, "tokens");
  MH_CHECK(b.tokens.dim() == 2 && b.tokens.scalar_type() == at::kLong, MH_ERR_INVALID_ARG,
           "bert: tokens must be [b, s] int64, got ", b.tokens.sizes(), "\nHINT: the data pipeline widens ids to int64");
  auto like_tokens = [&](const char* name, at::ScalarType dtype) {
    at::Tensor t = batch_tensor(batch, n, name);
    MH_CHECK(t.sizes() == b.tokens.sizes() && t.scalar_type() == dtype, MH_ERR_INVALID_ARG, "bert: ", name,
             " must be ", b.tokens.sizes(), " ", c10::toString(dtype), " like tokens, got ", t.sizes(), " ",
             c10::toString(t.scalar_type()), "\nHINT: every [b, s] batch tensor is [micro_batch_size, seq_length]");
    return t;
  };
  b.token_types = like_tokens("token_types", at::kLong);
  b.labels = like_tokens("labels", at::kLong);
  b.padding_mask = like_tokens("padding_mask", at::kLong);
  b.loss_mask = like_tokens("loss_mask", at::kFloat);
  if (model.config().binary_head) {
    b.is_random = batch_tensor(batch, n, "is_random");
    MH_CHECK(b.is_random.dim() == 1 && b.is_random.size(0) == b.tokens.size(0) &&
                 b.is_random.scalar_type() == at::kLong,
             MH_ERR_INVALID_ARG, "bert: is_random must be [", b.tokens.size(0), "] int64, got ", b.is_random.sizes(),
             "\nHINT: the sentence-order label, one per sample");
  }
  MH_CHECK(b.tokens.device() == model.params.device(), MH_ERR_INVALID_ARG, "bert: the batch is on ",
           b.tokens.device().str(), " but the model is on ", model.params.device().str(),
           "\nHINT: the host must move batches to the model's device");
  return b;
}

// Megatron's loss_func: lm = sum(CE * loss_mask) / sum(loss_mask); + sop = mean CE over the batch.
// Returns the objective (with autograd) and writes the reported loss as loss_sum / num_tokens.
at::Tensor loss(const Instance& self, const Batch& b, mh_loss* out) {
  const BertModel& model = *self.model;
  const BertOutputs o = model.forward(b.tokens, b.token_types, b.padding_mask, b.labels, self.training);
  const auto mlm = sdk::parallel::masked_loss(o.mlm_loss, b.loss_mask, model.config().transformer.parallel.get());
  at::Tensor objective = mlm.objective();  // sum / max(masked tokens, 1)
  if (o.sop_logits.defined()) objective = objective + at::cross_entropy_loss(o.sop_logits.to(at::kFloat), b.is_random);
  if (out != nullptr) {
    const double tokens = std::max(1.0, mlm.global_num_tokens.item<double>());
    out->loss_sum = objective.item<double>() * tokens;
    out->num_tokens = tokens;
  }
  return objective;
}

void check_loss_out(const mh_loss* out) {
  MH_CHECK(out == nullptr || out->struct_size >= sizeof(mh_loss), MH_ERR_INVALID_ARG,
           "bert: mh_loss.struct_size is too small\nHINT: set struct_size = sizeof(mh_loss)");
}

// ---- instance table ----

void MH_ABI bert_destroy(mh_model* m) { delete as_instance(m); }

mh_error* MH_ABI bert_visit_params(mh_model* m, mh_param_visit_fn fn, void* ctx) {
  Instance* self = as_instance(m);
  MH_SDK_TRY {
    MH_CHECK(fn != nullptr, MH_ERR_INVALID_ARG, "bert: visit_params got a NULL visitor");
    return self->model->params.visit(fn, ctx);
  }
  MH_SDK_CATCH(self->host)
}

mh_error* MH_ABI bert_set_training(mh_model* m, bool training) {
  as_instance(m)->training = training;
  return nullptr;
}

mh_error* MH_ABI bert_zero_grad(mh_model* m, mh_stream /*stream*/) {
  Instance* self = as_instance(m);
  MH_SDK_TRY {
    self->model->params.zero_grad();
    return nullptr;
  }
  MH_SDK_CATCH(self->host)
}

mh_error* MH_ABI bert_forward_backward(mh_model* m, const mh_named_tensor* batch, size_t n, double grad_scale,
                                       mh_stream /*stream*/, mh_loss* out) {
  Instance* self = as_instance(m);
  MH_SDK_TRY {
    at::AutoGradMode grad_on(true);  // grad mode is thread-local
    check_loss_out(out);
    const Batch b = read_batch(*self->model, batch, n);
    (loss(*self, b, out) * grad_scale).backward();
    return nullptr;
  }
  MH_SDK_CATCH(self->host)
}

mh_error* MH_ABI bert_forward_loss(mh_model* m, const mh_named_tensor* batch, size_t n, mh_stream /*stream*/,
                                   mh_loss* out) {
  Instance* self = as_instance(m);
  MH_SDK_TRY {
    at::NoGradGuard no_grad;
    check_loss_out(out);
    loss(*self, read_batch(*self->model, batch, n), out);
    return nullptr;
  }
  MH_SDK_CATCH(self->host)
}

const void* MH_ABI bert_get_extension(const mh_model* /*m*/, const char* /*id*/) { return nullptr; }

mh_error* MH_ABI bert_bind_storage(mh_model* m, const mh_param_binding* bindings, size_t n,
                                   mh_grad_ready_fn grad_ready, void* ctx) {
  Instance* self = as_instance(m);
  MH_SDK_TRY {
    self->model->params.bind(bindings, n, grad_ready, ctx);
    return nullptr;
  }
  MH_SDK_CATCH(self->host)
}

const mh_model_api kModelApi = {MH_TABLE_HEADER(mh_model_api), bert_destroy,       bert_visit_params,
                                bert_set_training,              bert_zero_grad,     bert_forward_backward,
                                bert_forward_loss,              bert_get_extension, bert_bind_storage};

// ---- factory ----

const char* const kAliases[] = {"BertModel", nullptr};

const mh_plugin_descriptor& descriptor() {
  static const mh_plugin_descriptor d = {
      sizeof(mh_plugin_descriptor),
      "bert",
      "BERT (Megatron-Core BertModel)",
      "megahost",
      "0.1.0",
      "bidirectional encoder: word/position/token-type embeddings, padding mask, tied masked-LM head, "
      "sentence-order binary head",
      kAliases,
      config_schema_json()};
  return d;
}

uint32_t MH_ABI bert_count(void) { return 1; }

const mh_plugin_descriptor* MH_ABI bert_descriptor(uint32_t i) { return i == 0 ? &descriptor() : nullptr; }

mh_error* MH_ABI bert_create(const char* id, const mh_host* host, const mh_model_create_args* args, mh_model** out,
                             const mh_model_api** out_api) {
  MH_SDK_TRY {
    const mh_plugin_descriptor* descs[] = {&descriptor()};
    MH_CHECK(id != nullptr && sdk::find_descriptor(descs, 1, id) == 0, MH_ERR_NOT_FOUND, "bert: unknown model id '",
             id ? id : "(null)", "'\nHINT: this library provides \"bert\" (alias \"BertModel\")");
    MH_CHECK(args != nullptr && out != nullptr && out_api != nullptr, MH_ERR_INVALID_ARG,
             "bert: create got a NULL argument");
    constexpr size_t kSize10 = offsetof(mh_model_create_args, layer_offset);
    MH_CHECK(args->struct_size >= kSize10, MH_ERR_INVALID_ARG, "bert: mh_model_create_args.struct_size = ",
             args->struct_size, " is smaller than ABI 1.0's ", kSize10);
    // Pipeline stages: the whole model only (an all-zero stage is a zero-initialised struct).
    const bool has_stage = args->struct_size >= offsetof(mh_model_create_args, stage_flags) + sizeof(args->stage_flags);
    if (has_stage && (args->num_stage_layers != 0 || args->stage_flags != 0 || args->layer_offset != 0)) {
      const bool whole = args->layer_offset == 0 && args->num_stage_layers < 0 &&
                         (args->stage_flags & (MH_STAGE_FIRST | MH_STAGE_LAST)) == (MH_STAGE_FIRST | MH_STAGE_LAST);
      MH_CHECK(whole, MH_ERR_UNSUPPORTED, "bert: pipeline stages are not supported by the bert plugin (asked for "
               "layers from ", args->layer_offset, ", ", args->num_stage_layers, " of them)"
               "\nHINT: set [parallel] pipeline_model_parallel_size = 1 (tensor and data parallelism work)");
    }
    const sdk::Config cfg(host, args->config);
    BertConfig config = parse_config(cfg, args->padded_vocab_size);
    const bool has_parallel_flags =
        args->struct_size >= offsetof(mh_model_create_args, parallel_flags) + sizeof(args->parallel_flags);
    config.transformer.parallel =
        sdk::parallel::ParallelContext::from_host(host, has_parallel_flags ? args->parallel_flags : 0u);
    check_parallel(cfg, config);
    if (!sdk::nn::select_attention_backend(cfg.get_string("attention_backend", "auto")))
      throw cfg.error("attention_backend", "unknown attention_backend", "use auto, flash, cudnn, efficient or math");
    const at::Device device = sdk::to_torch_device(args->device);
    const at::ScalarType dtype = sdk::to_scalar_type(args->param_dtype);
    MH_CHECK(at::isFloatingType(dtype), MH_ERR_INVALID_ARG, "bert: param_dtype ", c10::toString(dtype),
             " is not a floating type\nHINT: use float32 (bf16/fp16 keep fp32 masters in the core)");
    const auto& rng = sdk::service<mh_rng_service>(host, MH_SERVICE_RNG);
    const uint64_t init_seed = rng.derive_seed(host, "model.init", 0, MH_SEED_SAME_ON_ALL_RANKS);

    auto inst = std::make_unique<Instance>();
    inst->host = host;
    inst->name = args->instance_name != nullptr ? args->instance_name : "model";
    inst->model = std::make_unique<BertModel>(config, device, dtype, init_seed);
    const auto& t = config.transformer;
    sdk::log(host, MH_LOG_INFO, inst->name.c_str(), "bert: ", t.num_layers, " layers, hidden ", t.hidden_size,
             ", heads ", t.num_attention_heads, ", ffn ", t.ffn_hidden_size, ", vocab ", config.padded_vocab_size,
             ", binary head ", config.binary_head ? "on" : "off", ", ", inst->model->params.numel(),
             " parameters on ", device.str());
    *out = reinterpret_cast<mh_model*>(inst.release());
    *out_api = &kModelApi;
    return nullptr;
  }
  MH_SDK_CATCH(host)
}

const mh_model_factory kFactory = {MH_TABLE_HEADER(mh_model_factory), bert_count, bert_descriptor, bert_create};

const void* get_factory(const char* id) { return std::strcmp(id, MH_FACTORY_MODEL) == 0 ? &kFactory : nullptr; }

}  // namespace
}  // namespace megahost::bert

MH_SDK_PLUGIN_ENTRY(megahost::bert::get_factory)
