// Hugging Face architectures <-> the gpt plugin: the model shape both sides share, and the table
// that maps each megahost parameter to the HF tensors it is made of.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <toml++/toml.h>
#include <string>
#include <utility>
#include <vector>

namespace megahost::core::hf {

enum class Arch { Gpt2, Llama, Mistral };

// The model as both config.json and the gpt plugin's [model] table describe it.
struct ModelShape {
  Arch arch = Arch::Llama;
  int64_t num_layers = 0, hidden = 0, heads = 0, groups = 0, head_dim = 0, ffn = 0;
  int64_t vocab = 0, padded_vocab = 0, max_positions = 0;
  double norm_eps = 1e-5, rope_theta = 10000.0;
  bool tied = true;
  bool gelu_tanh = true;  // GPT-2: gelu_new
  double hidden_dropout = 0.0, attention_dropout = 0.0;
  at::ScalarType hf_dtype = at::kFloat;  // config.json torch_dtype: what the HF side stores
  std::string gpt2_prefix;               // "transformer." when the GPT-2 tensors carry it
};

// How the HF tensors make one megahost tensor (and back: every step is a reshape, transpose,
// split or concatenation, so a round trip is bit-identical).
enum class Kind {
  Copy,            // same tensor
  Transposed,      // GPT-2 Conv1D weight [in, out] <-> nn.Linear [out, in]
  QkvConv1D,       // GPT-2 c_attn.weight [h, 3h] (q | k | v columns) <-> grouped QKV rows
  QkvFusedBias,    // GPT-2 c_attn.bias [3h] <-> grouped QKV bias
  QkvSeparate,     // q_proj, k_proj, v_proj rows <-> grouped QKV rows
  GateUp,          // gate_proj, up_proj <-> linear_fc1 = [gate; up]
  VocabRows,       // embedding / lm_head: megahost pads rows to the padded vocabulary
};

struct Rule {
  std::string mh;                  // parameter name, without the checkpoint's "model/"
  std::vector<int64_t> mh_shape;
  Kind kind = Kind::Copy;
  std::vector<std::string> hf;     // HF tensor names
  std::vector<std::vector<int64_t>> hf_shapes;
};

// config.json -> shape (throws naming the file and key, with a HINT).
ModelShape shape_from_hf_config(const nlohmann::json& config, const std::string& file, int64_t vocab_divisor);
// The gpt plugin's [model] table (TOML lines "key = value") for a shape.
std::vector<std::pair<std::string, std::string>> recipe_model_keys(const ModelShape& s);
// [model] table -> shape (throws naming the key); padded_vocab from the stored embedding.
ModelShape shape_from_recipe(const toml::table& model_table, const std::string& file, int64_t padded_vocab);
// A fresh config.json for a shape (when the checkpoint did not come from HF).
nlohmann::json hf_config_for(const ModelShape& s);

// Every megahost parameter in Megatron's state-dict order. GPT-2 names follow s.gpt2_prefix.
std::vector<Rule> rules_for(const ModelShape& s);
// HF tensors the gpt model has no use for (causal-mask buffers, rotary caches, a tied lm_head).
bool ignorable_hf_tensor(const ModelShape& s, const std::string& name);

// The conversions of one rule.
at::Tensor to_megahost(const ModelShape& s, const Rule& r, const std::vector<at::Tensor>& hf);
std::vector<at::Tensor> to_hf(const ModelShape& s, const Rule& r, const at::Tensor& mh);

}  // namespace megahost::core::hf
