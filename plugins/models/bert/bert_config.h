// The bert plugin's recipe table: keys named as Megatron-LM's arguments, their schema, defaults
// and the checks of their combinations.
#pragma once

#include <cstdint>

#include "megahost/sdk/host.h"
#include "megahost/sdk/nn/cuda_graph.h"
#include "megahost/sdk/nn/transformer_config.h"

namespace megahost::bert {

struct BertConfig {
  sdk::nn::CudaGraphConfig cuda_graph;     // cuda_graph_impl = "none" | "full_iteration"
  sdk::nn::TransformerConfig transformer;  // the encoder: pre-norm LayerNorm layers, GeLU MLP, padding mask
  int64_t padded_vocab_size = 0;           // from the host (tokenizer vocab padded as Megatron pads it)
  int64_t seq_length = 0;
  int64_t max_position_embeddings = 0;
  bool binary_head = true;                 // Megatron's --bert-binary-head (sentence-order prediction)
  // The masked-LM head over every position, as Megatron-Core's BertLMHead, the loss masked after;
  // else only over the labelled positions (~15%: a sixth of the output layer's work, but a
  // data-dependent count read back to the host). On under full-iteration CUDA graphs, whose
  // recording holds only fixed shapes.
  bool lm_head_every_position = false;
  // Megatron's pretrain_bert: 2 token types with the binary head, none (no table) without it.
  int64_t num_tokentypes() const { return binary_head ? 2 : 0; }
};

// The JSON schema the descriptor publishes (types, defaults, docs).
const char* config_schema_json();

// Reads and checks the [model] table; throws the config service's error naming file:line:key.
BertConfig parse_config(const sdk::Config& cfg, int64_t padded_vocab_size);

// Megatron's divisibility checks against c.transformer.parallel, and the parallel features BERT
// does not have here (context and sequence parallelism).
void check_parallel(const sdk::Config& cfg, const BertConfig& c);

}  // namespace megahost::bert
