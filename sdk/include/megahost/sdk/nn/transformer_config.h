// megahost SDK — the shape and behaviour of a transformer, named as Megatron-Core's
// TransformerConfig (and Megatron-LM's command-line arguments) name them.
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>

namespace megahost::sdk::parallel {
struct ParallelContext;  // megahost/sdk/parallel/mappings.h
}

namespace megahost::sdk::nn {

enum class NormKind { LayerNorm, RMSNorm };
enum class Activation { GeLU, SwiGLU };
// Activation recompute (megahost/sdk/nn/recompute.h): Megatron's None / "selective" (core
// attention only) / "full" (whole layers), and how full picks its layers.
enum class RecomputeGranularity { None, Selective, Full };
enum class RecomputeMethod { None, Uniform, Block };
// Megatron's AttnMaskType of the self-attention: causal (GPT: each token sees its past) or padding
// (BERT, T5's encoder: every real token sees every real token; the mask comes with the batch).
enum class AttnMaskType { Causal, Padding };

struct TransformerConfig {
  int64_t num_layers = 0;
  int64_t hidden_size = 0;
  int64_t num_attention_heads = 0;
  int64_t num_query_groups = 0;  // = num_attention_heads without grouped-query attention
  int64_t kv_channels = 0;       // head dim; Megatron's default hidden_size / heads
  int64_t ffn_hidden_size = 0;   // MLP width (fc1 outputs 2x this under SwiGLU)
  NormKind normalization = NormKind::LayerNorm;
  double norm_epsilon = 1e-5;
  Activation activation = Activation::GeLU;
  bool add_bias_linear = true;  // biases of every linear layer
  bool add_qkv_bias = false;    // bias of linear_qkv even without add_bias_linear
  bool qk_layernorm = false;    // Megatron's --qk-layernorm: q and k normed per head (weights [kv_channels])
  bool bias_activation_fusion = true;  // GeLU MLP: fc1's bias added inside the fused GeLU kernel (CUDA)
  bool gelu_tanh = false;  // GeLU's tanh approximation (Megatron's --openai-gelu, GPT-2's gelu_new); else exact erf
  // Megatron's gradient_accumulation_fusion: on CUDA the layers' weight-gradient GEMMs add
  // straight into the (fp32 main) gradient instead of a separate gradient plus an add.
  bool gradient_accumulation_fusion = true;
  double hidden_dropout = 0.1;
  double attention_dropout = 0.1;
  double init_method_std = 0.02;
  AttnMaskType attn_mask_type = AttnMaskType::Causal;
  // full + uniform: layers in groups of recompute_num_layers, only each group's input kept;
  // full + block: the first recompute_num_layers layers of the stage, each on its own;
  // selective: softmax(QK^T)V with its dropout. 0 layers = unset (Megatron's None).
  RecomputeGranularity recompute_granularity = RecomputeGranularity::None;
  RecomputeMethod recompute_method = RecomputeMethod::None;
  int64_t recompute_num_layers = 0;
  // Tensor / sequence / context parallel groups the blocks run over; null = a single device.
  std::shared_ptr<const parallel::ParallelContext> parallel;

  // Megatron's scaled_init_method_normal: output-side layers (linear_proj, linear_fc2) start
  // with std / sqrt(2 * num_layers) so the residual stream's variance does not grow with depth.
  double output_layer_init_std() const {
    return init_method_std / std::sqrt(2.0 * static_cast<double>(num_layers));
  }
  int64_t query_projection_size() const { return kv_channels * num_attention_heads; }
  int64_t kv_projection_size() const { return kv_channels * num_query_groups; }
};

}  // namespace megahost::sdk::nn
