// Hugging Face architectures <-> the gpt plugin (see hf_architectures.h).
#include "hf_architectures.h"

#include <ATen/ops/cat.h>
#include <ATen/ops/split.h>
#include <ATen/ops/split_with_sizes.h>
#include <ATen/ops/zeros.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "megahost/core/error.h"

namespace megahost::core::hf {

namespace {

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
    MH_CORE_CHECK(j.contains(key) && !j[key].is_null(), file, ": missing \"", key,
                  "\"\nHINT: config.json must describe the model; is this the model's own config.json?");
    return j[key];
  }
  int64_t get_int(const char* key) const {
    MH_CORE_CHECK(at(key).is_number_integer(), file, ": \"", key, "\" must be an integer");
    return at(key).get<int64_t>();
  }
  int64_t get_int(const char* key, int64_t fallback) const {
    return j.contains(key) && !j[key].is_null() ? get_int(key) : fallback;
  }
  double get_float(const char* key, double fallback) const {
    if (!j.contains(key) || j[key].is_null()) return fallback;
    MH_CORE_CHECK(j[key].is_number(), file, ": \"", key, "\" must be a number");
    return j[key].get<double>();
  }
  bool get_bool(const char* key, bool fallback) const {
    if (!j.contains(key) || j[key].is_null()) return fallback;
    MH_CORE_CHECK(j[key].is_boolean(), file, ": \"", key, "\" must be true or false");
    return j[key].get<bool>();
  }
};

at::ScalarType dtype_from_torch_dtype(const nlohmann::json& j) {
  const std::string t = j.contains("torch_dtype") && j["torch_dtype"].is_string() ? j["torch_dtype"].get<std::string>()
                                                                                  : "float32";
  if (t == "bfloat16") return at::kBFloat16;
  if (t == "float16") return at::kHalf;
  return at::kFloat;
}

const char* torch_dtype_name(at::ScalarType t) {
  return t == at::kBFloat16 ? "bfloat16" : t == at::kHalf ? "float16" : "float32";
}

// q [np*hn, ...], k/v [ng*hn, ...] -> Megatron's grouped rows [ng * (np/ng + 2) * hn, ...]:
// per query group its np/ng query heads, then its key head, then its value head.
at::Tensor group_qkv(const ModelShape& s, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  std::vector<int64_t> rest(q.sizes().begin() + 1, q.sizes().end());
  auto grouped = [&](const at::Tensor& t, int64_t rows) {
    std::vector<int64_t> shape = {s.groups, rows};
    shape.insert(shape.end(), rest.begin(), rest.end());
    return t.reshape(shape);
  };
  const int64_t per = s.heads / s.groups;
  at::Tensor out = at::cat({grouped(q, per * s.head_dim), grouped(k, s.head_dim), grouped(v, s.head_dim)}, 1);
  std::vector<int64_t> flat = {s.groups * (per + 2) * s.head_dim};
  flat.insert(flat.end(), rest.begin(), rest.end());
  return out.reshape(flat);
}

std::vector<at::Tensor> ungroup_qkv(const ModelShape& s, const at::Tensor& qkv) {
  std::vector<int64_t> rest(qkv.sizes().begin() + 1, qkv.sizes().end());
  const int64_t per = s.heads / s.groups;
  std::vector<int64_t> shape = {s.groups, (per + 2) * s.head_dim};
  shape.insert(shape.end(), rest.begin(), rest.end());
  const auto parts = at::split_with_sizes(qkv.reshape(shape), {per * s.head_dim, s.head_dim, s.head_dim}, 1);
  std::vector<at::Tensor> out;
  for (size_t i = 0; i < 3; ++i) {
    std::vector<int64_t> flat = {i == 0 ? s.heads * s.head_dim : s.groups * s.head_dim};
    flat.insert(flat.end(), rest.begin(), rest.end());
    out.push_back(parts[i].reshape(flat).contiguous());
  }
  return out;
}

}  // namespace

