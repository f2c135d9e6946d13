// The gpt plugin's recipe table: keys named as Megatron-LM's arguments, their schema, defaults
// and the checks of their combinations.
#pragma once

#include <cstdint>
#include <string>

#include "megahost/sdk/host.h"
#include "megahost/sdk/nn/cuda_graph.h"
#include "megahost/sdk/nn/transformer_config.h"

namespace megahost::gpt {

enum class PositionEmbedding { LearnedAbsolute, Rope, None };

struct GptConfig {
  sdk::nn::TransformerConfig transformer;
  int64_t padded_vocab_size = 0;        // from the host (tokenizer vocab padded as Megatron pads it)
  int64_t seq_length = 0;
  int64_t max_position_embeddings = 0;  // rows of embedding.position_embeddings (learned_absolute)
  PositionEmbedding position_embedding = PositionEmbedding::LearnedAbsolute;
  double rotary_percent = 1.0;
  double rotary_base = 10000.0;
  bool use_rope_scaling = false;      // Llama 3.1's frequency scaling (sdk::nn::RopeScaling)
  double rope_scaling_factor = 8.0;
  double rotary_seq_len_interpolation_factor = 1.0;  // rope positions / this (linear interpolation)
  bool untie_embeddings_and_output_weights = false;
  std::string attention_backend = "auto";  // sdk::nn::select_attention_backend
  sdk::nn::CudaGraphConfig cuda_graph;     // cuda_graph_impl, cuda_graph_warmup_steps
};

// The JSON schema the descriptor publishes (types, defaults, docs).
const char* config_schema_json();

// Reads and checks the [model] table; throws the config service's error naming file:line:key.
GptConfig parse_config(const sdk::Config& cfg, int64_t padded_vocab_size);

// Megatron's divisibility checks against c.transformer.parallel (heads, query groups, ffn and
// vocab by the tensor-parallel size; seq_length by 2 * context-parallel size, ...).
void check_parallel(const sdk::Config& cfg, const GptConfig& c);

// Training FLOPs per sample (sdk/nn/flops.h): every layer's products and the output layer over
// seq_length tokens. Megatron's num_floating_point_operations, so grouped-query attention and
// SwiGLU count what they compute (GPT's 72 s l h^2 (1 + s / 6h + V / 12lh) for the GPT-2 shape).
double train_flops_per_sample(const GptConfig& c);

}  // namespace megahost::gpt
