// Megatron-Core's T5Model on one device (or TP ranks), built from the SDK's blocks:
//
//   text_enc [b, se] -> embedding (word + learned position) -> dropout -> [se, b, h]
//   -> encoder: the SDK's TransformerBlock, bidirectional attention over the real tokens (enc_mask)
//   -> encoder.final_layernorm = memory [se, b, h]
//   text_dec [b, sd] -> the SAME embedding -> [sd, b, h]
//   -> decoder: pre-norm layers of causal self-attention (and dec_mask), cross-attention to the
//      memory (enc_mask), MLP -> decoder.final_layernorm
//   -> lm_head: logits = x W_word^T + lm_head.output_layer.bias  [sd, b, V] (tied to the embedding)
//
// loss = CE over the labelled decoder positions (Megatron's pretrain_t5 loss_func with loss_mask).
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "megahost/sdk/nn/attention.h"
#include "megahost/sdk/nn/embedding.h"
#include "megahost/sdk/nn/linear.h"
#include "megahost/sdk/nn/mlp.h"
#include "megahost/sdk/nn/norm.h"
#include "megahost/sdk/nn/params.h"
#include "megahost/sdk/nn/transformer.h"
#include "t5_config.h"

namespace megahost::t5 {

// Megatron-Core's CrossAttention: queries from the decoder (linear_q), keys and values from the
// encoder output (linear_kv: per head its key then its value), output projection (linear_proj).
class CrossAttention {
 public:
  CrossAttention(sdk::nn::ParamRegistry& reg, const std::string& prefix, const sdk::nn::TransformerConfig& cfg);
  // x [sd, b, h], memory [se, b, h], memory_keep [b, se] bool -> [sd, b, h] (reduced over TP);
  // skip_bias: linear_proj's bias left to the caller (the next fused add + norm).
  at::Tensor forward(const at::Tensor& x, const at::Tensor& memory, const at::Tensor& memory_keep,
                     double attention_dropout, bool skip_bias = false) const;

  sdk::nn::ColumnParallelLinear linear_q, linear_kv;
  sdk::nn::RowParallelLinear linear_proj;

 private:
  int64_t head_dim_;
};

// One decoder layer: causal self-attention over the real decoder tokens, cross-attention to the
// encoder output, MLP (each pre-norm, with its hidden dropout). Attention through
// sdk::nn::padded_dot_product_attention. (The encoder's layers are the SDK's TransformerLayer.)
// As the SDK's layers, each residual add (with its hidden dropout and the sub-layer's output bias)
// is left to the next norm's fused pass: forward_deferred.
class DecoderLayer {
 public:
  DecoderLayer(sdk::nn::ParamRegistry& reg, const std::string& prefix, const sdk::nn::TransformerConfig& cfg);
  // x [sd, b, h], keep [b, sd] bool (true: a real token), memory [se, b, h], memory_keep [b, se]
  // -> [sd, b, h]
  at::Tensor forward(const at::Tensor& x, const at::Tensor& keep, const at::Tensor& memory,
                     const at::Tensor& memory_keep, bool training) const;
  // The same with the layer's last add (after the MLP) not done: the next layer's input norm or
  // the decoder's final norm does it.
  sdk::nn::DeferredResidual forward_deferred(const sdk::nn::DeferredResidual& in, const at::Tensor& keep,
                                             const at::Tensor& memory, const at::Tensor& memory_keep,
                                             bool training) const;

  sdk::nn::Norm input_layernorm;
  sdk::nn::SelfAttention self_attention;
  sdk::nn::Norm pre_mlp_layernorm;
  sdk::nn::MLP mlp;
  sdk::nn::Norm pre_cross_attn_layernorm;
  CrossAttention cross_attention;

 private:
  double hidden_dropout_, attention_dropout_;
  sdk::nn::ParallelContextPtr parallel_;
};

class T5Model {
 public:
  T5Model(const T5Config& cfg, at::Device device, at::ScalarType param_dtype, uint64_t init_seed);

  // text_enc, enc_mask [b, se], text_dec, dec_mask, labels [b, sd] int64 ->
  // CE [b, sd] float32 where labels >= 0, 0 elsewhere.
  at::Tensor forward(const at::Tensor& text_enc, const at::Tensor& enc_mask, const at::Tensor& text_dec,
                     const at::Tensor& dec_mask, const at::Tensor& labels, bool training) const;
  // The encoder's output [se, b, h] (after encoder.final_layernorm).
  at::Tensor encode(const at::Tensor& text_enc, const at::Tensor& enc_mask, bool training) const;
  // The decoder's output [sd, b, h] (after decoder.final_layernorm).
  at::Tensor decode(const at::Tensor& text_dec, const at::Tensor& dec_mask, const at::Tensor& memory,
                    const at::Tensor& enc_mask, bool training) const;
  // [s, b, h] -> [s, b, V/tp]
  at::Tensor lm_logits(const at::Tensor& hidden) const;

  sdk::nn::ParamRegistry params;
  const T5Config& config() const { return cfg_; }
  const at::Tensor& word_embeddings() const { return word_embeddings_->weight; }

 private:
  at::Tensor embed(const at::Tensor& tokens, bool training) const;  // [b, s] -> [s, b, h]

  T5Config cfg_;
  std::optional<sdk::nn::VocabParallelEmbedding> word_embeddings_;
  std::optional<sdk::nn::Embedding> position_embeddings_;
  // The encoder: the SDK's TransformerBlock with the padding mask, and encoder.final_layernorm.
  std::optional<sdk::nn::TransformerBlock> encoder_;
  std::vector<std::unique_ptr<DecoderLayer>> decoder_;
  std::optional<sdk::nn::Norm> decoder_final_layernorm_;
  at::Tensor output_bias_;  // [V/tp]; the weight is the word embeddings (tied)
};

// Model FLOPs of one training sample (forward + backward, sdk/nn/flops.h; docs/models.md): the
// encoder layers over encoder_seq_length, the decoder layers (self-attention over
// decoder_seq_length, cross-attention to the encoder output) and the tied output layer over all
// decoder positions (Megatron-Core's T5 projects every position; the plugin only the labelled ones).
double train_flops_per_sample(const T5Config& cfg);

}  // namespace megahost::t5