ModelShape shape_from_hf_config(const nlohmann::json& j, const std::string& file, int64_t vocab_divisor) {
  MH_CORE_CHECK(j.is_object(), file, ": not a JSON object\nHINT: point --load-dir at a Hugging Face model folder");
  const ConfigReader c{j, file};
  std::string arch;
  if (j.contains("architectures") && j["architectures"].is_array() && !j["architectures"].empty())
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
    MH_CORE_CHECK(act == "gelu_new" || act == "gelu_pytorch_tanh" || act == "gelu", file, ": activation_function \"",
                  act, "\" is not supported\nHINT: the gpt plugin has gelu (exact) and gelu_new (tanh)");
    s.gelu_tanh = act != "gelu";
    s.hidden_dropout = c.get_float("resid_pdrop", 0.1);
    s.attention_dropout = c.get_float("attn_pdrop", 0.1);
    MH_CORE_CHECK(c.get_bool("scale_attn_weights", true) && !c.get_bool("scale_attn_by_inverse_layer_idx", false) &&
                      !c.get_bool("reorder_and_upcast_attn", false),
                  file, ": scale_attn_weights = false, scale_attn_by_inverse_layer_idx or reorder_and_upcast_attn "
                  "are not supported\nHINT: megahost scales attention by 1/sqrt(head_dim) only");
  } else if (arch == "LlamaForCausalLM" || arch == "MistralForCausalLM") {
    s.arch = arch == "LlamaForCausalLM" ? Arch::Llama : Arch::Mistral;
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
    MH_CORE_CHECK(act == "silu", file, ": hidden_act \"", act,
                  "\" is not supported\nHINT: the gpt plugin's gated MLP is SwiGLU (silu)");
    MH_CORE_CHECK(!c.get_bool("attention_bias", false) && !c.get_bool("mlp_bias", false), file,
                  ": attention_bias / mlp_bias = true is not supported\nHINT: Llama-family models without biases only");
    MH_CORE_CHECK(!j.contains("rope_scaling") || j["rope_scaling"].is_null(), file, ": rope_scaling ",
                  j.value("rope_scaling", nlohmann::json()).dump(),
                  " is not supported\nHINT: the gpt plugin's rotary has no frequency scaling (Llama 3.1's "
                  "\"llama3\" scaling, YaRN, ...)");
    if (s.arch == Arch::Mistral && j.contains("sliding_window") && !j["sliding_window"].is_null()) {
      const int64_t window = c.get_int("sliding_window");
      MH_CORE_CHECK(window >= s.max_positions, file, ": sliding_window = ", window,
                    " is shorter than max_position_embeddings = ", s.max_positions,
                    "\nHINT: megahost's attention has no sliding window; it would attend further back than the "
                    "model was trained to (set sliding_window to null only if you accept that)");
    }
  } else {
    throw Error(cat(file, ": architecture \"", arch.empty() ? "(none)" : arch,
                    "\" is not supported\nHINT: supported: GPT2LMHeadModel, LlamaForCausalLM, MistralForCausalLM"));
  }
  s.vocab = c.get_int("vocab_size");
  s.head_dim = s.arch == Arch::Gpt2 ? s.hidden / s.heads : c.get_int("head_dim", s.hidden / s.heads);
  MH_CORE_CHECK(s.num_layers > 0 && s.hidden > 0 && s.heads > 0 && s.groups > 0 && s.heads % s.groups == 0 &&
                    s.head_dim > 0 && s.ffn > 0 && s.vocab > 0 && s.max_positions > 0,
                file, ": inconsistent sizes (layers ", s.num_layers, ", hidden ", s.hidden, ", heads ", s.heads,
                ", kv heads ", s.groups, ", ffn ", s.ffn, ", vocab ", s.vocab,
                ")\nHINT: heads must be a multiple of num_key_value_heads; every size positive");
  MH_CORE_CHECK(s.arch != Arch::Gpt2 || s.hidden % s.heads == 0, file, ": n_embd ", s.hidden,
                " is not divisible by n_head ", s.heads, "\nHINT: config.json is inconsistent");
  s.padded_vocab = (s.vocab + vocab_divisor - 1) / vocab_divisor * vocab_divisor;
  s.hf_dtype = dtype_from_torch_dtype(j);
  return s;
}

