// Megatron-Core's GPTModel on one device, built from the SDK's blocks:
//
//   tokens [b, s] -> embedding.word_embeddings (+ embedding.position_embeddings) -> [s, b, h]
//   -> dropout -> decoder (layers + final_layernorm) -> output layer (tied to the word
//   embeddings unless untied) -> logits [s, b, V] -> per-token cross entropy [b, s]
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>
#include <optional>

#include "gpt_config.h"
#include "megahost/sdk/model_pipeline.h"
#include "megahost/sdk/nn/embedding.h"
#include "megahost/sdk/nn/params.h"
#include "megahost/sdk/nn/rotary.h"
#include "megahost/sdk/nn/transformer.h"

namespace megahost::gpt {

// The pipeline stage an instance holds (sdk/model_pipeline.h). The first stage holds the
// embeddings, the last the final layernorm and output layer; with tied embeddings a last stage
// that is not also the first holds its own copy of embedding.word_embeddings.weight (same seeded
// init; the host sums both copies' grads over the "embedding" group).
using GptStage = sdk::PipelineStage;

class GptModel {
 public:
  GptModel(const GptConfig& cfg, at::Device device, at::ScalarType param_dtype, uint64_t init_seed,
           const GptStage& stage = {});

  // tokens [b, s] int64, position_ids [b, s] int64 or undefined (0..s-1) -> logits [s, b, V]
  at::Tensor logits_sbv(const at::Tensor& tokens, const at::Tensor& position_ids, bool training) const;
  // the same up to the final norm: hidden [s, b, h]
  at::Tensor hidden_sbh(const at::Tensor& tokens, const at::Tensor& position_ids, bool training) const;
  // Per-token loss [b, s] float32 for labels [b, s] int64.
  at::Tensor token_loss(const at::Tensor& tokens, const at::Tensor& labels, const at::Tensor& position_ids,
                        bool training) const;

  // Pipeline pieces (the whole model is head(decode(embed(...)))):
  // first stage: tokens, position_ids [b, s] -> hidden [s, b, h] (after embedding dropout)
  at::Tensor embed(const at::Tensor& tokens, const at::Tensor& position_ids, bool training) const;
  // this stage's layers (+ final layernorm on the last); seq_length: the micro-batch's s
  at::Tensor decode(const at::Tensor& hidden, int64_t seq_length, bool training) const;
  // last stage: normed hidden [s, b, h] -> logits [s, b, V]
  at::Tensor head(const at::Tensor& hidden) const;
  // last stage: per-token loss [b, s] float32 of head(hidden) at labels [b, s] int64 (on one GPU
  // without the [s, b, V] logits kept: sdk::nn::lm_head_cross_entropy).
  at::Tensor loss_from_hidden(const at::Tensor& hidden, const at::Tensor& labels) const;

  sdk::nn::ParamRegistry params;
  const GptConfig& config() const { return cfg_; }
  const GptStage& stage() const { return stage_; }

 private:
  GptConfig cfg_;
  GptStage stage_;
  std::optional<sdk::nn::VocabParallelEmbedding> word_embeddings_;  // first stage, or last when tied
  std::optional<sdk::nn::Embedding> position_embeddings_;
  std::optional<sdk::nn::RotaryEmbedding> rotary_;
  std::unique_ptr<sdk::nn::TransformerBlock> decoder_;
  at::Tensor output_weight_;  // [V, h]: the word embeddings when tied

  bool tied_here() const;  // the output layer uses the word table of this stage's input embedding
  bool logits_accumulate(const at::Tensor& like) const;  // head() adds its weight gradient itself
};

}  // namespace megahost::gpt
