// GPT model (see gpt_model.h).
#include "gpt_model.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/dropout.h>
#include <ATen/ops/linear.h>

#include "megahost/sdk/error.h"
#include "megahost/sdk/nn/cross_entropy.h"

namespace megahost::gpt {

using sdk::nn::Init;

GptModel::GptModel(const GptConfig& cfg, at::Device device, at::ScalarType param_dtype, uint64_t init_seed)
    : params(device, param_dtype, init_seed),
      cfg_(cfg),
      word_embeddings_(params, "embedding.word_embeddings", cfg.padded_vocab_size, cfg.transformer.hidden_size,
                       Init::normal(cfg.transformer.init_method_std)) {
  // Created in Megatron's state-dict order: embeddings, decoder layers, final norm, output layer.
  if (cfg.position_embedding == PositionEmbedding::LearnedAbsolute)
    position_embeddings_.emplace(params, "embedding.position_embeddings", cfg.max_position_embeddings,
                                 cfg.transformer.hidden_size, Init::normal(cfg.transformer.init_method_std));
  decoder_ = std::make_unique<sdk::nn::TransformerBlock>(params, "decoder", cfg.transformer, 0,
                                                         cfg.transformer.num_layers, /*with_final_layernorm=*/true);
  if (cfg.position_embedding == PositionEmbedding::Rope)
    rotary_.emplace(cfg.transformer.kv_channels, cfg.rotary_percent, cfg.rotary_base);
  if (cfg.untie_embeddings_and_output_weights) {
    // Megatron's output_layer: a column-parallel linear without bias, plain init_method.
    output_weight_ = params.create("output_layer.weight", {cfg.padded_vocab_size, cfg.transformer.hidden_size},
                                   Init::normal(cfg.transformer.init_method_std), 0, 0);
  } else {
    output_weight_ = word_embeddings_.weight;
    params.add_flags("embedding.word_embeddings.weight", MH_PARAM_SHARED_EMBEDDING);
  }
}

at::Tensor GptModel::logits_sbv(const at::Tensor& tokens, const at::Tensor& position_ids, bool training) const {
  const int64_t b = tokens.size(0), s = tokens.size(1);
  at::Tensor h = word_embeddings_.forward(tokens);  // [b, s, h]
  if (position_embeddings_) {
    MH_CHECK(s <= cfg_.max_position_embeddings, MH_ERR_INVALID_ARG, "gpt: sequence length ", s,
             " exceeds max_position_embeddings = ", cfg_.max_position_embeddings,
             "\nHINT: raise max_position_embeddings in [model] or feed shorter sequences");
    const at::Tensor pos = position_ids.defined()
                               ? position_ids
                               : at::arange(s, tokens.options().dtype(at::kLong)).unsqueeze(0).expand({b, s});
    h = h + position_embeddings_->forward(pos);  // [b, s, h]
  }
  h = h.transpose(0, 1).contiguous();  // [s, b, h]
  h = at::dropout(h, training ? cfg_.transformer.hidden_dropout : 0.0, training);
  const at::Tensor rotary = rotary_ ? rotary_->forward(s, h.device()) : at::Tensor();  // [s, 1, 1, rot]
  h = decoder_->forward(h, rotary, training);                                           // [s, b, h]
  return at::linear(h, output_weight_);                                                // [s, b, V]
}

at::Tensor GptModel::token_loss(const at::Tensor& tokens, const at::Tensor& labels, const at::Tensor& position_ids,
                                bool training) const {
  const at::Tensor logits = logits_sbv(tokens, position_ids, training);                 // [s, b, V]
  return sdk::nn::vocab_parallel_cross_entropy(logits, labels.t()).t();                // [b, s]
}

}  // namespace megahost::gpt
