// The "t5" model plugin: the mh.model/1 factory and instance table over T5Model.
// Every entry point catches (MH_SDK_TRY / MH_SDK_CATCH): no exception crosses the ABI.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <memory>
#include <string>

#include "megahost/megahost.h"
#include "megahost/sdk/error.h"
#include "megahost/sdk/host.h"
#include "megahost/sdk/nn/attention.h"
#include "megahost/sdk/parallel/loss.h"
#include "megahost/sdk/plugin.h"
#include "megahost/sdk/torch_interop.h"
#include "t5_config.h"
#include "t5_model.h"

namespace megahost::t5 {
namespace {

struct Instance {
  const mh_host* host;
  std::string name;
  std::unique_ptr<T5Model> model;
  bool training = true;
};

Instance* as_instance(mh_model* m) { return reinterpret_cast<Instance*>(m); }

// Megatron's T5 batch (core/engine/t5_batches.h): text_enc, enc_mask [b, se] int64; text_dec,
// labels, dec_mask [b, sd] int64; loss_mask [b, sd] float32.
struct Batch {
  at::Tensor text_enc, enc_mask, text_dec, labels, dec_mask, loss_mask;
};

at::Tensor batch_tensor(const mh_named_tensor* batch, size_t n, const char* name) {
  for (size_t i = 0; i < n; ++i)
    if (batch[i].name != nullptr && std::strcmp(batch[i].name, name) == 0) return sdk::to_torch(batch[i].tensor);
  throw sdk::Error(MH_ERR_INVALID_ARG,
                   sdk::str_cat("t5: the batch has no tensor named '", name,
                                "'\nHINT: a T5 batch holds text_enc, enc_mask [b, encoder_seq_length] and text_dec, "
                                "labels, dec_mask, loss_mask [b, decoder_seq_length]: train with [data] dataset = "
                                "\"t5\" (Megatron's T5 span-corruption samples of a --split-sentences corpus)"));
}

Batch read_batch(const T5Model& model, const mh_named_tensor* batch, size_t n) {
  MH_CHECK(batch != nullptr || n == 0, MH_ERR_INVALID_ARG, "t5: batch is NULL with n = ", n);
  const T5Config& c = model.config();
  auto read = [&](const char* name, int64_t length, at::ScalarType dtype) {
    at::Tensor t = batch_tensor(batch, n, name);
    MH_CHECK(t.dim() == 2 && t.size(1) == length && t.scalar_type() == dtype, MH_ERR_INVALID_ARG, "t5: ", name,
             " must be [b, ", length, "] ", c10::toString(dtype), ", got ", t.sizes(), " ",
             c10::toString(t.scalar_type()),
             "\nHINT: encoder tensors are [micro_batch_size, encoder_seq_length], decoder tensors "
             "[micro_batch_size, decoder_seq_length]; the data and [model] lengths must agree");
    MH_CHECK(t.device() == model.params.device(), MH_ERR_INVALID_ARG, "t5: the batch is on ", t.device().str(),
             " but the model is on ", model.params.device().str(),
             "\nHINT: the host must move batches to the model's device");
    return t;
  };
  Batch b;
  b.text_enc = read("text_enc", c.encoder_seq_length, at::kLong);
  b.enc_mask = read("enc_mask", c.encoder_seq_length, at::kLong);
  b.text_dec = read("text_dec", c.decoder_seq_length, at::kLong);
  b.labels = read("labels", c.decoder_seq_length, at::kLong);
  b.dec_mask = read("dec_mask", c.decoder_seq_length, at::kLong);
  b.loss_mask = read("loss_mask", c.decoder_seq_length, at::kFloat);
  for (const at::Tensor* t : {&b.enc_mask, &b.text_dec, &b.labels, &b.dec_mask, &b.loss_mask})
    MH_CHECK(t->size(0) == b.text_enc.size(0), MH_ERR_INVALID_ARG, "t5: batch tensors disagree on the batch size (",
             t->size(0), " vs ", b.text_enc.size(0), ")\nHINT: every tensor holds micro_batch_size samples");
  return b;
}

// Megatron's loss_func: lm = sum(CE * loss_mask) / sum(loss_mask).
// Returns the objective (with autograd) and writes the reported loss as loss_sum / num_tokens.
at::Tensor loss(const Instance& self, const Batch& b, mh_loss* out) {
  const T5Model& model = *self.model;
  const at::Tensor ce = model.forward(b.text_enc, b.enc_mask, b.text_dec, b.dec_mask, b.labels, self.training);
  const auto lm = sdk::parallel::masked_loss(ce, b.loss_mask, model.config().transformer.parallel.get());
  at::Tensor objective = lm.objective();  // sum / max(loss tokens, 1)
  if (out != nullptr) {
    const double tokens = std::max(1.0, lm.global_num_tokens.item<double>());
    out->loss_sum = objective.item<double>() * tokens;
    out->num_tokens = tokens;
  }
  return objective;
}

void check_loss_out(const mh_loss* out) {
  MH_CHECK(out == nullptr || out->struct_size >= sizeof(mh_loss), MH_ERR_INVALID_ARG,
           "t5: mh_loss.struct_size is too small\nHINT: set struct_size = sizeof(mh_loss)");
}

// ---- instance table ----

void MH_ABI t5_destroy(mh_model* m) { delete as_instance(m); }

mh_error* MH_ABI t5_visit_params(mh_model* m, mh_param_visit_fn fn, void* ctx) {
  Instance* self = as_instance(m);
  MH_SDK_TRY {
    MH_CHECK(fn != nullptr, MH_ERR_INVALID_ARG, "t5: visit_params got a NULL visitor");
    return self->model->params.visit(fn, ctx);
  }
  MH_SDK_CATCH(self->host)
}

mh_error* MH_ABI t5_set_training(mh_model* m, bool training) {
  as_instance(m)->training = training;
  return nullptr;
}

mh_error* MH_ABI t5_zero_grad(mh_model* m, mh_stream /*stream*/) {
  Instance* self = as_instance(m);
  MH_SDK_TRY {
    self->model->params.zero_grad();
    return nullptr;
  }
  MH_SDK_CATCH(self->host)
}

mh_error* MH_ABI t5_forward_backward(mh_model* m, const mh_named_tensor* batch, size_t n, double grad_scale,
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

mh_error* MH_ABI t5_forward_loss(mh_model* m, const mh_named_tensor* batch, size_t n, mh_stream /*stream*/,
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

const void* MH_ABI t5_get_extension(const mh_model* /*m*/, const char* /*id*/) { return nullptr; }

mh_error* MH_ABI t5_bind_storage(mh_model* m, const mh_param_binding* bindings, size_t n,
                                 mh_grad_ready_fn grad_ready, void* ctx) {
  Instance* self = as_instance(m);
  MH_SDK_TRY {
    self->model->params.bind(bindings, n, grad_ready, ctx);
    return nullptr;
  }
  MH_SDK_CATCH(self->host)
}

const mh_model_api kModelApi = {MH_TABLE_HEADER(mh_model_api), t5_destroy,       t5_visit_params,
                                t5_set_training,                t5_zero_grad,     t5_forward_backward,
                                t5_forward_loss,                t5_get_extension, t5_bind_storage};

// ---- factory ----

const char* const kAliases[] = {"T5Model", nullptr};

const mh_plugin_descriptor& descriptor() {
  static const mh_plugin_descriptor d = {
      sizeof(mh_plugin_descriptor),
      "t5",
      "T5 (Megatron-Core T5Model)",
      "megahost",
      "0.1.0",
      "encoder-decoder: shared word/position embeddings, bidirectional encoder with padding mask, causal decoder "
      "with cross-attention, LM head tied to the embeddings",
      kAliases,
      config_schema_json()};
  return d;
}

uint32_t MH_ABI t5_count(void) { return 1; }

const mh_plugin_descriptor* MH_ABI t5_descriptor(uint32_t i) { return i == 0 ? &descriptor() : nullptr; }

mh_error* MH_ABI t5_create(const char* id, const mh_host* host, const mh_model_create_args* args, mh_model** out,
                           const mh_model_api** out_api) {
  MH_SDK_TRY {
    const mh_plugin_descriptor* descs[] = {&descriptor()};
    MH_CHECK(id != nullptr && sdk::find_descriptor(descs, 1, id) == 0, MH_ERR_NOT_FOUND, "t5: unknown model id '",
             id ? id : "(null)", "'\nHINT: this library provides \"t5\" (alias \"T5Model\")");
    MH_CHECK(args != nullptr && out != nullptr && out_api != nullptr, MH_ERR_INVALID_ARG,
             "t5: create got a NULL argument");
    constexpr size_t kSize10 = offsetof(mh_model_create_args, layer_offset);
    MH_CHECK(args->struct_size >= kSize10, MH_ERR_INVALID_ARG, "t5: mh_model_create_args.struct_size = ",
             args->struct_size, " is smaller than ABI 1.0's ", kSize10);
    // Pipeline stages: the whole model only. Megatron's T5 splits encoder and decoder across
    // stages with its own encoder/decoder schedule, which megahost's pipeline does not have.
    const bool has_stage = args->struct_size >= offsetof(mh_model_create_args, stage_flags) + sizeof(args->stage_flags);
    if (has_stage && (args->num_stage_layers != 0 || args->stage_flags != 0 || args->layer_offset != 0)) {
      const bool whole = args->layer_offset == 0 && args->num_stage_layers < 0 &&
                         (args->stage_flags & (MH_STAGE_FIRST | MH_STAGE_LAST)) == (MH_STAGE_FIRST | MH_STAGE_LAST);
      MH_CHECK(whole, MH_ERR_UNSUPPORTED, "t5: pipeline stages are not supported by the t5 plugin (asked for "
               "layers from ", args->layer_offset, ", ", args->num_stage_layers, " of them): an encoder-decoder "
               "stage would need the encoder output on every decoder stage"
               "\nHINT: set [parallel] pipeline_model_parallel_size = 1 (tensor and data parallelism work)");
    }
    const sdk::Config cfg(host, args->config);
    T5Config config = parse_config(cfg, args->padded_vocab_size);
    const bool has_parallel_flags =
        args->struct_size >= offsetof(mh_model_create_args, parallel_flags) + sizeof(args->parallel_flags);
    config.transformer.parallel =
        sdk::parallel::ParallelContext::from_host(host, has_parallel_flags ? args->parallel_flags : 0u);
    check_parallel(cfg, config);
    if (!sdk::nn::select_attention_backend(cfg.get_string("attention_backend", "auto")))
      throw cfg.error("attention_backend", "unknown attention_backend", "use auto, flash, cudnn, efficient or math");
    const at::Device device = sdk::to_torch_device(args->device);
    const at::ScalarType dtype = sdk::to_scalar_type(args->param_dtype);
    MH_CHECK(at::isFloatingType(dtype), MH_ERR_INVALID_ARG, "t5: param_dtype ", c10::toString(dtype),
             " is not a floating type\nHINT: use float32 (bf16/fp16 keep fp32 masters in the core)");
    const auto& rng = sdk::service<mh_rng_service>(host, MH_SERVICE_RNG);
    const uint64_t init_seed = rng.derive_seed(host, "model.init", 0, MH_SEED_SAME_ON_ALL_RANKS);

    auto inst = std::make_unique<Instance>();
    inst->host = host;
    inst->name = args->instance_name != nullptr ? args->instance_name : "model";
    inst->model = std::make_unique<T5Model>(config, device, dtype, init_seed);
    const auto& t = config.transformer;
    sdk::log(host, MH_LOG_INFO, inst->name.c_str(), "t5: ", t.num_layers, " encoder + ", t.num_layers,
             " decoder layers, hidden ", t.hidden_size, ", heads ", t.num_attention_heads, " x ", t.kv_channels,
             ", ffn ", t.ffn_hidden_size, ", lengths ", config.encoder_seq_length, " / ", config.decoder_seq_length,
             ", vocab ", config.padded_vocab_size, ", ", inst->model->params.numel(), " parameters on ", device.str());
    *out = reinterpret_cast<mh_model*>(inst.release());
    *out_api = &kModelApi;
    return nullptr;
  }
  MH_SDK_CATCH(host)
}

const mh_model_factory kFactory = {MH_TABLE_HEADER(mh_model_factory), t5_count, t5_descriptor, t5_create};

const void* get_factory(const char* id) { return std::strcmp(id, MH_FACTORY_MODEL) == 0 ? &kFactory : nullptr; }

}  // namespace
}  // namespace megahost::t5

MH_SDK_PLUGIN_ENTRY(megahost::t5::get_factory)
