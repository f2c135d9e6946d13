// BERT model (see bert_model.h).
#include "bert_model.h"

#include <ATen/ATen.h>

#include "megahost/sdk/error.h"
#include "megahost/sdk/nn/cross_entropy.h"
#include "megahost/sdk/nn/flops.h"
#include "megahost/sdk/nn/linear.h"
#include "megahost/sdk/parallel/random.h"

namespace megahost::bert {

using sdk::nn::Init;
using sdk::nn::join_name;

BertModel::BertModel(const BertConfig& cfg, at::Device device, at::ScalarType param_dtype, uint64_t init_seed,
                     const sdk::PipelineStage& stage)
    : params(device, param_dtype, init_seed), cfg_(cfg), stage_(stage.resolved("bert", cfg.transformer.num_layers)) {
  cfg_.transformer.attn_mask_type = sdk::nn::AttnMaskType::Padding;  // every real token sees every real token
  const sdk::nn::TransformerConfig& t = cfg_.transformer;
  const int64_t h = t.hidden_size;
  const Init normal = Init::normal(t.init_method_std);
  // Megatron-Core's BertModel state-dict order: embedding, encoder, lm_head, output_layer, pooler, binary_head.
  if (stage_.first || stage_.last)  // the last stage's copy feeds the tied output layer
    word_embeddings_.emplace(params, "embedding.word_embeddings", cfg.padded_vocab_size, h, normal, t.parallel);
  if (word_embeddings_ && !stage_.whole_model())
    params.add_flags("embedding.word_embeddings.weight", MH_PARAM_SHARED_EMBEDDING);
  if (stage_.first) {
    position_embeddings_.emplace(params, "embedding.position_embeddings", cfg.max_position_embeddings, h, normal);
    if (cfg.num_tokentypes() > 0)
      tokentype_embeddings_.emplace(params, "embedding.tokentype_embeddings", cfg.num_tokentypes(), h, normal);
  }
  encoder_.emplace(params, "encoder", t, stage_.layer_offset, stage_.num_layers, /*with_final_layernorm=*/stage_.last);
  if (!stage_.last) return;
  // lm_head and the binary head are replicated on every TP rank (Megatron's get_linear_layer).
  lm_dense_weight_ = params.create("lm_head.dense.weight", {h, h}, normal, -1, 0);
  lm_dense_bias_ = params.create("lm_head.dense.bias", {h}, Init::zeros(), -1, MH_PARAM_NO_WEIGHT_DECAY);
  lm_layer_norm_.emplace(params, "lm_head.layer_norm", h, sdk::nn::NormKind::LayerNorm, t.norm_epsilon);
  // output_layer: the word embeddings (tied, Megatron's share_embeddings_and_output_weights) plus
  // its own vocab-parallel bias.
  output_weight_ = word_embeddings_->weight;
  output_bias_ = sdk::nn::create_tensor_parallel(params, "output_layer.bias", {cfg.padded_vocab_size}, Init::zeros(),
                                                 0, MH_PARAM_NO_WEIGHT_DECAY, t.parallel.get());
  if (cfg.binary_head) {
    pooler_weight_ = params.create("pooler.dense.weight", {h, h}, normal, -1, 0);
    pooler_bias_ = params.create("pooler.dense.bias", {h}, Init::zeros(), -1, MH_PARAM_NO_WEIGHT_DECAY);
    binary_weight_ = params.create("binary_head.weight", {2, h}, normal, -1, 0);
    binary_bias_ = params.create("binary_head.bias", {2}, Init::zeros(), -1, MH_PARAM_NO_WEIGHT_DECAY);
  }
}

at::Tensor BertModel::embed(const at::Tensor& tokens, const at::Tensor& token_types, bool training) const {
  MH_CHECK(stage_.first, MH_ERR_INTERNAL, "bert: embed on a pipeline stage without the embeddings");
  const int64_t b = tokens.size(0), s = tokens.size(1);
  MH_CHECK(s <= cfg_.max_position_embeddings, MH_ERR_INVALID_ARG, "bert: sequence length ", s,
           " exceeds max_position_embeddings = ", cfg_.max_position_embeddings,
           "\nHINT: raise max_position_embeddings in [model] or feed shorter sequences");
  const at::Tensor pos = at::arange(s, tokens.options()).unsqueeze(0).expand({b, s});  // [b, s]
  at::Tensor e = word_embeddings_->forward(tokens) + position_embeddings_->forward(pos);  // [b, s, h]
  if (tokentype_embeddings_) e = e + tokentype_embeddings_->forward(token_types);
  const at::Tensor x = sdk::nn::embeddings_to_hidden_states(e, cfg_.transformer.parallel.get());  // [s, b, h]
  return sdk::parallel::hidden_dropout(x, training ? cfg_.transformer.hidden_dropout : 0.0, training,
                                       cfg_.transformer.parallel.get());
}

at::Tensor BertModel::layers(const at::Tensor& hidden, const at::Tensor& padding_mask, bool training) const {
  const at::Tensor keep = padding_mask.to(at::kBool);  // [b, s]: every stage masks the same padding
  return encoder_->forward(hidden, /*rotary_freqs=*/at::Tensor(), training, keep);  // [s, b, h]
}

at::Tensor BertModel::encode(const at::Tensor& tokens, const at::Tensor& token_types, const at::Tensor& padding_mask,
                             bool training) const {
  MH_CHECK(stage_.whole_model(), MH_ERR_INVALID_ARG, "bert: this instance holds one pipeline stage (layers ",
           stage_.layer_offset, "..", stage_.layer_offset + stage_.num_layers - 1,
           "), not the whole model\nHINT: drive a pipeline stage through the mh.model.pipeline/1 extension");
  return layers(embed(tokens, token_types, training), padding_mask, training);  // [s, b, h]
}

at::Tensor BertModel::lm_logits(const at::Tensor& hidden) const {
  // Megatron's BertLMHead: dense -> GeLU (exact) -> LayerNorm, then the tied output layer.
  const at::Tensor x = lm_layer_norm_->forward(at::gelu(at::linear(hidden, lm_dense_weight_, lm_dense_bias_)));
  return sdk::nn::parallel_lm_logits(x, output_weight_, cfg_.transformer.parallel.get()) + output_bias_;  // [s, b, V/tp]
}

BertOutputs BertModel::forward(const at::Tensor& tokens, const at::Tensor& token_types,
                               const at::Tensor& padding_mask, const at::Tensor& labels, bool training) const {
  return heads(encode(tokens, token_types, padding_mask, training), labels);
}

BertOutputs BertModel::heads(const at::Tensor& hidden, const at::Tensor& labels) const {
  MH_CHECK(stage_.last, MH_ERR_INTERNAL, "bert: heads on a pipeline stage without them");
  BertOutputs out;
  const int64_t b = labels.size(0), s = labels.size(1), h = hidden.size(2);
  const at::Tensor labelled = labels.ge(0);  // [b, s]: the masked positions (-1 elsewhere)
  if (cfg_.lm_head_every_position) {
    // Every position through the head, as Megatron-Core; the unlabelled ones' CE (against token
    // 0) is zeroed, and so is its gradient. Fixed shapes: a CUDA graph can hold it.
    const at::Tensor ce = sdk::nn::vocab_parallel_cross_entropy(lm_logits(hidden), labels.clamp_min(0).t(),
                                                                cfg_.transformer.parallel.get());  // [s, b]
    out.mlm_loss = ce.t() * labelled;  // [b, s]
  } else {
    // The vocabulary projection only where there is a label (the ~15% masked positions): the same
    // loss for a sixth of the output layer's work. Every TP rank picks the same positions. One
    // nonzero finds them (the micro-batch's one device-to-host wait); the gathers and the scatter
    // back take its indices, not the boolean mask, so they wait for nothing.
    const at::Tensor where = at::nonzero(labelled.reshape({-1})).squeeze(1);                        // [n] in b*s
    const at::Tensor picked = hidden.transpose(0, 1).reshape({b * s, h}).index_select(0, where);  // [n, h]
    const at::Tensor ce = sdk::nn::vocab_parallel_cross_entropy(
        lm_logits(picked.unsqueeze(1)), labels.reshape({-1}).index_select(0, where).unsqueeze(1),
        cfg_.transformer.parallel.get());                                                             // [n, 1]
    out.mlm_loss = at::zeros({b * s}, ce.options()).index_copy(0, where, ce.squeeze(1)).view({b, s});  // [b, s]
  }
  if (cfg_.binary_head) {
    const at::Tensor pooled = at::tanh(at::linear(hidden.select(0, 0), pooler_weight_, pooler_bias_));  // [b, h] on [CLS]
    out.sop_logits = at::linear(pooled, binary_weight_, binary_bias_);                                 // [b, 2]
  }
  return out;
}

double train_flops_per_sample(const BertConfig& c) {
  namespace flops = sdk::nn::flops;
  const sdk::nn::TransformerConfig& t = c.transformer;
  const double s = static_cast<double>(c.seq_length), h = static_cast<double>(t.hidden_size);
  double forward = static_cast<double>(t.num_layers) * flops::self_attention_layer(t, s);
  forward += flops::linear(s, h, h) + flops::linear(s, h, static_cast<double>(c.padded_vocab_size));  // lm_head
  if (c.binary_head) forward += flops::linear(1, h, h) + flops::linear(1, h, 2);  // pooler, binary head on [CLS]
  return flops::kTrainPerForward * forward;
}

}  // namespace megahost::bert
