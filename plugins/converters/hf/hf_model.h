// Hugging Face architectures <-> the gpt plugin: the model shape both sides share, and the rules
// mapping each megahost parameter to the HF tensors it is made of (no libtorch here: the core
// applies the step kinds, MH_CONVERT_STEP_*).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "megahost/sdk/converter.h"
#include "megahost/sdk/host.h"

namespace megahost::hf {

// Qwen2: Llama with q/k/v biases (add_qkv_bias); Qwen3: Llama with q/k norms (qk_layernorm)
enum class Arch { Gpt2, Llama, Mistral, Qwen2, Qwen3 };

// The model as both config.json and the gpt plugin's [model] table describe it.
struct ModelShape {
  Arch arch = Arch::Llama;
  int64_t num_layers = 0, hidden = 0, heads = 0, groups = 0, head_dim = 0, ffn = 0;
  int64_t vocab = 0, padded_vocab = 0, max_positions = 0;
  double norm_eps = 1e-5, rope_theta = 10000.0;
  bool rope_scaling = false;          // Llama 3.1's "llama3" rope_scaling (use_rope_scaling)
  double rope_scaling_factor = 8.0;   // its factor (rope_scaling_factor)
  double rope_linear_factor = 1.0;    // "linear" rope_scaling (rotary_seq_len_interpolation_factor)
  bool tied = true;
  bool gelu_tanh = true;  // GPT-2: gelu_new
  double hidden_dropout = 0.0, attention_dropout = 0.0;
  DLDataType hf_dtype{kDLFloat, 32, 1};  // config.json torch_dtype: what the HF side stores
  std::string gpt2_prefix;               // "transformer." when the GPT-2 tensors carry it
};

// config.json -> shape (throws naming the file and key, with a HINT).
ModelShape shape_from_hf_config(const nlohmann::json& config, const std::string& file, int64_t vocab_divisor);
// The gpt plugin's [model] table as TOML lines "key = value".
std::vector<std::pair<std::string, std::string>> recipe_model_keys(const ModelShape& s);
// [model] table -> shape (throws naming the key); padded_vocab from the stored embedding.
ModelShape shape_from_recipe(const sdk::Config& model, const std::string& file, int64_t padded_vocab);
// A fresh config.json for a shape (when the checkpoint did not come from HF).
nlohmann::json hf_config_for(const ModelShape& s);

// Every megahost parameter in Megatron's state-dict order. GPT-2 names follow s.gpt2_prefix.
std::vector<sdk::ConvertRule> rules_for(const ModelShape& s);
// HF tensors the gpt model has no use for (causal-mask buffers, rotary caches, a tied lm_head).
bool ignorable_hf_tensor(const ModelShape& s, const std::string& name);

}  // namespace megahost::hf
