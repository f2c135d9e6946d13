// The "t5" model plugin: the mh.model/1 factory and instance table over T5Model.
// Every entry point catches (MH_SDK_TRY / MH_SDK_CATCH): no exception crosses the ABI.
#include <ATen/ATen.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <memory>
#include <string>

#include "megahost/megahost.h"
#include "megahost/sdk/error.h"
#include "megahost/sdk/host.h"
#include "megahost/sdk/model_plugin.h"
#include "megahost/sdk/parallel/loss.h"
#include "megahost/sdk/plugin.h"
#include "megahost/sdk/torch_interop.h"
#include "t5_config.h"
#include "t5_model.h"

namespace megahost::t5 {
namespace {

using Instance = sdk::ModelInstance<T5Model>;

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

// Megatron's loss_func: lm = sum(CE * loss_mask) / sum(loss_mask). The objective (with autograd)
// and the reported loss, loss_sum = objective * num_tokens (num_tokens at least 1).
sdk::nn::StepLoss loss(const Instance& self, const Batch& b) {
  const T5Model& model = *self.model;
  const at::Tensor ce = model.forward(b.text_enc, b.enc_mask, b.text_dec, b.dec_mask, b.labels, self.training);
  const auto lm = sdk::parallel::masked_loss(ce, b.loss_mask, model.config().transformer.parallel.get());
  const at::Tensor objective = lm.objective();  // sum / max(loss tokens, 1)
  const at::Tensor tokens = lm.global_num_tokens.clamp_min(1.0);
  return {objective, objective.detach() * tokens, tokens};
}

std::vector<at::Tensor*> batch_fields(Batch& b) {
  return {&b.text_enc, &b.enc_mask, &b.text_dec, &b.labels, &b.dec_mask, &b.loss_mask};
}

// What sdk::ModelTable (and the flops extension) build the tables from.
struct T5Plugin {
  using Model = T5Model;
  static constexpr const char* kName = "t5";
  static constexpr auto read_batch = t5::read_batch;
  static constexpr auto loss = t5::loss;
  static constexpr auto batch_fields = t5::batch_fields;
  static double train_flops_per_sample(const T5Model& m) { return t5::train_flops_per_sample(m.config()); }
};

const void* MH_ABI t5_get_extension(const mh_model* /*m*/, const char* id) {
  if (id != nullptr && std::strcmp(id, MH_EXT_MODEL_FLOPS) == 0) return &sdk::FlopsExtension<T5Plugin>::ext();
  return nullptr;
}

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
    sdk::check_create_args("t5", descriptor(), id, args, out, out_api);
    // Pipeline stages: the whole model only. Megatron's T5 splits encoder and decoder across
    // stages with its own encoder/decoder schedule, which megahost's pipeline does not have.
    sdk::require_whole_model("t5", args,
                             ": Megatron pipelines T5 with separate encoder and decoder stages "
                             "(pipeline_model_parallel_split_rank) and a schedule that sends the encoder output "
                             "on to every decoder stage; megahost's schedules pass one activation stage to stage");
    const sdk::Config cfg(host, args->config);
    T5Config config = parse_config(cfg, args->padded_vocab_size);
    config.transformer.parallel = sdk::parallel::ParallelContext::from_host(host, sdk::parallel_flags(args));
    check_parallel(cfg, config);
    sdk::select_attention_backend(cfg);
    const sdk::ModelPlacement place = sdk::model_placement("t5", host, args);
    sdk::nn::check_cuda_graph(cfg, config.cuda_graph, place.device, /*whole_model=*/true,
                              config.transformer.parallel.get());

    auto inst = sdk::new_instance<T5Model>(host, args);
    inst->model = std::make_unique<T5Model>(config, place.device, place.dtype, place.init_seed);
    if (config.cuda_graph.full_iteration)
      inst->graphs = std::make_unique<sdk::nn::FullIterationGraphs>(config.cuda_graph.warmup_steps);
    const auto& t = config.transformer;
    sdk::log(host, MH_LOG_INFO, inst->name.c_str(), "t5: ", t.num_layers, " encoder + ", t.num_layers,
             " decoder layers, hidden ", t.hidden_size, ", heads ", t.num_attention_heads, " x ", t.kv_channels,
             ", ffn ", t.ffn_hidden_size, ", lengths ", config.encoder_seq_length, " / ", config.decoder_seq_length,
             ", vocab ", config.padded_vocab_size, ", ", inst->model->params.numel(), " parameters on ",
             place.device.str());
    *out = reinterpret_cast<mh_model*>(inst.release());
    *out_api = &sdk::ModelTable<T5Plugin>::api(t5_get_extension);
    return nullptr;
  }
  MH_SDK_CATCH(host)
}

const mh_model_factory kFactory = {MH_TABLE_HEADER(mh_model_factory), t5_count, t5_descriptor, t5_create};

const void* get_factory(const char* id) { return std::strcmp(id, MH_FACTORY_MODEL) == 0 ? &kFactory : nullptr; }

}  // namespace
}  // namespace megahost::t5

MH_SDK_PLUGIN_ENTRY(megahost::t5::get_factory)
