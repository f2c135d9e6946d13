// The rules: which HF tensors make each megahost parameter, through which step (see hf_model.h).
#include "hf_model.h"

namespace megahost::hf {

std::vector<sdk::ConvertRule> rules_for(const ModelShape& s) {
  const int64_t h = s.hidden, qp = s.heads * s.head_dim, kvp = s.groups * s.head_dim, ffn = s.ffn;
  const int64_t qkv_rows = qp + 2 * kvp;
  std::vector<sdk::ConvertRule> r;
  auto add = [&](std::string mh, std::vector<int64_t> mh_shape, int32_t step, std::vector<std::string> hf,
                 std::vector<std::vector<int64_t>> hf_shapes) {
    sdk::ConvertRule rule{std::move(mh), step, std::move(mh_shape), {}};
    for (size_t i = 0; i < hf.size(); ++i) rule.foreign.push_back({hf[i], s.hf_dtype, hf_shapes[i]});
    r.push_back(std::move(rule));
  };
  auto layer = [](const char* prefix, int64_t i) { return prefix + std::to_string(i) + "."; };
  if (s.arch == Arch::Gpt2) {
    const std::string p = s.gpt2_prefix;
    add("embedding.word_embeddings.weight", {s.padded_vocab, h}, MH_CONVERT_STEP_VOCAB_ROWS, {p + "wte.weight"},
        {{s.vocab, h}});
    add("embedding.position_embeddings.weight", {s.max_positions, h}, MH_CONVERT_STEP_COPY, {p + "wpe.weight"},
        {{s.max_positions, h}});
    for (int64_t i = 0; i < s.num_layers; ++i) {
      const std::string m = layer("decoder.layers.", i), g = p + layer("h.", i);
      add(m + "input_layernorm.weight", {h}, MH_CONVERT_STEP_COPY, {g + "ln_1.weight"}, {{h}});
      add(m + "input_layernorm.bias", {h}, MH_CONVERT_STEP_COPY, {g + "ln_1.bias"}, {{h}});
      add(m + "self_attention.linear_qkv.weight", {qkv_rows, h}, MH_CONVERT_STEP_QKV_CONV1D,
          {g + "attn.c_attn.weight"}, {{h, qkv_rows}});
      add(m + "self_attention.linear_qkv.bias", {qkv_rows}, MH_CONVERT_STEP_QKV_FUSED_BIAS, {g + "attn.c_attn.bias"},
          {{qkv_rows}});
      add(m + "self_attention.linear_proj.weight", {h, qp}, MH_CONVERT_STEP_TRANSPOSED, {g + "attn.c_proj.weight"},
          {{qp, h}});
      add(m + "self_attention.linear_proj.bias", {h}, MH_CONVERT_STEP_COPY, {g + "attn.c_proj.bias"}, {{h}});
      add(m + "pre_mlp_layernorm.weight", {h}, MH_CONVERT_STEP_COPY, {g + "ln_2.weight"}, {{h}});
      add(m + "pre_mlp_layernorm.bias", {h}, MH_CONVERT_STEP_COPY, {g + "ln_2.bias"}, {{h}});
      add(m + "mlp.linear_fc1.weight", {ffn, h}, MH_CONVERT_STEP_TRANSPOSED, {g + "mlp.c_fc.weight"}, {{h, ffn}});
      add(m + "mlp.linear_fc1.bias", {ffn}, MH_CONVERT_STEP_COPY, {g + "mlp.c_fc.bias"}, {{ffn}});
      add(m + "mlp.linear_fc2.weight", {h, ffn}, MH_CONVERT_STEP_TRANSPOSED, {g + "mlp.c_proj.weight"}, {{ffn, h}});
      add(m + "mlp.linear_fc2.bias", {h}, MH_CONVERT_STEP_COPY, {g + "mlp.c_proj.bias"}, {{h}});
    }
    add("decoder.final_layernorm.weight", {h}, MH_CONVERT_STEP_COPY, {p + "ln_f.weight"}, {{h}});
    add("decoder.final_layernorm.bias", {h}, MH_CONVERT_STEP_COPY, {p + "ln_f.bias"}, {{h}});
    return r;
  }
  add("embedding.word_embeddings.weight", {s.padded_vocab, h}, MH_CONVERT_STEP_VOCAB_ROWS,
      {"model.embed_tokens.weight"}, {{s.vocab, h}});
  for (int64_t i = 0; i < s.num_layers; ++i) {
    const std::string m = layer("decoder.layers.", i), g = layer("model.layers.", i);
    add(m + "input_layernorm.weight", {h}, MH_CONVERT_STEP_COPY, {g + "input_layernorm.weight"}, {{h}});
    add(m + "self_attention.linear_qkv.weight", {qkv_rows, h}, MH_CONVERT_STEP_QKV_SEPARATE,
        {g + "self_attn.q_proj.weight", g + "self_attn.k_proj.weight", g + "self_attn.v_proj.weight"},
        {{qp, h}, {kvp, h}, {kvp, h}});
    if (s.arch == Arch::Qwen2)
      add(m + "self_attention.linear_qkv.bias", {qkv_rows}, MH_CONVERT_STEP_QKV_SEPARATE,
          {g + "self_attn.q_proj.bias", g + "self_attn.k_proj.bias", g + "self_attn.v_proj.bias"},
          {{qp}, {kvp}, {kvp}});
    if (s.arch == Arch::Qwen3) {
      const int64_t hd = s.head_dim;
      add(m + "self_attention.q_layernorm.weight", {hd}, MH_CONVERT_STEP_COPY, {g + "self_attn.q_norm.weight"}, {{hd}});
      add(m + "self_attention.k_layernorm.weight", {hd}, MH_CONVERT_STEP_COPY, {g + "self_attn.k_norm.weight"}, {{hd}});
    }
    add(m + "self_attention.linear_proj.weight", {h, qp}, MH_CONVERT_STEP_COPY, {g + "self_attn.o_proj.weight"},
        {{h, qp}});
    add(m + "pre_mlp_layernorm.weight", {h}, MH_CONVERT_STEP_COPY, {g + "post_attention_layernorm.weight"}, {{h}});
    add(m + "mlp.linear_fc1.weight", {2 * ffn, h}, MH_CONVERT_STEP_GATE_UP,
        {g + "mlp.gate_proj.weight", g + "mlp.up_proj.weight"}, {{ffn, h}, {ffn, h}});
    add(m + "mlp.linear_fc2.weight", {h, ffn}, MH_CONVERT_STEP_COPY, {g + "mlp.down_proj.weight"}, {{h, ffn}});
  }
  add("decoder.final_layernorm.weight", {h}, MH_CONVERT_STEP_COPY, {"model.norm.weight"}, {{h}});
  if (!s.tied)
    add("output_layer.weight", {s.padded_vocab, h}, MH_CONVERT_STEP_VOCAB_ROWS, {"lm_head.weight"}, {{s.vocab, h}});
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

}  // namespace megahost::hf
