// GPT model (see gpt_model.h).
#include "gpt_model.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/linear.h>

#include "megahost/sdk/error.h"
#include "megahost/sdk/nn/cross_entropy.h"
#include "megahost/sdk/nn/fused.h"
#include "megahost/sdk/parallel/random.h"

namespace megahost::gpt {

using sdk::nn::Init;

GptModel::GptModel(const GptConfig& cfg, at::Device device, at::ScalarType param_dtype, uint64_t init_seed,
                   const GptStage& stage)
    : params(device, param_dtype, init_seed), cfg_(cfg), stage_(stage) {
  stage_ = stage.resolved("gpt", cfg.transformer.num_layers);
  const bool tied = !cfg.untie_embeddings_and_output_weights;
  // Created in Megatron's state-dict order: embeddings, decoder layers, final norm, output layer.
  if (stage_.first || (stage_.last && tied))
    word_embeddings_.emplace(params, "embedding.word_embeddings", cfg.padded_vocab_size, cfg.transformer.hidden_size,
                             Init::normal(cfg.transformer.init_method_std), cfg.transformer.parallel);
  // Tied: the first and the last stage each hold a copy; both are flagged so the host sums their
  // gradients over the "embedding" group (Megatron's _allreduce_embedding_grads).
  if (tied && word_embeddings_) params.add_flags("embedding.word_embeddings.weight", MH_PARAM_SHARED_EMBEDDING);
  if (stage_.first && cfg.position_embedding == PositionEmbedding::LearnedAbsolute)
    position_embeddings_.emplace(params, "embedding.position_embeddings", cfg.max_position_embeddings,
                                 cfg.transformer.hidden_size, Init::normal(cfg.transformer.init_method_std));
  decoder_ = std::make_unique<sdk::nn::TransformerBlock>(params, "decoder", cfg.transformer, stage_.layer_offset,
                                                         stage_.num_layers, /*with_final_layernorm=*/stage_.last);
  if (cfg.position_embedding == PositionEmbedding::Rope) {
    std::optional<sdk::nn::RopeScaling> scaling;
    if (cfg.use_rope_scaling) scaling = sdk::nn::RopeScaling{cfg.rope_scaling_factor};  // Megatron's 1 / 4 / 8192
    rotary_.emplace(cfg.transformer.kv_channels, cfg.rotary_percent, cfg.rotary_base, cfg.transformer.parallel,
                    scaling, cfg.rotary_seq_len_interpolation_factor);
  }
  if (!stage_.last) return;
  if (!tied) {
    // Megatron's output_layer: a column-parallel linear without bias, plain init_method.
    output_weight_ = sdk::nn::create_tensor_parallel(params, "output_layer.weight",
                                                     {cfg.padded_vocab_size, cfg.transformer.hidden_size},
                                                     Init::normal(cfg.transformer.init_method_std), 0, 0,
                                                     cfg.transformer.parallel.get());
  } else {
    output_weight_ = word_embeddings_->weight;
  }
}

at::Tensor GptModel::logits_sbv(const at::Tensor& tokens, const at::Tensor& position_ids, bool training) const {
  return head(hidden_sbh(tokens, position_ids, training));  // [s, b, V]
}

at::Tensor GptModel::hidden_sbh(const at::Tensor& tokens, const at::Tensor& position_ids, bool training) const {
  MH_CHECK(stage_.first && stage_.last, MH_ERR_INVALID_ARG, "gpt: this instance holds one pipeline stage (layers ",
           stage_.layer_offset, "..", stage_.layer_offset + stage_.num_layers - 1,
           "), not the whole model\nHINT: drive a pipeline stage through the mh.model.pipeline/1 extension");
  return decode(embed(tokens, position_ids, training), tokens.size(1), training);  // [s, b, h]
}

at::Tensor GptModel::embed(const at::Tensor& tokens, const at::Tensor& position_ids, bool training) const {
  const int64_t b = tokens.size(0), s = tokens.size(1);
  at::Tensor pos;
  if (position_embeddings_) {
    MH_CHECK(s <= cfg_.max_position_embeddings, MH_ERR_INVALID_ARG, "gpt: sequence length ", s,
             " exceeds max_position_embeddings = ", cfg_.max_position_embeddings,
             "\nHINT: raise max_position_embeddings in [model] or feed shorter sequences");
    pos = position_ids.defined() ? position_ids
                                 : at::arange(s, tokens.options().dtype(at::kLong)).unsqueeze(0).expand({b, s});
  }
  const auto* parallel = cfg_.transformer.parallel.get();
  at::Tensor h;
  if (parallel == nullptr || parallel->tp.size() == 1) {
    // Both lookups, their sum and the [s, b] layout in one fused op (CUDA; the plain ops
    // elsewhere). The word table's other use: the tied output layer on this stage.
    // It goes through autograd unless the output layer adds its gradient itself (head()).
    h = sdk::fused::embedding_sbh(word_embeddings_->weight, tokens,
                                  position_embeddings_ ? position_embeddings_->weight : at::Tensor(), pos,
                                  tied_here() && !logits_accumulate(tokens));  // [s, b, h]
  } else {
    h = word_embeddings_->forward(tokens);                             // [b, s, h]
    if (position_embeddings_) h = h + position_embeddings_->forward(pos);  // [b, s, h]
    h = sdk::nn::embeddings_to_hidden_states(h, parallel);              // [s(/tp under SP), b, h]
  }
  // Megatron's embedding dropout: per TP rank under sequence parallelism (each holds a slice of s).
  return sdk::parallel::hidden_dropout(h, training ? cfg_.transformer.hidden_dropout : 0.0, training,
                                       cfg_.transformer.parallel.get());
}

at::Tensor GptModel::decode(const at::Tensor& hidden, int64_t seq_length, bool training) const {
  const at::Tensor rotary = rotary_ ? rotary_->forward(seq_length, hidden.device()) : at::Tensor();  // [s, 1, 1, rot]
  return decoder_->forward(hidden, rotary, training);                                               // [s, b, h]
}

bool GptModel::tied_here() const {
  return stage_.first && word_embeddings_ && output_weight_.defined() && output_weight_.is_same(word_embeddings_->weight);
}

bool GptModel::logits_accumulate(const at::Tensor& like) const {
  return cfg_.transformer.gradient_accumulation_fusion && like.is_cuda();
}

at::Tensor GptModel::head(const at::Tensor& hidden) const {
  // The output layer's weight gradient straight into the main gradient (gradient-accumulation
  // fusion); a tied word table's grad-ready then fires from the input embedding's backward, the
  // table's last use in backward.
  const bool accumulate = logits_accumulate(hidden);
  return sdk::nn::parallel_lm_logits(hidden, output_weight_, cfg_.transformer.parallel.get(), accumulate,
                                     /*notify_grad_ready=*/!tied_here());  // [s, b, V/tp]
}

at::Tensor GptModel::token_loss(const at::Tensor& tokens, const at::Tensor& labels, const at::Tensor& position_ids,
                                bool training) const {
  return loss_from_hidden(hidden_sbh(tokens, position_ids, training), labels);  // [b, s]
}

at::Tensor GptModel::loss_from_hidden(const at::Tensor& hidden, const at::Tensor& labels) const {
  // [s, b, h], [b, s] -> [b, s]; the output layer's weight gradient as head()'s
  return sdk::nn::lm_head_cross_entropy(hidden, output_weight_, labels.t(), cfg_.transformer.parallel.get(),
                                        logits_accumulate(hidden), /*notify_grad_ready=*/!tied_here())
      .t();
}

}  // namespace megahost::gpt
