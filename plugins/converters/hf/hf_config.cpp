// config.json and the gpt plugin's [model] table <-> ModelShape (see hf_model.h).
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "hf_model.h"

namespace megahost::hf {

namespace {

#define HF_CHECK(cond, ...) MH_CHECK(cond, MH_ERR_INVALID_ARG, __VA_ARGS__)

std::string toml_string(const std::string& s) { return "\"" + s + "\""; }
std::string toml_float(double v) {
  // The shortest decimal that reads back as v (config.json's rope_theta, eps stay exact).
  std::string s;
  for (int digits = 1; digits <= 17; ++digits) {
    char buf[40];
    std::snprintf(buf, sizeof(buf), "%.*g", digits, v);
    s = buf;
    if (std::strtod(buf, nullptr) == v) break;
  }
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";  // TOML floats need a dot or exponent
  return s;
}
std::string toml_bool(bool b) { return b ? "true" : "false"; }

// Reads a config.json field, refusing missing or mistyped ones by name.
struct ConfigReader {
  const nlohmann::json& j;
  const std::string& file;
  const nlohmann::json& at(const char* key) const {
    HF_CHECK(j.contains(key) && !j[key].is_null(), file, ": missing \"", key,
             "\"\nHINT: config.json must describe the model; is this the model's own config.json?");
    return j[key];
  }
  int64_t get_int(const char* key) const {
    HF_CHECK(at(key).is_number_integer(), file, ": \"", key, "\" must be an integer");
    return at(key).get<int64_t>();
  }
  int64_t get_int(const char* key, int64_t fallback) const {
    return j.contains(key) && !j[key].is_null() ? get_int(key) : fallback;
  }
  double get_float(const char* key, double fallback) const {
    if (!j.contains(key) || j[key].is_null()) return fallback;
    HF_CHECK(j[key].is_number(), file, ": \"", key, "\" must be a number");
    return j[key].get<double>();
  }
  bool get_bool(const char* key, bool fallback) const {
    if (!j.contains(key) || j[key].is_null()) return fallback;
    HF_CHECK(j[key].is_boolean(), file, ": \"", key, "\" must be true or false");
    return j[key].get<bool>();
  }
};

DLDataType dtype_from_torch_dtype(const nlohmann::json& j) {
  const std::string t = j.contains("torch_dtype") && j["torch_dtype"].is_string() ? j["torch_dtype"].get<std::string>()
                                                                                  : "float32";
  if (t == "bfloat16") return {kDLBfloat, 16, 1};
  if (t == "float16") return {kDLFloat, 16, 1};
  return {kDLFloat, 32, 1};
}

const char* torch_dtype_name(DLDataType t) {
  return t.code == kDLBfloat ? "bfloat16" : t.bits == 16 ? "float16" : "float32";
}

// rope_scaling of a Llama config: Llama 3.1's "llama3" type with Megatron's fixed low / high
// frequency factors and original context (1, 4, 8192: Llama 3.1, 3.2, 3.3), or "linear" (the
// positions divided by the factor: Megatron's rotary_seq_len_interpolation_factor); anything else
// (YaRN, dynamic, other bands) has no gpt-plugin equivalent.
void read_rope_scaling(const nlohmann::json& r, const std::string& file, ModelShape* s) {
  const std::string text = r.dump();
  HF_CHECK(r.is_object(), file, ": rope_scaling ", text, " is not an object\nHINT: Llama 3.1's is {\"rope_type\": "
           "\"llama3\", \"factor\": 8.0, ...}");
  const std::string type = r.value("rope_type", r.value("type", std::string()));
  auto number = [&](const char* key, double fallback) {
    if (!r.contains(key)) return fallback;
    HF_CHECK(r[key].is_number(), file, ": rope_scaling.", key, " is not a number\nHINT: as Llama 3.1's config.json");
    return r[key].get<double>();
  };
  const double factor = number("factor", 0.0), low = number("low_freq_factor", 1.0),
               high = number("high_freq_factor", 4.0), original = number("original_max_position_embeddings", 8192.0);
  if (type == "linear") {
    HF_CHECK(factor >= 1.0, file, ": rope_scaling ", text, ": factor must be >= 1\nHINT: linear scaling divides the "
             "positions by the factor (Megatron's --rotary-seq-len-interpolation-factor)");
    s->rope_linear_factor = factor;
    return;
  }
  HF_CHECK(type == "llama3" && factor >= 1.0 && low == 1.0 && high == 4.0 && original == 8192.0, file,
           ": rope_scaling ", text, " is not supported\nHINT: the gpt plugin scales rotary frequencies as Llama 3.1 "
           "(rope_type \"llama3\", factor >= 1, low_freq_factor 1, high_freq_factor 4, "
           "original_max_position_embeddings 8192: Megatron's --use-rope-scaling) or \"linear\" "
           "(--rotary-seq-len-interpolation-factor); not YaRN or dynamic");
  s->rope_scaling = true;
  s->rope_scaling_factor = factor;
}

}  // namespace

ModelShape shape_from_hf_config(const nlohmann::json& j, const std::string& file, int64_t vocab_divisor) {
  HF_CHECK(j.is_object(), file, ": not a JSON object\nHINT: point --load-dir at a Hugging Face model folder");
  const ConfigReader c{j, file};
  std::string arch;
  if (j.contains("architectures") && j["architectures"].is_array() && !j["architectures"].empty() &&
      j["architectures"][0].is_string())
    arch = j["architectures"][0].get<std::string>();
  ModelShape s;
  if (arch == "GPT2LMHeadModel" || arch == "GPT2Model") {
    s.arch = Arch::Gpt2;
    s.num_layers = c.get_int("n_layer");
    s.hidden = c.get_int("n_embd");
    s.heads = c.get_int("n_head");
    s.groups = s.heads;
    s.ffn = c.get_int("n_inner", 4 * s.hidden);
    s.max_positions = c.get_int("n_positions");
    s.norm_eps = c.get_float("layer_norm_epsilon", 1e-5);
    s.tied = true;
    const std::string act = j.value("activation_function", std::string("gelu_new"));
    HF_CHECK(act == "gelu_new" || act == "gelu_pytorch_tanh" || act == "gelu", file, ": activation_function \"", act,
             "\" is not supported\nHINT: the gpt plugin has gelu (exact) and gelu_new (tanh)");
    s.gelu_tanh = act != "gelu";
    s.hidden_dropout = c.get_float("resid_pdrop", 0.1);
    s.attention_dropout = c.get_float("attn_pdrop", 0.1);
    HF_CHECK(c.get_bool("scale_attn_weights", true) && !c.get_bool("scale_attn_by_inverse_layer_idx", false) &&
                 !c.get_bool("reorder_and_upcast_attn", false),
             file, ": scale_attn_weights = false, scale_attn_by_inverse_layer_idx or reorder_and_upcast_attn "
             "are not supported\nHINT: megahost scales attention by 1/sqrt(head_dim) only");
  } else if (arch == "LlamaForCausalLM" || arch == "MistralForCausalLM" || arch == "Qwen2ForCausalLM" ||
             arch == "Qwen3ForCausalLM") {
    s.arch = arch == "LlamaForCausalLM"     ? Arch::Llama
             : arch == "MistralForCausalLM" ? Arch::Mistral
             : arch == "Qwen2ForCausalLM"   ? Arch::Qwen2
                                            : Arch::Qwen3;
    s.num_layers = c.get_int("num_hidden_layers");
    s.hidden = c.get_int("hidden_size");
    s.heads = c.get_int("num_attention_heads");
    s.groups = c.get_int("num_key_value_heads", s.heads);
    s.ffn = c.get_int("intermediate_size");
    s.max_positions = c.get_int("max_position_embeddings");
    s.norm_eps = c.get_float("rms_norm_eps", 1e-6);
    s.rope_theta = c.get_float("rope_theta", 10000.0);
    s.tied = c.get_bool("tie_word_embeddings", false);
    s.gelu_tanh = false;
    s.attention_dropout = c.get_float("attention_dropout", 0.0);
    s.hidden_dropout = 0.0;
    const std::string act = j.value("hidden_act", std::string("silu"));
    HF_CHECK(act == "silu", file, ": hidden_act \"", act,
             "\" is not supported\nHINT: the gpt plugin's gated MLP is SwiGLU (silu)");
    HF_CHECK(!c.get_bool("attention_bias", false) && !c.get_bool("mlp_bias", false), file,
             ": attention_bias / mlp_bias = true is not supported\nHINT: Llama-family models without biases only");
    if (j.contains("rope_scaling") && !j["rope_scaling"].is_null()) read_rope_scaling(j["rope_scaling"], file, &s);
    // Qwen2's sliding window is off unless use_sliding_window (its sliding_window key is then unused)
    HF_CHECK((s.arch != Arch::Qwen2 && s.arch != Arch::Qwen3) || !c.get_bool("use_sliding_window", false), file,
             ": use_sliding_window = true is not supported\nHINT: megahost's attention has no sliding window");
    if (s.arch == Arch::Mistral && j.contains("sliding_window") && !j["sliding_window"].is_null()) {
      const int64_t window = c.get_int("sliding_window");
      HF_CHECK(window >= s.max_positions, file, ": sliding_window = ", window,
               " is shorter than max_position_embeddings = ", s.max_positions,
               "\nHINT: megahost's attention has no sliding window; it would attend further back than the "
               "model was trained to (set sliding_window to null only if you accept that)");
    }
  } else {
    throw sdk::Error(MH_ERR_UNSUPPORTED,
                     sdk::str_cat(file, ": architecture \"", arch.empty() ? "(none)" : arch,
                                  "\" is not supported\nHINT: supported: GPT2LMHeadModel, LlamaForCausalLM, "
                                  "MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM"));
  }
  s.vocab = c.get_int("vocab_size");
  s.head_dim = s.arch == Arch::Gpt2 ? s.hidden / s.heads : c.get_int("head_dim", s.hidden / s.heads);
  HF_CHECK(s.num_layers > 0 && s.hidden > 0 && s.heads > 0 && s.groups > 0 && s.heads % s.groups == 0 &&
               s.head_dim > 0 && s.ffn > 0 && s.vocab > 0 && s.max_positions > 0,
           file, ": inconsistent sizes (layers ", s.num_layers, ", hidden ", s.hidden, ", heads ", s.heads,
           ", kv heads ", s.groups, ", ffn ", s.ffn, ", vocab ", s.vocab,
           ")\nHINT: heads must be a multiple of num_key_value_heads; every size positive");
  HF_CHECK(s.arch != Arch::Gpt2 || s.hidden % s.heads == 0, file, ": n_embd ", s.hidden,
           " is not divisible by n_head ", s.heads, "\nHINT: config.json is inconsistent");
  s.padded_vocab = (s.vocab + vocab_divisor - 1) / vocab_divisor * vocab_divisor;
  s.hf_dtype = dtype_from_torch_dtype(j);
  return s;
}

std::vector<std::pair<std::string, std::string>> recipe_model_keys(const ModelShape& s) {
  std::vector<std::pair<std::string, std::string>> k = {
      {"plugin", toml_string("gpt")},
      {"num_layers", std::to_string(s.num_layers)},
      {"hidden_size", std::to_string(s.hidden)},
      {"num_attention_heads", std::to_string(s.heads)},
      {"ffn_hidden_size", std::to_string(s.ffn)},
      {"kv_channels", std::to_string(s.head_dim)},
      {"seq_length", std::to_string(s.max_positions)},
      {"max_position_embeddings", std::to_string(s.max_positions)},
      {"norm_epsilon", toml_float(s.norm_eps)},
      {"hidden_dropout", toml_float(s.hidden_dropout)},
      {"attention_dropout", toml_float(s.attention_dropout)},
      {"untie_embeddings_and_output_weights", toml_bool(!s.tied)},
  };
  if (s.arch == Arch::Gpt2) {
    k.insert(k.end(), {{"position_embedding_type", toml_string("learned_absolute")},
                       {"normalization", toml_string("LayerNorm")},
                       {"add_bias_linear", "true"},
                       {"gelu_approximation", toml_string(s.gelu_tanh ? "tanh" : "none")}});
  } else {
    k.insert(k.end(), {{"position_embedding_type", toml_string("rope")},
                       {"rotary_base", toml_float(s.rope_theta)},
                       {"normalization", toml_string("RMSNorm")},
                       {"swiglu", "true"},
                       {"add_bias_linear", "false"},
                       {"group_query_attention", toml_bool(s.groups != s.heads)}});
    if (s.arch == Arch::Qwen2) k.emplace_back("add_qkv_bias", "true");
    if (s.arch == Arch::Qwen3) k.emplace_back("qk_layernorm", "true");
    if (s.groups != s.heads) k.emplace_back("num_query_groups", std::to_string(s.groups));
    if (s.rope_scaling)
      k.insert(k.end(), {{"use_rope_scaling", "true"}, {"rope_scaling_factor", toml_float(s.rope_scaling_factor)}});
    if (s.rope_linear_factor != 1.0)
      k.emplace_back("rotary_seq_len_interpolation_factor", toml_float(s.rope_linear_factor));
  }
  return k;
}

ModelShape shape_from_recipe(const sdk::Config& m, const std::string& file, int64_t padded_vocab) {
  auto need_int = [&](const char* key) {
    HF_CHECK(m.has(key), file, ": [model] has no integer '", key,
             "'\nHINT: the checkpoint's recipe.toml must describe the gpt model");
    return m.get_int(key);
  };
  const std::string norm = m.get_string("normalization", "LayerNorm");
  const std::string pos = m.get_string("position_embedding_type", "learned_absolute");
  const bool swiglu = m.get_bool("swiglu", false);
  const bool bias = m.get_bool("add_bias_linear", true);
  ModelShape s;
  if (norm == "LayerNorm" && pos == "learned_absolute" && !swiglu && bias)
    s.arch = Arch::Gpt2;
  else if (norm == "RMSNorm" && pos == "rope" && swiglu && !bias &&
           !(m.get_bool("add_qkv_bias", false) && m.get_bool("qk_layernorm", false)))
    s.arch = m.get_bool("add_qkv_bias", false)   ? Arch::Qwen2
             : m.get_bool("qk_layernorm", false) ? Arch::Qwen3
                                                 : Arch::Llama;
  else
    throw sdk::Error(MH_ERR_UNSUPPORTED,
                     sdk::str_cat(file, ": [model] (normalization ", norm, ", position_embedding_type ", pos,
                                  ", swiglu ", swiglu, ", add_bias_linear ", bias,
                                  ") matches no Hugging Face architecture megahost writes",
                                  "\nHINT: GPT-2 = LayerNorm + learned_absolute + GeLU + biases; Llama = RMSNorm + "
                                  "rope + swiglu, no biases (Qwen2: with add_qkv_bias; Qwen3: with qk_layernorm; "
                                  "not both)"));
  s.num_layers = need_int("num_layers");
  s.hidden = need_int("hidden_size");
  s.heads = need_int("num_attention_heads");
  s.groups = m.get_bool("group_query_attention", false) ? m.get_int("num_query_groups", 1) : s.heads;
  s.head_dim = m.get_int("kv_channels", s.hidden / s.heads);
  s.ffn = m.get_int("ffn_hidden_size", swiglu ? (8 * s.hidden / 3) / 64 * 64 : 4 * s.hidden);
  const int64_t seq_length = need_int("seq_length");
  s.max_positions = m.get_int("max_position_embeddings", seq_length);
  s.norm_eps = m.get_float("norm_epsilon", 1e-5);
  s.rope_theta = m.get_float("rotary_base", 10000.0);
  s.rope_scaling = m.get_bool("use_rope_scaling", false);
  s.rope_scaling_factor = m.get_float("rope_scaling_factor", 8.0);
  s.rope_linear_factor = m.get_float("rotary_seq_len_interpolation_factor", 1.0);
  HF_CHECK(!(s.rope_scaling && s.rope_linear_factor != 1.0), file,
           ": use_rope_scaling together with rotary_seq_len_interpolation_factor has no Hugging Face config"
           "\nHINT: config.json's rope_scaling holds one kind: llama3 or linear");
  HF_CHECK(m.get_float("rotary_percent", 1.0) == 1.0, file,
           ": rotary_percent != 1 has no Hugging Face Llama equivalent\nHINT: convert models with full rotary");
  s.tied = !m.get_bool("untie_embeddings_and_output_weights", false);
  s.gelu_tanh = m.get_string("gelu_approximation", "none") == "tanh";
  s.hidden_dropout = m.get_float("hidden_dropout", 0.1);
  s.attention_dropout = m.get_float("attention_dropout", 0.1);
  s.vocab = s.padded_vocab = padded_vocab;
  s.gpt2_prefix = "transformer.";
  return s;
}

nlohmann::json hf_config_for(const ModelShape& s) {
  nlohmann::json j;
  if (s.arch == Arch::Gpt2) {
    j = {{"architectures", {"GPT2LMHeadModel"}}, {"model_type", "gpt2"}, {"vocab_size", s.vocab},
         {"n_embd", s.hidden}, {"n_layer", s.num_layers}, {"n_head", s.heads}, {"n_inner", s.ffn},
         {"n_positions", s.max_positions}, {"n_ctx", s.max_positions},
         {"activation_function", s.gelu_tanh ? "gelu_new" : "gelu"}, {"layer_norm_epsilon", s.norm_eps},
         {"resid_pdrop", s.hidden_dropout}, {"embd_pdrop", s.hidden_dropout}, {"attn_pdrop", s.attention_dropout},
         {"tie_word_embeddings", true}};
  } else {
    const char* architecture = s.arch == Arch::Mistral ? "MistralForCausalLM"
                               : s.arch == Arch::Qwen2 ? "Qwen2ForCausalLM"
                               : s.arch == Arch::Qwen3 ? "Qwen3ForCausalLM"
                                                       : "LlamaForCausalLM";
    const char* model_type = s.arch == Arch::Mistral ? "mistral"
                             : s.arch == Arch::Qwen2 ? "qwen2"
                             : s.arch == Arch::Qwen3 ? "qwen3"
                                                     : "llama";
    j = {{"architectures", {architecture}}, {"model_type", model_type}, {"vocab_size", s.vocab},
         {"hidden_size", s.hidden}, {"intermediate_size", s.ffn}, {"num_hidden_layers", s.num_layers},
         {"num_attention_heads", s.heads}, {"num_key_value_heads", s.groups}, {"head_dim", s.head_dim},
         {"max_position_embeddings", s.max_positions}, {"rms_norm_eps", s.norm_eps}, {"rope_theta", s.rope_theta},
         {"hidden_act", "silu"}, {"tie_word_embeddings", s.tied}, {"attention_bias", false},
         {"attention_dropout", s.attention_dropout}};
    if (s.rope_scaling)
      j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", s.rope_scaling_factor}, {"low_freq_factor", 1.0},
                           {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
    if (s.rope_linear_factor != 1.0) j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", s.rope_linear_factor}};
    if (s.arch == Arch::Qwen2) j.erase("attention_bias");  // biases on q/k/v only, implied by the architecture
    if (s.arch == Arch::Qwen2 || s.arch == Arch::Qwen3) j["use_sliding_window"] = false;
  }
  j["torch_dtype"] = torch_dtype_name(s.hf_dtype);
  return j;
}

}  // namespace megahost::hf