std::vector<std::pair<std::string, std::string>> recipe_model_keys(const ModelShape& s) {
  std::vector<std::pair<std::string, std::string>> k = {
      {"plugin", toml_string("gpt")},
      {"num_layers", cat(s.num_layers)},
      {"hidden_size", cat(s.hidden)},
      {"num_attention_heads", cat(s.heads)},
      {"ffn_hidden_size", cat(s.ffn)},
      {"kv_channels", cat(s.head_dim)},
      {"seq_length", cat(s.max_positions)},
      {"max_position_embeddings", cat(s.max_positions)},
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
    if (s.groups != s.heads) k.emplace_back("num_query_groups", cat(s.groups));
  }
  return k;
}

ModelShape shape_from_recipe(const toml::table& m, const std::string& file, int64_t padded_vocab) {
  auto need_int = [&](const char* key) {
    auto v = m[key].value<int64_t>();
    MH_CORE_CHECK(v.has_value(), file, ": [model] has no integer '", key,
                  "'\nHINT: the checkpoint's recipe.toml must describe the gpt model");
    return *v;
  };
  const std::string norm = m["normalization"].value_or(std::string("LayerNorm"));
  const std::string pos = m["position_embedding_type"].value_or(std::string("learned_absolute"));
  const bool swiglu = m["swiglu"].value_or(false);
  const bool bias = m["add_bias_linear"].value_or(true);
  ModelShape s;
  if (norm == "LayerNorm" && pos == "learned_absolute" && !swiglu && bias)
    s.arch = Arch::Gpt2;
  else if (norm == "RMSNorm" && pos == "rope" && swiglu && !bias && !m["add_qkv_bias"].value_or(false))
    s.arch = Arch::Llama;
  else
    throw Error(cat(file, ": [model] (normalization ", norm, ", position_embedding_type ", pos, ", swiglu ", swiglu,
                    ", add_bias_linear ", bias, ") matches no Hugging Face architecture megahost writes",
                    "\nHINT: GPT-2 = LayerNorm + learned_absolute + GeLU + biases; Llama = RMSNorm + rope + swiglu, no "
                    "biases"));
  s.num_layers = need_int("num_layers");
  s.hidden = need_int("hidden_size");
  s.heads = need_int("num_attention_heads");
  s.groups = m["group_query_attention"].value_or(false) ? m["num_query_groups"].value_or(int64_t{1}) : s.heads;
  s.head_dim = m["kv_channels"].value_or(s.hidden / s.heads);
  s.ffn = m["ffn_hidden_size"].value_or(swiglu ? (8 * s.hidden / 3) / 64 * 64 : 4 * s.hidden);
  s.max_positions = m["max_position_embeddings"].value_or(need_int("seq_length"));
  s.norm_eps = m["norm_epsilon"].value_or(1e-5);
  s.rope_theta = m["rotary_base"].value_or(10000.0);
  MH_CORE_CHECK(m["rotary_percent"].value_or(1.0) == 1.0, file,
                ": rotary_percent != 1 has no Hugging Face Llama equivalent\nHINT: convert models with full rotary");
  s.tied = !m["untie_embeddings_and_output_weights"].value_or(false);
  s.gelu_tanh = m["gelu_approximation"].value_or(std::string("none")) == "tanh";
  s.hidden_dropout = m["hidden_dropout"].value_or(0.1);
  s.attention_dropout = m["attention_dropout"].value_or(0.1);
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
    j = {{"architectures", {s.arch == Arch::Mistral ? "MistralForCausalLM" : "LlamaForCausalLM"}},
         {"model_type", s.arch == Arch::Mistral ? "mistral" : "llama"}, {"vocab_size", s.vocab},
         {"hidden_size", s.hidden}, {"intermediate_size", s.ffn}, {"num_hidden_layers", s.num_layers},
         {"num_attention_heads", s.heads}, {"num_key_value_heads", s.groups}, {"head_dim", s.head_dim},
         {"max_position_embeddings", s.max_positions}, {"rms_norm_eps", s.norm_eps}, {"rope_theta", s.rope_theta},
         {"hidden_act", "silu"}, {"tie_word_embeddings", s.tied}, {"attention_bias", false},
         {"attention_dropout", s.attention_dropout}};
  }
  j["torch_dtype"] = torch_dtype_name(s.hf_dtype);
  return j;
}

