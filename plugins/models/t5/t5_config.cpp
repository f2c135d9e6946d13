// The t5 plugin's recipe keys (see t5_config.h).
#include "t5_config.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>

#include "megahost/sdk/error.h"
#include "megahost/sdk/parallel/mappings.h"

namespace megahost::t5 {

namespace {

struct Key {
  const char* name;
  const char* type;
  const char* default_json;  // nullptr: none (required, or derived by the plugin)
  bool required;
  const char* doc;
};

constexpr Key kKeys[] = {
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
};

const Key& key(const char* name) {
  for (const Key& k : kKeys)
    if (std::strcmp(k.name, name) == 0) return k;
  throw sdk::Error(MH_ERR_INTERNAL, sdk::str_cat("t5: no schema entry for key '", name, "'"));
}

double read_float(const sdk::Config& cfg, const char* name) {
  return cfg.get_float(name, std::stod(key(name).default_json));
}
bool read_bool(const sdk::Config& cfg, const char* name) {
  return cfg.get_bool(name, std::strcmp(key(name).default_json, "true") == 0);
}
int64_t read_positive_int(const sdk::Config& cfg, const char* name) {
  if (!cfg.has(name))
    throw cfg.error(name, sdk::str_cat("[model] is missing the required key '", name, "' (", key(name).doc, ")"),
                    sdk::str_cat("add ", name, " = ... to the [model] table"));
  const int64_t v = cfg.get_int(name);
  if (v <= 0) throw cfg.error(name, sdk::str_cat(name, " = ", v, " must be > 0"), "use a positive integer");
  return v;
}
void check_probability(const sdk::Config& cfg, const char* name, double p) {
  if (!(p >= 0.0 && p < 1.0))
    throw cfg.error(name, sdk::str_cat(name, " = ", p, " must be in [0, 1)"), "Megatron's default is 0.1");
}

}  // namespace

const char* config_schema_json() {
  static const std::string schema = [] {
    std::string s = "{";
    for (const Key& k : kKeys) {
      if (s.size() > 1) s += ",";
      s += sdk::str_cat("\"", k.name, "\":{\"type\":\"", k.type, "\"", k.required ? ",\"required\":true" : "",
                        k.default_json ? sdk::str_cat(",\"default\":", k.default_json) : "", ",\"doc\":\"", k.doc,
                        "\"}");
    }
    return s + "}";
  }();
  return schema.c_str();
}

T5Config parse_config(const sdk::Config& cfg, int64_t padded_vocab_size) {
  T5Config c;
  sdk::nn::TransformerConfig& t = c.transformer;
  MH_CHECK(padded_vocab_size > 0, MH_ERR_INVALID_ARG, "t5: padded_vocab_size = ", padded_vocab_size,
           " must be > 0\nHINT: the host takes it from the tokenizer; is a tokenizer configured?");
  c.padded_vocab_size = padded_vocab_size;
  t.num_layers = read_positive_int(cfg, "num_layers");
  t.hidden_size = read_positive_int(cfg, "hidden_size");
  t.num_attention_heads = read_positive_int(cfg, "num_attention_heads");
  // Megatron: --seq-length and --encoder-seq-length name the same length; one sets the other.
  const bool has_enc = cfg.has("encoder_seq_length"), has_seq = cfg.has("seq_length");
  if (!has_enc && !has_seq)
    throw cfg.error("encoder_seq_length", "[model] needs encoder_seq_length (the encoder input length)",
                    "add encoder_seq_length = 512 (Megatron's T5) to [model]");
  c.encoder_seq_length = read_positive_int(cfg, has_enc ? "encoder_seq_length" : "seq_length");
  if (has_enc && has_seq && read_positive_int(cfg, "seq_length") != c.encoder_seq_length)
    throw cfg.error("seq_length",
                    sdk::str_cat("seq_length (", cfg.get_int("seq_length"), ") differs from encoder_seq_length (",
                                 c.encoder_seq_length, "); for T5 they are the same length"),
                    "give only encoder_seq_length");
  c.decoder_seq_length = read_positive_int(cfg, "decoder_seq_length");
  if (cfg.has("kv_channels")) {
    t.kv_channels = read_positive_int(cfg, "kv_channels");
  } else {
    if (t.hidden_size % t.num_attention_heads != 0)
      throw cfg.error("num_attention_heads",
                      sdk::str_cat("hidden_size (", t.hidden_size, ") is not divisible by num_attention_heads (",
                                   t.num_attention_heads, ")"),
                      "pick num_attention_heads dividing hidden_size, or set kv_channels explicitly");
    t.kv_channels = t.hidden_size / t.num_attention_heads;
  }
  t.num_query_groups = t.num_attention_heads;  // T5 has no grouped-query attention
  t.ffn_hidden_size = cfg.has("ffn_hidden_size") ? read_positive_int(cfg, "ffn_hidden_size") : 4 * t.hidden_size;
  t.activation = sdk::nn::Activation::GeLU;
  t.normalization = sdk::nn::NormKind::LayerNorm;
  t.norm_epsilon = read_float(cfg, "norm_epsilon");
  if (!(t.norm_epsilon > 0.0)) throw cfg.error("norm_epsilon", "norm_epsilon must be > 0", "Megatron's default is 1e-5");
  c.max_position_embeddings = cfg.has("max_position_embeddings")
                                  ? read_positive_int(cfg, "max_position_embeddings")
                                  : std::max(c.encoder_seq_length, c.decoder_seq_length);
  for (const auto& [name, len] : {std::pair<const char*, int64_t>{"encoder_seq_length", c.encoder_seq_length},
                                  {"decoder_seq_length", c.decoder_seq_length}})
    if (len > c.max_position_embeddings)
      throw cfg.error(has_enc || std::strcmp(name, "encoder_seq_length") != 0 ? name : "seq_length",
                      sdk::str_cat(name, " (", len, ") exceeds max_position_embeddings (", c.max_position_embeddings,
                                   "): positions past the table have no embedding"),
                      "raise max_position_embeddings (Megatron's T5: 512 for lengths 512 / 128)");
  t.hidden_dropout = read_float(cfg, "hidden_dropout");
  t.attention_dropout = read_float(cfg, "attention_dropout");
  check_probability(cfg, "hidden_dropout", t.hidden_dropout);
  check_probability(cfg, "attention_dropout", t.attention_dropout);
  t.init_method_std = read_float(cfg, "init_method_std");
  if (!(t.init_method_std > 0.0))
    throw cfg.error("init_method_std", "init_method_std must be > 0", "Megatron's default is 0.02");
  t.add_bias_linear = read_bool(cfg, "add_bias_linear");
  return c;
}

void check_parallel(const sdk::Config& cfg, const T5Config& c) {
  if (!c.transformer.parallel) return;
  const sdk::nn::TransformerConfig& t = c.transformer;
  const int64_t tp = t.parallel->tp.size();
  auto multiple_of_tp = [&](const char* name, int64_t v) {
    if (v % tp != 0)
      throw cfg.error(name, sdk::str_cat(name, " (", v, ") must be a multiple of tensor_model_parallel_size (", tp, ")"),
                      sdk::str_cat("each tensor-parallel rank holds ", name, " / ", tp,
                                   "; pick a [parallel] tensor_model_parallel_size that divides it"));
  };
  multiple_of_tp("num_attention_heads", t.num_attention_heads);
  multiple_of_tp("ffn_hidden_size", t.ffn_hidden_size);
  MH_CHECK(c.padded_vocab_size % tp == 0, MH_ERR_INVALID_ARG, "t5: padded_vocab_size (", c.padded_vocab_size,
           ") is not divisible by tensor_model_parallel_size (", tp,
           ")\nHINT: check [parallel] make_vocab_size_divisible_by");
  MH_CHECK(t.parallel->cp.size() == 1, MH_ERR_UNSUPPORTED, "t5: context_parallel_size = ", t.parallel->cp.size(),
           " is not supported by the t5 plugin (padding masks and cross-attention span whole sequences)"
           "\nHINT: set [parallel] context_parallel_size = 1");
  MH_CHECK(!t.parallel->sequence_parallel, MH_ERR_UNSUPPORTED,
           "t5: sequence_parallel is not supported by the t5 plugin (the encoder output feeds every decoder "
           "layer's cross-attention whole)\nHINT: set [parallel] sequence_parallel = false");
}

}  // namespace megahost::t5
