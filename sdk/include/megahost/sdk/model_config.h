// Reading a model plugin's [model] table, written once: the key table that becomes the
// descriptor's JSON schema, readers that fall back to the schema's defaults, and the keys every
// LayerNorm / GeLU encoder-style transformer shares (Megatron-LM's argument names).
//
//   constexpr sdk::ConfigKey kKeys[] = {{"num_layers", "int", nullptr, true, "number of layers"}, ...};
//   const sdk::ConfigSchema& schema() { static const sdk::ConfigSchema s("bert", kKeys); return s; }
//
// The shared readers take their keys' docs and defaults from the plugin's schema, so a plugin
// using them must declare: num_layers, hidden_size, num_attention_heads, ffn_hidden_size,
// kv_channels, norm_epsilon, hidden_dropout, attention_dropout, init_method_std, add_bias_linear.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "megahost/sdk/error.h"
#include "megahost/sdk/host.h"
#include "megahost/sdk/nn/transformer_config.h"
#include "megahost/sdk/parallel/mappings.h"

namespace megahost::sdk {

// One key of the [model] table.
struct ConfigKey {
  const char* name;
  const char* type;          // "int" "float" "bool" "string" ...
  const char* default_json;  // nullptr: none (required, or derived by the plugin)
  bool required;
  const char* doc;
};

class ConfigSchema {
 public:
  template <size_t N>
  ConfigSchema(const char* plugin, const ConfigKey (&keys)[N]) : plugin_(plugin), keys_(keys), n_(N) {
    json_ = "{";
    for (const ConfigKey& k : *this) {
      if (json_.size() > 1) json_ += ",";
      json_ += str_cat("\"", k.name, "\":{\"type\":\"", k.type, "\"", k.required ? ",\"required\":true" : "",
                       k.default_json ? str_cat(",\"default\":", k.default_json) : "", ",\"doc\":\"", k.doc, "\"}");
    }
    json_ += "}";
  }

  const char* plugin() const { return plugin_; }
  const char* json() const { return json_.c_str(); }  // the descriptor's config_schema
  const ConfigKey* begin() const { return keys_; }
  const ConfigKey* end() const { return keys_ + n_; }

  const ConfigKey& key(const char* name) const {
    for (const ConfigKey& k : *this)
      if (std::strcmp(k.name, name) == 0) return k;
    throw Error(MH_ERR_INTERNAL, str_cat(plugin_, ": no schema entry for key '", name, "'"));
  }

  // Fall back to the schema default: the plugin behaves the same whether or not the host filled it.
  double read_float(const Config& cfg, const char* name) const {
    return cfg.get_float(name, std::stod(key(name).default_json));
  }
  bool read_bool(const Config& cfg, const char* name) const {
    return cfg.get_bool(name, std::strcmp(key(name).default_json, "true") == 0);
  }
  // Present and > 0.
  int64_t read_positive_int(const Config& cfg, const char* name) const {
    if (!cfg.has(name))
      throw cfg.error(name, str_cat("[model] is missing the required key '", name, "' (", key(name).doc, ")"),
                      str_cat("add ", name, " = ... to the [model] table"));
    const int64_t v = cfg.get_int(name);
    if (v <= 0) throw cfg.error(name, str_cat(name, " = ", v, " must be > 0"), "use a positive integer");
    return v;
  }