std::vector<Rule> rules_for(const ModelShape& s) {
  const int64_t h = s.hidden, qp = s.heads * s.head_dim, kvp = s.groups * s.head_dim, ffn = s.ffn;
  const int64_t qkv_rows = qp + 2 * kvp;
  std::vector<Rule> r;
  auto add = [&](std::string mh, std::vector<int64_t> mh_shape, Kind kind, std::vector<std::string> hf,
                 std::vector<std::vector<int64_t>> hf_shapes) {
    r.push_back(Rule{std::move(mh), std::move(mh_shape), kind, std::move(hf), std::move(hf_shapes)});
  };
  if (s.arch == Arch::Gpt2) {
    const std::string p = s.gpt2_prefix;
    add("embedding.word_embeddings.weight", {s.padded_vocab, h}, Kind::VocabRows, {p + "wte.weight"}, {{s.vocab, h}});
    add("embedding.position_embeddings.weight", {s.max_positions, h}, Kind::Copy, {p + "wpe.weight"},
        {{s.max_positions, h}});
    for (int64_t i = 0; i < s.num_layers; ++i) {
      const std::string m = cat("decoder.layers.", i, "."), g = cat(p, "h.", i, ".");
      add(m + "input_layernorm.weight", {h}, Kind::Copy, {g + "ln_1.weight"}, {{h}});
      add(m + "input_layernorm.bias", {h}, Kind::Copy, {g + "ln_1.bias"}, {{h}});
      add(m + "self_attention.linear_qkv.weight", {qkv_rows, h}, Kind::QkvConv1D, {g + "attn.c_attn.weight"},
          {{h, qkv_rows}});
      add(m + "self_attention.linear_qkv.bias", {qkv_rows}, Kind::QkvFusedBias, {g + "attn.c_attn.bias"}, {{qkv_rows}});
      add(m + "self_attention.linear_proj.weight", {h, qp}, Kind::Transposed, {g + "attn.c_proj.weight"}, {{qp, h}});
      add(m + "self_attention.linear_proj.bias", {h}, Kind::Copy, {g + "attn.c_proj.bias"}, {{h}});
      add(m + "pre_mlp_layernorm.weight", {h}, Kind::Copy, {g + "ln_2.weight"}, {{h}});
      add(m + "pre_mlp_layernorm.bias", {h}, Kind::Copy, {g + "ln_2.bias"}, {{h}});
      add(m + "mlp.linear_fc1.weight", {ffn, h}, Kind::Transposed, {g + "mlp.c_fc.weight"}, {{h, ffn}});
      add(m + "mlp.linear_fc1.bias", {ffn}, Kind::Copy, {g + "mlp.c_fc.bias"}, {{ffn}});
      add(m + "mlp.linear_fc2.weight", {h, ffn}, Kind::Transposed, {g + "mlp.c_proj.weight"}, {{ffn, h}});
      add(m + "mlp.linear_fc2.bias", {h}, Kind::Copy, {g + "mlp.c_proj.bias"}, {{h}});
    }
    add("decoder.final_layernorm.weight", {h}, Kind::Copy, {p + "ln_f.weight"}, {{h}});
    add("decoder.final_layernorm.bias", {h}, Kind::Copy, {p + "ln_f.bias"}, {{h}});
    return r;
  }
  add("embedding.word_embeddings.weight", {s.padded_vocab, h}, Kind::VocabRows, {"model.embed_tokens.weight"},
      {{s.vocab, h}});
  for (int64_t i = 0; i < s.num_layers; ++i) {
    const std::string m = cat("decoder.layers.", i, "."), g = cat("model.layers.", i, ".");
    add(m + "input_layernorm.weight", {h}, Kind::Copy, {g + "input_layernorm.weight"}, {{h}});
    add(m + "self_attention.linear_qkv.weight", {qkv_rows, h}, Kind::QkvSeparate,
        {g + "self_attn.q_proj.weight", g + "self_attn.k_proj.weight", g + "self_attn.v_proj.weight"},
        {{qp, h}, {kvp, h}, {kvp, h}});
    add(m + "self_attention.linear_proj.weight", {h, qp}, Kind::Copy, {g + "self_attn.o_proj.weight"}, {{h, qp}});
    add(m + "pre_mlp_layernorm.weight", {h}, Kind::Copy, {g + "post_attention_layernorm.weight"}, {{h}});
    add(m + "mlp.linear_fc1.weight", {2 * ffn, h}, Kind::GateUp, {g + "mlp.gate_proj.weight", g + "mlp.up_proj.weight"},
        {{ffn, h}, {ffn, h}});
    add(m + "mlp.linear_fc2.weight", {h, ffn}, Kind::Copy, {g + "mlp.down_proj.weight"}, {{h, ffn}});
  }
  add("decoder.final_layernorm.weight", {h}, Kind::Copy, {"model.norm.weight"}, {{h}});
  if (!s.tied) add("output_layer.weight", {s.padded_vocab, h}, Kind::VocabRows, {"lm_head.weight"}, {{s.vocab, h}});
  return r;
}

