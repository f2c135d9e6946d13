// The t5 plugin's recipe keys (see t5_config.h).
#include "t5_config.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>

#include "megahost/sdk/error.h"
#include "megahost/sdk/model_config.h"
#include "megahost/sdk/nn/cuda_graph.h"
#include "megahost/sdk/parallel/mappings.h"

namespace megahost::t5 {

namespace {

constexpr sdk::ConfigKey kKeys[] = {
    {"num_layers", "int", nullptr, true, "number of encoder layers and of decoder layers"},
    {"hidden_size", "int", nullptr, true, "transformer hidden size"},
    {"num_attention_heads", "int", nullptr, true, "number of attention heads"},
    {"ffn_hidden_size", "int", nullptr, false, "MLP width; default 4*hidden_size"},
    {"kv_channels", "int", nullptr, false, "head dim; default hidden_size / num_attention_heads"},
    {"encoder_seq_length", "int", nullptr, false, "encoder input length (Megatron's --encoder-seq-length)"},
    {"seq_length", "int", nullptr, false, "the same as encoder_seq_length (Megatron sets one from the other)"},
    {"decoder_seq_length", "int", nullptr, true, "decoder input length (Megatron's --decoder-seq-length)"},
    {"max_position_embeddings", "int", nullptr, false,
     "learned position table shared by encoder and decoder; default max(encoder, decoder) length"},
    {"norm_epsilon", "float", "1e-05", false, "epsilon of the LayerNorms"},
    {"hidden_dropout", "float", "0.1", false, "dropout after embeddings, attention and MLP"},
    {"attention_dropout", "float", "0.1", false, "dropout on attention probabilities"},
    {"init_method_std", "float", "0.02", false, "std of the normal init of weights"},
    {"add_bias_linear", "bool", "true", false, "biases in the linear layers"},
    {"attention_backend", "string", "\"auto\"", false,
     "attention kernels: auto | flash | cudnn (Megatron: fused) | efficient | math (Megatron: unfused, local)"},
    {"cuda_graph_impl", "string", "\"none\"", false, sdk::nn::kCudaGraphImplDoc},
    {"cuda_graph_warmup_steps", "int", "3", false, sdk::nn::kCudaGraphWarmupDoc},
};

const sdk::ConfigSchema& schema() {
  static const sdk::ConfigSchema s("t5", kKeys);
  return s;
}

}  // namespace

const char* config_schema_json() { return schema().json(); }

T5Config parse_config(const sdk::Config& cfg, int64_t padded_vocab_size) {
  T5Config c;
  sdk::nn::TransformerConfig& t = c.transformer;
  const sdk::ConfigSchema& keys = schema();
  sdk::check_padded_vocab_size("t5", padded_vocab_size);
  c.padded_vocab_size = padded_vocab_size;
  sdk::read_transformer_sizes(keys, cfg, t);
  // Megatron: --seq-length and --encoder-seq-length name the same length; one sets the other.
  const bool has_enc = cfg.has("encoder_seq_length"), has_seq = cfg.has("seq_length");
  if (!has_enc && !has_seq)
    throw cfg.error("encoder_seq_length", "[model] needs encoder_seq_length (the encoder input length)",
                    "add encoder_seq_length = 512 (Megatron's T5) to [model]");
  c.encoder_seq_length = keys.read_positive_int(cfg, has_enc ? "encoder_seq_length" : "seq_length");
  if (has_enc && has_seq && keys.read_positive_int(cfg, "seq_length") != c.encoder_seq_length)
    throw cfg.error("seq_length",
                    sdk::str_cat("seq_length (", cfg.get_int("seq_length"), ") differs from encoder_seq_length (",
                                 c.encoder_seq_length, "); for T5 they are the same length"),
                    "give only encoder_seq_length");
  c.decoder_seq_length = keys.read_positive_int(cfg, "decoder_seq_length");
  sdk::read_encoder_widths_and_norm(keys, cfg, t);  // T5 has no grouped-query attention
  c.max_position_embeddings = cfg.has("max_position_embeddings")
                                  ? keys.read_positive_int(cfg, "max_position_embeddings")
                                  : std::max(c.encoder_seq_length, c.decoder_seq_length);
  for (const auto& [name, len] : {std::pair<const char*, int64_t>{"encoder_seq_length", c.encoder_seq_length},
                                  {"decoder_seq_length", c.decoder_seq_length}})
    if (len > c.max_position_embeddings)
      throw cfg.error(has_enc || std::strcmp(name, "encoder_seq_length") != 0 ? name : "seq_length",
                      sdk::str_cat(name, " (", len, ") exceeds max_position_embeddings (", c.max_position_embeddings,
                                   "): positions past the table have no embedding"),
                      "raise max_position_embeddings (Megatron's T5: 512 for lengths 512 / 128)");
  sdk::read_dropout_and_init(keys, cfg, t);
  c.cuda_graph = sdk::nn::parse_cuda_graph(cfg, t.hidden_dropout, t.attention_dropout, /*recompute=*/false);
  c.lm_head_every_position = c.cuda_graph.full_iteration;
  return c;
}

void check_parallel(const sdk::Config& cfg, const T5Config& c) {
  if (!c.transformer.parallel) return;
  const sdk::nn::TransformerConfig& t = c.transformer;
  sdk::check_tensor_parallel_sizes("t5", cfg, t, c.padded_vocab_size);
  MH_CHECK(t.parallel->cp.size() == 1, MH_ERR_UNSUPPORTED, "t5: context_parallel_size = ", t.parallel->cp.size(),
           " is not supported by the t5 plugin (padding masks and cross-attention span whole sequences)"
           "\nHINT: set [parallel] context_parallel_size = 1");
  MH_CHECK(!t.parallel->sequence_parallel, MH_ERR_UNSUPPORTED,
           "t5: sequence_parallel is not supported by the t5 plugin (the encoder output feeds every decoder "
           "layer's cross-attention whole)\nHINT: set [parallel] sequence_parallel = false");
}

}  // namespace megahost::t5
