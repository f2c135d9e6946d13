// The "bert" model plugin: the mh.model/1 factory and instance table over BertModel.
// Every entry point catches (MH_SDK_TRY / MH_SDK_CATCH): no exception crosses the ABI.
#include <ATen/ATen.h>

#include <cstddef>
#include <cstring>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "bert_config.h"
#include "bert_model.h"
#include "megahost/megahost.h"
#include "megahost/sdk/error.h"
#include "megahost/sdk/host.h"
#include "megahost/sdk/model_pipeline.h"
#include "megahost/sdk/model_plugin.h"
#include "megahost/sdk/parallel/loss.h"
#include "megahost/sdk/plugin.h"
#include "megahost/sdk/torch_interop.h"

namespace megahost::bert {
namespace {

using Instance = sdk::ModelInstance<BertModel>;

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

// Megatron's loss_func over the heads' outputs: lm = sum(CE * loss_mask) / sum(loss_mask); + sop =
// mean CE over the batch. The objective (with autograd) and the reported loss, loss_sum =
// objective * num_tokens (num_tokens at least 1).
sdk::nn::StepLoss objective(const BertModel& model, const BertOutputs& o, const Batch& b) {
  const auto mlm = sdk::parallel::masked_loss(o.mlm_loss, b.loss_mask, model.config().transformer.parallel.get());
  at::Tensor objective = mlm.objective();  // sum / max(masked tokens, 1)
  if (o.sop_logits.defined()) objective = objective + at::cross_entropy_loss(o.sop_logits.to(at::kFloat), b.is_random);
  const at::Tensor tokens = mlm.global_num_tokens.clamp_min(1.0);
  return {objective, objective.detach() * tokens, tokens};
}

sdk::nn::StepLoss loss(const Instance& self, const Batch& b) {
  const BertModel& model = *self.model;
  return objective(model, model.forward(b.tokens, b.token_types, b.padding_mask, b.labels, self.training), b);
}

std::vector<at::Tensor*> batch_fields(Batch& b) {
  return {&b.tokens, &b.token_types, &b.labels, &b.padding_mask, &b.loss_mask, &b.is_random};
}

// ---- extension mh.model.pipeline/1 (sdk/model_pipeline.h): every stage reads the whole batch,
// the padding mask on each, token types on the first, labels and is_random on the last ----

std::vector<int64_t> stage_io_shape(const BertModel& model, int64_t micro_batch_size) {
  return {model.config().seq_length, micro_batch_size, model.config().transformer.hidden_size};  // [s, b, h]
}

// input [s, b, h] (undefined on the first stage) -> this stage's layers' output [s, b, h]
at::Tensor stage_hidden(const Instance& self, const Batch& b, const at::Tensor& input) {
  const BertModel& model = *self.model;
  const at::Tensor h = model.stage().first ? model.embed(b.tokens, b.token_types, self.training) : input;
  return model.layers(h, b.padding_mask, self.training);
}

at::Tensor stage_loss(const Instance& self, const Batch& b, const at::Tensor& hidden, mh_loss* out) {
  const sdk::nn::StepLoss l = objective(*self.model, self.model->heads(hidden, b.labels), b);
  if (out != nullptr)
    std::tie(out->loss_sum, out->num_tokens) = sdk::parallel::start_loss_readback(l.loss_sum, l.num_tokens).read();
  return l.objective;
}

// What sdk::ModelTable and sdk::PipelineTable build the tables from.
struct BertPlugin {
  using Model = BertModel;
  static constexpr const char* kName = "bert";
  static constexpr auto read_batch = bert::read_batch;
  static constexpr auto loss = bert::loss;
  static constexpr auto batch_fields = bert::batch_fields;
  static constexpr auto read_stage_batch = bert::read_batch;
  static constexpr auto stage_io_shape = bert::stage_io_shape;
  static constexpr auto stage_hidden = bert::stage_hidden;
  static constexpr auto stage_loss = bert::stage_loss;
  static double train_flops_per_sample(const BertModel& m) { return bert::train_flops_per_sample(m.config()); }
};

const void* MH_ABI bert_get_extension(const mh_model* /*m*/, const char* id) {
  if (id != nullptr && std::strcmp(id, MH_EXT_MODEL_PIPELINE) == 0) return &sdk::PipelineTable<BertPlugin>::ext();
  if (id != nullptr && std::strcmp(id, MH_EXT_MODEL_FLOPS) == 0) return &sdk::FlopsExtension<BertPlugin>::ext();
  return nullptr;
}

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
    sdk::check_create_args("bert", descriptor(), id, args, out, out_api);
    const sdk::Config cfg(host, args->config);
    BertConfig config = parse_config(cfg, args->padded_vocab_size);
    config.transformer.parallel = sdk::parallel::ParallelContext::from_host(host, sdk::parallel_flags(args));
    check_parallel(cfg, config);
    sdk::select_attention_backend(cfg);
    const sdk::ModelPlacement place = sdk::model_placement("bert", host, args);
    const sdk::PipelineStage stage = sdk::pipeline_stage(args);
    sdk::nn::check_cuda_graph(cfg, config.cuda_graph, place.device, stage.whole_model(),
                              config.transformer.parallel.get());

    auto inst = sdk::new_instance<BertModel>(host, args);
    inst->model = std::make_unique<BertModel>(config, place.device, place.dtype, place.init_seed, stage);
    if (config.cuda_graph.full_iteration)
      inst->graphs = std::make_unique<sdk::nn::FullIterationGraphs>(config.cuda_graph.warmup_steps);
    const auto& t = config.transformer;
    sdk::log(host, MH_LOG_INFO, inst->name.c_str(), "bert: ", t.num_layers, " layers, hidden ", t.hidden_size,
             ", heads ", t.num_attention_heads, ", ffn ", t.ffn_hidden_size, ", vocab ", config.padded_vocab_size,
             ", binary head ", config.binary_head ? "on" : "off", ", ", inst->model->params.numel(),
             " parameters on ", place.device.str());
    *out = reinterpret_cast<mh_model*>(inst.release());
    *out_api = &sdk::ModelTable<BertPlugin>::api(bert_get_extension);
    return nullptr;
  }
  MH_SDK_CATCH(host)
}

const mh_model_factory kFactory = {MH_TABLE_HEADER(mh_model_factory), bert_count, bert_descriptor, bert_create};

const void* get_factory(const char* id) { return std::strcmp(id, MH_FACTORY_MODEL) == 0 ? &kFactory : nullptr; }

}  // namespace
}  // namespace megahost::bert

MH_SDK_PLUGIN_ENTRY(megahost::bert::get_factory)