bool ignorable_hf_tensor(const ModelShape& s, const std::string& name) {
  auto ends_with = [&](const std::string& suffix) {
    return name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  if (s.arch == Arch::Gpt2)
    return name == "lm_head.weight" || ends_with(".attn.bias") || ends_with(".attn.masked_bias");
  return ends_with(".rotary_emb.inv_freq") || (s.tied && name == "lm_head.weight");
}

at::Tensor to_megahost(const ModelShape& s, const Rule& r, const std::vector<at::Tensor>& hf) {
  std::vector<at::Tensor> f;  // megahost keeps float32 weights; HF bf16/fp16 widen exactly
  for (const auto& t : hf) f.push_back(t.to(at::kFloat));
  switch (r.kind) {
    case Kind::Copy: return f[0].contiguous();
    case Kind::Transposed: return f[0].t().contiguous();
    case Kind::QkvConv1D: {
      const auto qkv = at::split(f[0].t(), s.hidden, 0);  // [3h, h]: q | k | v rows
      return group_qkv(s, qkv[0], qkv[1], qkv[2]);
    }
    case Kind::QkvFusedBias: {
      const auto qkv = at::split(f[0], s.hidden, 0);
      return group_qkv(s, qkv[0], qkv[1], qkv[2]);
    }
    case Kind::QkvSeparate: return group_qkv(s, f[0], f[1], f[2]);
    case Kind::GateUp: return at::cat({f[0], f[1]}, 0);
    case Kind::VocabRows: {
      // Megatron's padded rows start at zero: the padded tokens never occur.
      if (s.padded_vocab == s.vocab) return f[0].contiguous();
      at::Tensor out = at::zeros({s.padded_vocab, s.hidden}, f[0].options());
      out.narrow(0, 0, s.vocab).copy_(f[0]);
      return out;
    }
  }
  return {};
}

std::vector<at::Tensor> to_hf(const ModelShape& s, const Rule& r, const at::Tensor& mh) {
  std::vector<at::Tensor> out;
  switch (r.kind) {
    case Kind::Copy: out = {mh.contiguous()}; break;
    case Kind::Transposed: out = {mh.t().contiguous()}; break;
    case Kind::QkvConv1D: out = {at::cat(ungroup_qkv(s, mh), 0).t().contiguous()}; break;
    case Kind::QkvFusedBias: out = {at::cat(ungroup_qkv(s, mh), 0)}; break;
    case Kind::QkvSeparate: out = ungroup_qkv(s, mh); break;
    case Kind::GateUp: out = {mh.narrow(0, 0, s.ffn).contiguous(), mh.narrow(0, s.ffn, s.ffn).contiguous()}; break;
    case Kind::VocabRows: out = {mh.narrow(0, 0, s.vocab).contiguous()}; break;
  }
  for (auto& t : out) t = t.to(s.hf_dtype).contiguous();
  return out;
}

}  // namespace megahost::core::hf