 private:
  const char* plugin_;
  const ConfigKey* keys_;
  size_t n_;
  std::string json_;
};

inline void check_probability(const Config& cfg, const char* name, double p) {
  if (!(p >= 0.0 && p < 1.0))
    throw cfg.error(name, str_cat(name, " = ", p, " must be in [0, 1)"), "Megatron's default is 0.1");
}

inline void check_padded_vocab_size(const char* plugin, int64_t padded_vocab_size) {
  MH_CHECK(padded_vocab_size > 0, MH_ERR_INVALID_ARG, plugin, ": padded_vocab_size = ", padded_vocab_size,
           " must be > 0\nHINT: the host takes it from the tokenizer; is a tokenizer configured?");
}

// ---- the encoder-style transformer's keys, in three steps so a plugin reads its own keys between ----

// num_layers, hidden_size, num_attention_heads (all required).
inline void read_transformer_sizes(const ConfigSchema& s, const Config& cfg, nn::TransformerConfig& t) {
  t.num_layers = s.read_positive_int(cfg, "num_layers");
  t.hidden_size = s.read_positive_int(cfg, "hidden_size");
  t.num_attention_heads = s.read_positive_int(cfg, "num_attention_heads");
}

// kv_channels (default hidden / heads), ffn_hidden_size (default 4 * hidden), no grouped-query
// attention, GeLU MLP, LayerNorm with norm_epsilon.
inline void read_encoder_widths_and_norm(const ConfigSchema& s, const Config& cfg, nn::TransformerConfig& t) {
  if (cfg.has("kv_channels")) {
    t.kv_channels = s.read_positive_int(cfg, "kv_channels");
  } else {
    if (t.hidden_size % t.num_attention_heads != 0)
      throw cfg.error("num_attention_heads",
                      str_cat("hidden_size (", t.hidden_size, ") is not divisible by num_attention_heads (",
                              t.num_attention_heads, ")"),
                      "pick num_attention_heads dividing hidden_size, or set kv_channels explicitly");
    t.kv_channels = t.hidden_size / t.num_attention_heads;
  }
  t.num_query_groups = t.num_attention_heads;
  t.ffn_hidden_size = cfg.has("ffn_hidden_size") ? s.read_positive_int(cfg, "ffn_hidden_size") : 4 * t.hidden_size;
  t.activation = nn::Activation::GeLU;
  t.normalization = nn::NormKind::LayerNorm;
  t.norm_epsilon = s.read_float(cfg, "norm_epsilon");
  if (!(t.norm_epsilon > 0.0))
    throw cfg.error("norm_epsilon", "norm_epsilon must be > 0", "Megatron's default is 1e-5");
}

// hidden_dropout, attention_dropout, init_method_std, add_bias_linear.
inline void read_dropout_and_init(const ConfigSchema& s, const Config& cfg, nn::TransformerConfig& t) {
  t.hidden_dropout = s.read_float(cfg, "hidden_dropout");
  t.attention_dropout = s.read_float(cfg, "attention_dropout");
  check_probability(cfg, "hidden_dropout", t.hidden_dropout);
  check_probability(cfg, "attention_dropout", t.attention_dropout);
  t.init_method_std = s.read_float(cfg, "init_method_std");
  if (!(t.init_method_std > 0.0))
    throw cfg.error("init_method_std", "init_method_std must be > 0", "Megatron's default is 0.02");
  t.add_bias_linear = s.read_bool(cfg, "add_bias_linear");
}

// Megatron's tensor-parallel divisibility: heads, MLP width and the padded vocabulary split over tp.
inline void check_tensor_parallel_sizes(const char* plugin, const Config& cfg, const nn::TransformerConfig& t,
                                        int64_t padded_vocab_size) {
  const int64_t tp = t.parallel->tp.size();
  auto multiple_of_tp = [&](const char* name, int64_t v) {
    if (v % tp != 0)
      throw cfg.error(name, str_cat(name, " (", v, ") must be a multiple of tensor_model_parallel_size (", tp, ")"),
                      str_cat("each tensor-parallel rank holds ", name, " / ", tp,
                              "; pick a [parallel] tensor_model_parallel_size that divides it"));
  };
  multiple_of_tp("num_attention_heads", t.num_attention_heads);
  multiple_of_tp("ffn_hidden_size", t.ffn_hidden_size);
  MH_CHECK(padded_vocab_size % tp == 0, MH_ERR_INVALID_ARG, plugin, ": padded_vocab_size (", padded_vocab_size,
           ") is not divisible by tensor_model_parallel_size (", tp,
           ")\nHINT: check [parallel] make_vocab_size_divisible_by");
}

}  // namespace megahost::sdk
