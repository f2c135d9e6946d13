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
#include "megahost/sdk/nn/embedding.h"
#include "megahost/sdk/nn/params.h"
#include "megahost/sdk/nn/rotary.h"
#include "megahost/sdk/nn/transformer.h"

namespace megahost::gpt {

class GptModel {
 public:
  GptModel(const GptConfig& cfg, at::Device device, at::ScalarType param_dtype, uint64_t init_seed);

  // tokens [b, s] int64, position_ids [b, s] int64 or undefined (0..s-1) -> logits [s, b, V]
  at::Tensor logits_sbv(const at::Tensor& tokens, const at::Tensor& position_ids, bool training) const;
  // Per-token loss [b, s] float32 for labels [b, s] int64.
  at::Tensor token_loss(const at::Tensor& tokens, const at::Tensor& labels, const at::Tensor& position_ids,
                        bool training) const;

  sdk::nn::ParamRegistry params;
  const GptConfig& config() const { return cfg_; }

 private:
  GptConfig cfg_;
  sdk::nn::VocabParallelEmbedding word_embeddings_;
  std::optional<sdk::nn::Embedding> position_embeddings_;
  std::optional<sdk::nn::RotaryEmbedding> rotary_;
  std::unique_ptr<sdk::nn::TransformerBlock> decoder_;
  at::Tensor output_weight_;  // [V, h]: the word embeddings when tied
};

}  // namespace megahost::gpt
