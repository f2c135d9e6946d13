// The bert plugin's recipe keys (see bert_config.h).
#include "bert_config.h"

#include "megahost/sdk/error.h"
#include "megahost/sdk/model_config.h"
#include "megahost/sdk/nn/cuda_graph.h"
#include "megahost/sdk/parallel/mappings.h"

namespace megahost::bert {

namespace {

constexpr sdk::ConfigKey kKeys[] = {
    {"num_layers", "int", nullptr, true, "number of encoder layers"},
    {"hidden_size", "int", nullptr, true, "transformer hidden size"},
    {"num_attention_heads", "int", nullptr, true, "number of attention heads"},
    {"ffn_hidden_size", "int", nullptr, false, "MLP width; default 4*hidden_size"},
    {"kv_channels", "int", nullptr, false, "head dim; default hidden_size / num_attention_heads"},
    {"seq_length", "int", nullptr, true, "training sequence length (samples are padded to it)"},
    {"max_position_embeddings", "int", nullptr, false, "learned position table size; default seq_length"},
    {"bert_binary_head", "bool", "true", false,
     "sentence-order head on [CLS] (pooler + 2-way linear) and sentence-pair samples with token types"},
    {"norm_epsilon", "float", "1e-05", false, "epsilon of the LayerNorms"},
    {"hidden_dropout", "float", "0.1", false, "dropout after embeddings, attention and MLP"},
    {"attention_dropout", "float", "0.1", false, "dropout on attention probabilities"},
    {"init_method_std", "float", "0.02", false, "std of the normal init of weights"},
    {"add_bias_linear", "bool", "true", false, "biases in the encoder's linear layers"},
    {"attention_backend", "string", "\"auto\"", false,
     "attention kernels: auto | flash | cudnn (Megatron: fused) | efficient | math (Megatron: unfused, local)"},
    {"cuda_graph_impl", "string", "\"none\"", false, sdk::nn::kCudaGraphImplDoc},
    {"cuda_graph_warmup_steps", "int", "3", false, sdk::nn::kCudaGraphWarmupDoc},
};

const sdk::ConfigSchema& schema() {
  static const sdk::ConfigSchema s("bert", kKeys);
  return s;
}

}  // namespace

const char* config_schema_json() { return schema().json(); }

BertConfig parse_config(const sdk::Config& cfg, int64_t padded_vocab_size) {
  BertConfig c;
  sdk::nn::TransformerConfig& t = c.transformer;
  const sdk::ConfigSchema& keys = schema();
  sdk::check_padded_vocab_size("bert", padded_vocab_size);
  c.padded_vocab_size = padded_vocab_size;
  sdk::read_transformer_sizes(keys, cfg, t);
  c.seq_length = keys.read_positive_int(cfg, "seq_length");
  sdk::read_encoder_widths_and_norm(keys, cfg, t);  // BERT has no grouped-query attention
  c.max_position_embeddings =
      cfg.has("max_position_embeddings") ? keys.read_positive_int(cfg, "max_position_embeddings") : c.seq_length;
  if (c.seq_length > c.max_position_embeddings)
    throw cfg.error("seq_length",
                    sdk::str_cat("seq_length (", c.seq_length, ") exceeds max_position_embeddings (",
                                 c.max_position_embeddings, "): positions past the table have no embedding"),
                    "raise max_position_embeddings or lower seq_length (Megatron's BERT: both 512)");
  c.binary_head = keys.read_bool(cfg, "bert_binary_head");
  sdk::read_dropout_and_init(keys, cfg, t);
  c.cuda_graph = sdk::nn::parse_cuda_graph(cfg, t.hidden_dropout, t.attention_dropout, /*recompute=*/false);
  c.lm_head_every_position = c.cuda_graph.full_iteration;
  return c;
}

void check_parallel(const sdk::Config& cfg, const BertConfig& c) {
  if (!c.transformer.parallel) return;
  const sdk::nn::TransformerConfig& t = c.transformer;
  sdk::check_tensor_parallel_sizes("bert", cfg, t, c.padded_vocab_size);
  MH_CHECK(t.parallel->cp.size() == 1, MH_ERR_UNSUPPORTED, "bert: context_parallel_size = ", t.parallel->cp.size(),
           " is not supported by the bert plugin (the padding mask spans the whole sequence)"
           "\nHINT: set [parallel] context_parallel_size = 1");
  MH_CHECK(!t.parallel->sequence_parallel, MH_ERR_UNSUPPORTED,
           "bert: sequence_parallel is not supported by the bert plugin (its heads are replicated layers over the "
           "whole sequence)\nHINT: set [parallel] sequence_parallel = false");
}

}  // namespace megahost::bert
