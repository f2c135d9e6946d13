// The t5 plugin's recipe table: keys named as Megatron-LM's arguments, their schema, defaults
// and the checks of their combinations.
#pragma once

#include <cstdint>

#include "megahost/sdk/host.h"
#include "megahost/sdk/nn/cuda_graph.h"
#include "megahost/sdk/nn/transformer_config.h"

namespace megahost::t5 {

struct T5Config {
  sdk::nn::CudaGraphConfig cuda_graph;     // cuda_graph_impl = "none" | "full_iteration"
  sdk::nn::TransformerConfig transformer;  // encoder and decoder: pre-norm LayerNorm layers, GeLU MLP
  int64_t padded_vocab_size = 0;           // from the host (tokenizer vocab + [BOS] [EOS] + sentinels, padded)
  int64_t encoder_seq_length = 0;          // --encoder-seq-length (= --seq-length)
  int64_t decoder_seq_length = 0;          // --decoder-seq-length
  int64_t max_position_embeddings = 0;     // one learned table shared by encoder and decoder
  // The LM head over every decoder position, as Megatron-Core's T5LMHead, the loss masked after;
  // else only over the labelled ones (a data-dependent count read back to the host). On under
  // full-iteration CUDA graphs, whose recording holds only fixed shapes.
  bool lm_head_every_position = false;
};

// The JSON schema the descriptor publishes (types, defaults, docs).
const char* config_schema_json();

// Reads and checks the [model] table; throws the config service's error naming file:line:key.
T5Config parse_config(const sdk::Config& cfg, int64_t padded_vocab_size);

// Megatron's divisibility checks against c.transformer.parallel, and the parallel features T5
// does not have here (context and sequence parallelism).
void check_parallel(const sdk::Config& cfg, const T5Config& c);

}  // namespace megahost::t5
