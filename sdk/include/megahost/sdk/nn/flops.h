// Model FLOPs of a transformer's matrix multiplications, counted as Megatron counts GPT's
// (FORMATS.md §5): 2 FLOPs per multiply-add, attention over every key (no discount for the causal
// mask or padding), backward = 2 x forward, so a training step is 3 x the forward. Norms,
// activations, softmax and the like are left out. With a = heads x kv_channels (query width),
// g = groups x kv_channels (key/value width), f = ffn_hidden_size, a GeLU MLP over s tokens:
//
//   self-attention layer:  2sh(a + 2g) [qkv] + 2s²a [QKᵀ] + 2s²a [·V] + 2sah [proj]
//                          + 2shf [fc1, 2f under SwiGLU] + 2sfh [fc2]
//   cross-attention:       2s_q·h·a [q] + 2s_k·h·2g [kv] + 4·s_q·s_k·a [QKᵀ, ·V] + 2s_q·a·h [proj]
//
// (a = g = h, f = 4h: 24sh² + 4s²h per layer, GPT's 72 B s l h² (1 + s / 6h) after x3.)
#pragma once

#include "megahost/sdk/nn/transformer_config.h"

namespace megahost::sdk::nn::flops {

// forward + backward of a matrix product: the forward's FLOPs and twice them again
constexpr double kTrainPerForward = 3.0;

// One pre-norm self-attention layer's forward over s tokens (attention over all s keys).
inline double self_attention_layer(const TransformerConfig& t, double s) {
  const double h = static_cast<double>(t.hidden_size), a = static_cast<double>(t.query_projection_size()),
               g = static_cast<double>(t.kv_projection_size()), f = static_cast<double>(t.ffn_hidden_size);
  const double fc1_out = t.activation == Activation::SwiGLU ? 2 * f : f;
  return 2 * s * h * (a + 2 * g) + 4 * s * s * a + 2 * s * a * h + 2 * s * h * fc1_out + 2 * s * f * h;
}

// Cross-attention's forward: s_q queries (decoder) over s_k keys (encoder output).
inline double cross_attention(const TransformerConfig& t, double s_q, double s_k) {
  const double h = static_cast<double>(t.hidden_size), a = static_cast<double>(t.query_projection_size()),
               g = static_cast<double>(t.kv_projection_size());
  return 2 * s_q * h * a + 2 * s_k * h * 2 * g + 4 * s_q * s_k * a + 2 * s_q * a * h;
}

// A linear map [in] -> [out] applied to n rows, forward.
inline double linear(double n, double in, double out) { return 2 * n * in * out; }

}  // namespace megahost::sdk::nn::flops
