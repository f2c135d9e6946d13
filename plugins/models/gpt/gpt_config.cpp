// The gpt plugin's recipe keys (see gpt_config.h).
#include "gpt_config.h"

#include <cstring>
#include <string>

#include "megahost/sdk/error.h"
#include "megahost/sdk/nn/flops.h"
#include "megahost/sdk/nn/norm.h"
#include "megahost/sdk/nn/recompute.h"
#include "megahost/sdk/parallel/mappings.h"

namespace megahost::gpt {

namespace {

// One recipe key. default_json is the schema default (nullptr: none; the plugin derives it).
struct Key {
  const char* name;
  const char* type;
  const char* default_json;
  bool required;
  const char* doc;
};

constexpr Key kKeys[] = {
    {"num_layers", "int", nullptr, true, "number of transformer layers"},
    {"hidden_size", "int", nullptr, true, "transformer hidden size"},
    {"num_attention_heads", "int", nullptr, true, "number of attention heads"},
    {"ffn_hidden_size", "int", nullptr, false, "MLP width; default 4*hidden_size (SwiGLU: int(8*hidden/3/64)*64)"},
    {"kv_channels", "int", nullptr, false, "head dim; default hidden_size / num_attention_heads"},
    {"group_query_attention", "bool", "false", false, "use grouped-query attention (num_query_groups)"},
    {"num_query_groups", "int", nullptr, false, "key/value groups under group_query_attention; default 1"},
    {"seq_length", "int", nullptr, true, "training sequence length"},
    {"max_position_embeddings", "int", nullptr, false, "learned position table size; default seq_length"},
    {"position_embedding_type", "string", "\"learned_absolute\"", false, "learned_absolute | rope | none"},
    {"rotary_percent", "float", "1.0", false, "fraction of each head's dims that rotate (rope)"},
    {"rotary_base", "float", "10000", false, "rope base period"},
    {"use_rope_scaling", "bool", "false", false,
     "Llama 3.1's rope frequency scaling (low / high frequency factors 1 / 4, original context 8192)"},
    {"rope_scaling_factor", "float", "8.0", false, "the factor of use_rope_scaling (Llama 3.1: 8, 3.2: 32)"},
    {"rotary_seq_len_interpolation_factor", "float", "1.0", false,
     "rope positions divided by this (linear position interpolation; 1: none)"},
    {"normalization", "string", "\"LayerNorm\"", false, "LayerNorm | RMSNorm"},
    {"norm_epsilon", "float", "1e-05", false, "epsilon of the norms"},
    {"swiglu", "bool", "false", false, "SwiGLU MLP (fc1 outputs 2*ffn_hidden_size) instead of GeLU"},
    {"untie_embeddings_and_output_weights", "bool", "false", false, "separate output_layer.weight"},
    {"hidden_dropout", "float", "0.1", false, "dropout after embeddings, attention and MLP"},
    {"attention_dropout", "float", "0.1", false, "dropout on attention probabilities"},
    {"init_method_std", "float", "0.02", false, "std of the normal init of weights"},
    {"add_bias_linear", "bool", "true", false, "biases in every linear layer"},
    {"add_qkv_bias", "bool", "false", false, "bias in linear_qkv even when add_bias_linear = false"},
    {"qk_layernorm", "bool", "false", false,
     "q and k normed per head (the normalization kind, weights [kv_channels]) before the rotation"},
    {"attention_backend", "string", "\"auto\"", false,
     "attention kernels: auto | flash | cudnn (Megatron: fused) | efficient | math (Megatron: unfused, local)"},
    {"use_flash_attn", "bool", "false", false, "Megatron's --use-flash-attn: attention_backend = flash"},
    {"bias_gelu_fusion", "bool", "true", false,
     "GeLU MLP on CUDA: fc1's bias added inside the GeLU (erf: a fused kernel; tanh: fc1's cuBLASLt epilogue, "
     "the GeLU gradient in fc2's)"},
    {"gelu_approximation", "string", "\"none\"", false,
     "GeLU: none (exact erf) | tanh (Megatron's fused bias_gelu and --openai-gelu, GPT-2's gelu_new)"},
    {"gradient_accumulation_fusion", "bool", "true", false,
     "CUDA: weight gradients added by the GEMM straight into the fp32 main gradient (Megatron's name)"},
    {"recompute_granularity", "string", "\"none\"", false,
     "activation recompute: none | selective (core attention) | full (whole layers, needs recompute_method)"},
    {"recompute_method", "string", nullptr, false,
     "with full: uniform (groups of recompute_num_layers layers) | block (first recompute_num_layers layers per stage)"},
    {"recompute_num_layers", "int", nullptr, false, "with full: layers per group (uniform) or layers recomputed (block)"},
    {"recompute_activations", "bool", "false", false, "Megatron's shorthand for recompute_granularity = selective"},
    {"cuda_graph_impl", "string", "\"none\"", false, sdk::nn::kCudaGraphImplDoc},
    {"cuda_graph_warmup_steps", "int", "3", false, sdk::nn::kCudaGraphWarmupDoc},
};

const Key& key(const char* name) {
  for (const Key& k : kKeys)
    if (std::strcmp(k.name, name) == 0) return k;
  throw sdk::Error(MH_ERR_INTERNAL, sdk::str_cat("gpt: no schema entry for key '", name, "'"));
}

// Readers that fall back to the schema default, so the plugin behaves the same whether or not
// the host filled defaults in.
int64_t read_int(const sdk::Config& cfg, const char* name, int64_t fallback) { return cfg.get_int(name, fallback); }
double read_float(const sdk::Config& cfg, const char* name) {
  return cfg.get_float(name, std::stod(key(name).default_json));
}
bool read_bool(const sdk::Config& cfg, const char* name) {
  return cfg.get_bool(name, std::strcmp(key(name).default_json, "true") == 0);
}
std::string read_string(const sdk::Config& cfg, const char* name) {
  const std::string quoted = key(name).default_json;
  return cfg.get_string(name, quoted.substr(1, quoted.size() - 2));
}
int64_t read_required_int(const sdk::Config& cfg, const char* name) {
  if (!cfg.has(name))
    throw cfg.error(name, sdk::str_cat("[model] is missing the required key '", name, "' (", key(name).doc, ")"),
                    sdk::str_cat("add ", name, " = ... to the [model] table"));
  return cfg.get_int(name);
}

void check_positive(const sdk::Config& cfg, const char* name, int64_t v) {
  if (v <= 0) throw cfg.error(name, sdk::str_cat(name, " = ", v, " must be > 0"), "use a positive integer");
}

void check_probability(const sdk::Config& cfg, const char* name, double p) {
  if (!(p >= 0.0 && p < 1.0))
    throw cfg.error(name, sdk::str_cat(name, " = ", p, " must be in [0, 1)"), "Megatron's default is 0.1");
}

// Activation recompute: Megatron's --recompute-* arguments and Megatron-Core's checks of them.
void parse_recompute(const sdk::Config& cfg, sdk::nn::TransformerConfig* t) {
  std::string granularity = read_string(cfg, "recompute_granularity");
  if (read_bool(cfg, "recompute_activations")) {  // Megatron: recompute_activations -> selective
    if (granularity != "none" && granularity != "selective")
      throw cfg.error("recompute_activations",
                      sdk::str_cat("recompute_activations = true means recompute_granularity = \"selective\", but "
                                   "recompute_granularity = \"", granularity, "\""),
                      "drop recompute_activations, or recompute_granularity");
    granularity = "selective";
  }
  if (!sdk::nn::parse_recompute_granularity(granularity, &t->recompute_granularity))
    throw cfg.error("recompute_granularity", sdk::str_cat("unknown recompute_granularity '", granularity, "'"),
                    "use \"none\", \"selective\" (core attention) or \"full\" (whole layers)");
  if (cfg.has("recompute_method")) {
    const std::string method = cfg.get_string("recompute_method");
    if (!sdk::nn::parse_recompute_method(method, &t->recompute_method))
      throw cfg.error("recompute_method", sdk::str_cat("unknown recompute_method '", method, "'"),
                      "use \"uniform\" or \"block\"");
  }
  if (cfg.has("recompute_num_layers")) {
    t->recompute_num_layers = cfg.get_int("recompute_num_layers");
    if (t->recompute_num_layers < 1)
      throw cfg.error("recompute_num_layers",
                      sdk::str_cat("recompute_num_layers = ", t->recompute_num_layers, " must be >= 1"),
                      "e.g. recompute_num_layers = 1");
  }
  if (auto issue = sdk::nn::find_recompute_issue(*t)) {
    // A missing key has no line: blame recompute_granularity, the key that asked for it.
    const char* blame = cfg.has(issue->key.c_str()) ? issue->key.c_str() : "recompute_granularity";
    throw cfg.error(blame, issue->message, issue->hint);
  }
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

GptConfig parse_config(const sdk::Config& cfg, int64_t padded_vocab_size) {
  GptConfig c;
  sdk::nn::TransformerConfig& t = c.transformer;
  MH_CHECK(padded_vocab_size > 0, MH_ERR_INVALID_ARG, "gpt: padded_vocab_size = ", padded_vocab_size,
           " must be > 0\nHINT: the host takes it from the tokenizer; is a tokenizer configured?");
  c.padded_vocab_size = padded_vocab_size;

  t.num_layers = read_required_int(cfg, "num_layers");
  t.hidden_size = read_required_int(cfg, "hidden_size");
  t.num_attention_heads = read_required_int(cfg, "num_attention_heads");
  c.seq_length = read_required_int(cfg, "seq_length");
  check_positive(cfg, "num_layers", t.num_layers);
  check_positive(cfg, "hidden_size", t.hidden_size);
  check_positive(cfg, "num_attention_heads", t.num_attention_heads);
  check_positive(cfg, "seq_length", c.seq_length);

  // Head dim: Megatron requires hidden % heads only when it derives kv_channels.
  if (cfg.has("kv_channels")) {
    t.kv_channels = cfg.get_int("kv_channels");
    check_positive(cfg, "kv_channels", t.kv_channels);
  } else {
    if (t.hidden_size % t.num_attention_heads != 0)
      throw cfg.error("num_attention_heads",
                      sdk::str_cat("hidden_size (", t.hidden_size, ") is not divisible by num_attention_heads (",
                                   t.num_attention_heads, ")"),
                      "pick num_attention_heads dividing hidden_size, or set kv_channels explicitly");
    t.kv_channels = t.hidden_size / t.num_attention_heads;
  }

  // Grouped-query attention, as Megatron: num_query_groups counts only with group_query_attention.
  const bool gqa = read_bool(cfg, "group_query_attention");
  if (!gqa && cfg.has("num_query_groups") && cfg.get_int("num_query_groups") != t.num_attention_heads)
    throw cfg.error("num_query_groups", "num_query_groups is set but group_query_attention is false",
                    "add group_query_attention = true (Megatron ignores num_query_groups without it)");
  t.num_query_groups = gqa ? read_int(cfg, "num_query_groups", 1) : t.num_attention_heads;
  check_positive(cfg, "num_query_groups", t.num_query_groups);
  if (t.num_attention_heads % t.num_query_groups != 0)
    throw cfg.error("num_query_groups",
                    sdk::str_cat("num_attention_heads (", t.num_attention_heads,
                                 ") is not divisible by num_query_groups (", t.num_query_groups, ")"),
                    "each query group serves the same number of heads; pick a divisor");

  // MLP
  t.activation = read_bool(cfg, "swiglu") ? sdk::nn::Activation::SwiGLU : sdk::nn::Activation::GeLU;
  if (cfg.has("ffn_hidden_size")) {
    t.ffn_hidden_size = cfg.get_int("ffn_hidden_size");
  } else if (t.activation == sdk::nn::Activation::SwiGLU) {
    // Megatron keeps the parameter count of a 4h GeLU MLP, rounded down to a multiple of 64.
    t.ffn_hidden_size = (8 * t.hidden_size / 3) / 64 * 64;
  } else {
    t.ffn_hidden_size = 4 * t.hidden_size;
  }
  if (t.ffn_hidden_size <= 0)
    throw cfg.error("ffn_hidden_size", sdk::str_cat("ffn_hidden_size = ", t.ffn_hidden_size, " must be > 0"),
                    "with swiglu and a small hidden_size the default int(8*h/3/64)*64 is 0; set "
                    "ffn_hidden_size explicitly");

  // Norms
  const std::string norm = read_string(cfg, "normalization");
  if (!sdk::nn::parse_norm_kind(norm, &t.normalization))
    throw cfg.error("normalization", sdk::str_cat("unknown normalization '", norm, "'"),
                    "use \"LayerNorm\" or \"RMSNorm\"");
  t.norm_epsilon = read_float(cfg, "norm_epsilon");
  if (!(t.norm_epsilon > 0.0))
    throw cfg.error("norm_epsilon", "norm_epsilon must be > 0", "Megatron's default is 1e-5");

  // Positions
  const std::string pos = read_string(cfg, "position_embedding_type");
  if (pos == "learned_absolute") c.position_embedding = PositionEmbedding::LearnedAbsolute;
  else if (pos == "rope") c.position_embedding = PositionEmbedding::Rope;
  else if (pos == "none") c.position_embedding = PositionEmbedding::None;
  else
    throw cfg.error("position_embedding_type", sdk::str_cat("unknown position_embedding_type '", pos, "'"),
                    "use \"learned_absolute\", \"rope\" or \"none\"");
  c.max_position_embeddings = read_int(cfg, "max_position_embeddings", c.seq_length);
  check_positive(cfg, "max_position_embeddings", c.max_position_embeddings);
  if (c.position_embedding == PositionEmbedding::LearnedAbsolute && c.seq_length > c.max_position_embeddings)
    throw cfg.error("seq_length",
                    sdk::str_cat("seq_length (", c.seq_length, ") exceeds max_position_embeddings (",
                                 c.max_position_embeddings, ") with learned_absolute positions"),
                    "raise max_position_embeddings or lower seq_length");
  c.rotary_percent = read_float(cfg, "rotary_percent");
  c.rotary_base = read_float(cfg, "rotary_base");
  if (c.position_embedding == PositionEmbedding::Rope) {
    const double dim = static_cast<double>(t.kv_channels) * c.rotary_percent;
    const auto idim = static_cast<int64_t>(dim);
    if (!(c.rotary_percent > 0.0 && c.rotary_percent <= 1.0) || idim <= 0 || idim % 2 != 0)
      throw cfg.error("rotary_percent",
                      sdk::str_cat("rotary_percent = ", c.rotary_percent, " gives int(kv_channels * rotary_percent) = ",
                                   idim, " rotating dims; it must be in (0, 1] and give an even, positive count"),
                      sdk::str_cat("kv_channels is ", t.kv_channels, "; e.g. rotary_percent = 1.0 or 0.5"));
    if (!(c.rotary_base > 0.0)) throw cfg.error("rotary_base", "rotary_base must be > 0", "usually 10000");
  }
  c.use_rope_scaling = read_bool(cfg, "use_rope_scaling");
  c.rope_scaling_factor = read_float(cfg, "rope_scaling_factor");
  if (c.use_rope_scaling && c.position_embedding != PositionEmbedding::Rope)
    throw cfg.error("use_rope_scaling", "use_rope_scaling scales rotary frequencies, but positions are not rope",
                    "set position_embedding_type = \"rope\", or drop use_rope_scaling");
  c.rotary_seq_len_interpolation_factor = read_float(cfg, "rotary_seq_len_interpolation_factor");
  if (!(c.rotary_seq_len_interpolation_factor >= 1.0))
    throw cfg.error("rotary_seq_len_interpolation_factor",
                    sdk::str_cat("rotary_seq_len_interpolation_factor = ", c.rotary_seq_len_interpolation_factor,
                                 " must be >= 1"),
                    "the context's growth over the pretraining one, e.g. 4 for 4096 -> 16384; 1 for none");
  if (c.use_rope_scaling && !(c.rope_scaling_factor >= 1.0))
    throw cfg.error("rope_scaling_factor",
                    sdk::str_cat("rope_scaling_factor = ", c.rope_scaling_factor, " must be >= 1"),
                    "Llama 3.1 uses 8, Llama 3.2 32");

  // The rest
  c.untie_embeddings_and_output_weights = read_bool(cfg, "untie_embeddings_and_output_weights");
  t.hidden_dropout = read_float(cfg, "hidden_dropout");
  t.attention_dropout = read_float(cfg, "attention_dropout");
  check_probability(cfg, "hidden_dropout", t.hidden_dropout);
  check_probability(cfg, "attention_dropout", t.attention_dropout);
  t.init_method_std = read_float(cfg, "init_method_std");
  if (!(t.init_method_std > 0.0))
    throw cfg.error("init_method_std", "init_method_std must be > 0", "Megatron's default is 0.02");
  t.add_bias_linear = read_bool(cfg, "add_bias_linear");
  t.add_qkv_bias = read_bool(cfg, "add_qkv_bias");
  t.qk_layernorm = read_bool(cfg, "qk_layernorm");
  parse_recompute(cfg, &t);
  t.bias_activation_fusion = read_bool(cfg, "bias_gelu_fusion");
  const std::string gelu = read_string(cfg, "gelu_approximation");
  if (gelu != "none" && gelu != "tanh")
    throw cfg.error("gelu_approximation", sdk::str_cat("unknown gelu_approximation '", gelu, "'"),
                    "use \"none\" (exact erf GeLU) or \"tanh\" (GPT-2's gelu_new)");
  t.gelu_tanh = gelu == "tanh";
  t.gradient_accumulation_fusion = read_bool(cfg, "gradient_accumulation_fusion");
  c.cuda_graph = sdk::nn::parse_cuda_graph(cfg, t.hidden_dropout, t.attention_dropout,
                                           t.recompute_granularity != sdk::nn::RecomputeGranularity::None);
  c.attention_backend = read_string(cfg, "attention_backend");
  if (read_bool(cfg, "use_flash_attn")) {
    if (c.attention_backend != "auto" && c.attention_backend != "flash")
      throw cfg.error("use_flash_attn", sdk::str_cat("use_flash_attn = true but attention_backend = \"",
                                                     c.attention_backend, "\""),
                      "keep one of the two settings");
    c.attention_backend = "flash";
  }
  for (const char* ok : {"auto", "flash", "cudnn", "fused", "efficient", "math", "unfused", "local"})
    if (c.attention_backend == ok) return c;
  throw cfg.error("attention_backend", sdk::str_cat("unknown attention_backend '", c.attention_backend, "'"),
                  "use auto, flash, cudnn, efficient or math");
}

void check_parallel(const sdk::Config& cfg, const GptConfig& c) {
  if (!c.transformer.parallel) return;
  const sdk::nn::TransformerConfig& t = c.transformer;
  const int64_t tp = t.parallel->tp.size(), cp = t.parallel->cp.size();
  // Megatron-Core's TransformerConfig checks, with its messages.
  auto multiple_of_tp = [&](const char* key, const char* name, int64_t v) {
    if (v % tp != 0)
      throw cfg.error(key, sdk::str_cat(name, " (", v, ") must be a multiple of tensor_model_parallel_size (", tp, ")"),
                      sdk::str_cat("each tensor-parallel rank holds ", name, " / ", tp,
                               "; pick a [parallel] tensor_model_parallel_size that divides it"));
  };
  multiple_of_tp("num_attention_heads", "num_attention_heads", t.num_attention_heads);
  multiple_of_tp(cfg.has("num_query_groups") ? "num_query_groups" : "num_attention_heads", "num_query_groups",
                 t.num_query_groups);
  multiple_of_tp("ffn_hidden_size", "ffn_hidden_size", t.ffn_hidden_size);
  if (c.padded_vocab_size % tp != 0)
    throw sdk::Error(MH_ERR_INVALID_ARG,
                     sdk::str_cat("gpt: padded_vocab_size (", c.padded_vocab_size,
                                  ") is not divisible by tensor_model_parallel_size (", tp,
                                  ")\nHINT: the host pads the vocabulary to a multiple of make_vocab_size_divisible_by"
                                  " x tensor_model_parallel_size; check [parallel] make_vocab_size_divisible_by"));
  if (cp > 1 && c.seq_length % (2 * cp) != 0)
    throw cfg.error("seq_length",
                    sdk::str_cat("seq_length (", c.seq_length, ") must be divisible by 2 * context_parallel_size (",
                                 2 * cp, ")"),
                    "context parallelism cuts every sequence into 2 * cp chunks; pick seq_length accordingly");
  if (t.parallel->sequence_parallel && (c.seq_length / cp) % tp != 0)
    throw cfg.error("seq_length",
                    sdk::str_cat("seq_length / context_parallel_size (", c.seq_length / cp,
                                 ") must be divisible by tensor_model_parallel_size (", tp,
                                 ") with sequence_parallel"),
                    "sequence parallelism splits each rank's sequence across the tensor-parallel ranks");
}

double train_flops_per_sample(const GptConfig& c) {
  namespace flops = sdk::nn::flops;
  const sdk::nn::TransformerConfig& t = c.transformer;
  const double s = static_cast<double>(c.seq_length), h = static_cast<double>(t.hidden_size);
  const double forward = static_cast<double>(t.num_layers) * flops::self_attention_layer(t, s) +
                         flops::linear(s, h, static_cast<double>(c.padded_vocab_size));  // output layer
  return flops::kTrainPerForward * forward;
}

}  // namespace megahost::gpt
