// Megatron-Core's BertModel on one device (or TP ranks), built from the SDK's blocks:
//
//   tokens, token_types [b, s] -> embedding.{word, position, tokentype}_embeddings -> dropout
//   -> [s, b, h] -> encoder: the SDK's TransformerBlock, pre-norm layers whose attention sees
//   every real token (attn_mask_type = Padding: key padding mask, no causal mask) + final_layernorm
//   -> lm_head: dense, GeLU, LayerNorm -> logits = x W_word^T + output_layer.bias  [s, b, V]
//   -> (bert_binary_head) pooler: tanh(dense(h[CLS])) -> binary_head: 2-way linear  [b, 2]
//
// loss = mean masked-LM CE over masked positions (+ mean sentence-order CE with the binary head),
// Megatron's pretrain_bert loss_func.
//
// Pipeline parallelism (sdk/model_pipeline.h): the first stage holds the embeddings, each stage
// its layers (global indices in the names), the last the final layernorm, lm_head, output bias,
// pooler and binary head, and a copy of the word embeddings for the tied output layer (flagged
// MH_PARAM_SHARED_EMBEDDING on both stages: the host sums their gradients).
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>
#include <optional>
#include <vector>

#include "bert_config.h"
#include "megahost/sdk/model_pipeline.h"
#include "megahost/sdk/nn/embedding.h"
#include "megahost/sdk/nn/norm.h"
#include "megahost/sdk/nn/params.h"
#include "megahost/sdk/nn/transformer.h"

namespace megahost::bert {

struct BertOutputs {
  at::Tensor mlm_loss;    // [b, s] float32 CE where labels >= 0, 0 elsewhere
  at::Tensor sop_logits;  // [b, 2] with the binary head, else undefined
};

class BertModel {
 public:
  BertModel(const BertConfig& cfg, at::Device device, at::ScalarType param_dtype, uint64_t init_seed,
            const sdk::PipelineStage& stage = {});

  // tokens, token_types, padding_mask (1 real, 0 pad), labels [b, s] int64
  BertOutputs forward(const at::Tensor& tokens, const at::Tensor& token_types, const at::Tensor& padding_mask,
                      const at::Tensor& labels, bool training) const;
  // The encoder's output [s, b, h] (after final_layernorm).
  at::Tensor encode(const at::Tensor& tokens, const at::Tensor& token_types, const at::Tensor& padding_mask,
                    bool training) const;

  // Pipeline pieces (the whole model is heads(layers(embed(...)))):
  // first stage: tokens, token_types [b, s] -> [s, b, h] (after embedding dropout)
  at::Tensor embed(const at::Tensor& tokens, const at::Tensor& token_types, bool training) const;
  // this stage's layers (+ final_layernorm on the last): [s, b, h] -> [s, b, h]
  at::Tensor layers(const at::Tensor& hidden, const at::Tensor& padding_mask, bool training) const;
  // last stage: the encoder's output [s, b, h] -> masked-LM CE and sentence-order logits
  BertOutputs heads(const at::Tensor& hidden, const at::Tensor& labels) const;

  sdk::nn::ParamRegistry params;
  const BertConfig& config() const { return cfg_; }
  const sdk::PipelineStage& stage() const { return stage_; }
  const at::Tensor& word_embeddings() const { return word_embeddings_->weight; }
  const at::Tensor& output_weight() const { return output_weight_; }  // the word embeddings (tied)

 private:
  // [s, b, h] -> [s, b, V/tp]
  at::Tensor lm_logits(const at::Tensor& hidden) const;

  BertConfig cfg_;
  sdk::PipelineStage stage_;
  std::optional<sdk::nn::VocabParallelEmbedding> word_embeddings_;  // first stage, and the last (tied)
  std::optional<sdk::nn::Embedding> position_embeddings_, tokentype_embeddings_;
  // This stage's encoder layers (sdk::nn::TransformerLayer with the padding mask), and
  // encoder.final_layernorm on the last stage.
  std::optional<sdk::nn::TransformerBlock> encoder_;
  at::Tensor lm_dense_weight_, lm_dense_bias_;  // [h, h], [h] replicated
  std::optional<sdk::nn::Norm> lm_layer_norm_;
  at::Tensor output_weight_, output_bias_;      // [V/tp, h] tied, [V/tp]
  at::Tensor pooler_weight_, pooler_bias_;      // [h, h], [h]
  at::Tensor binary_weight_, binary_bias_;      // [2, h], [2]
};

// Model FLOPs of one training sample (forward + backward, sdk/nn/flops.h; docs/models.md): the
// encoder layers, lm_head.dense and the output layer over all seq_length positions (Megatron-Core's
// BertLMHead projects every position; the plugin only the labelled ones), pooler and binary head.
double train_flops_per_sample(const BertConfig& cfg);

}  // namespace megahost::bert
