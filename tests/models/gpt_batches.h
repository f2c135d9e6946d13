// Tiny GPT configs and batches shared by the plugin tests.
#pragma once

#include <ATen/ATen.h>

#include <string>
#include <utility>
#include <vector>

namespace mhtest {

// 2 layers, hidden 32, 4 heads, learned positions, LayerNorm, GeLU, tied embeddings (GPT-2 style).
inline std::string tiny_gpt_toml(const std::string& extra = "", bool with_dropout = false) {
  std::string t =
      "num_layers = 2\n"
      "hidden_size = 32\n"
      "num_attention_heads = 4\n"
      "seq_length = 16\n"
      "max_position_embeddings = 32\n";
  if (!with_dropout) t += "hidden_dropout = 0.0\nattention_dropout = 0.0\n";
  return t + extra;
}

// Llama-style: rope, RMSNorm, SwiGLU, grouped-query attention, no biases, untied output layer.
inline std::string tiny_llama_toml() {
  return tiny_gpt_toml(
      "position_embedding_type = \"rope\"\n"
      "normalization = \"RMSNorm\"\n"
      "swiglu = true\n"
      "ffn_hidden_size = 48\n"
      "group_query_attention = true\n"
      "num_query_groups = 2\n"
      "add_bias_linear = false\n"
      "untie_embeddings_and_output_weights = true\n");
}

using Batch = std::vector<std::pair<std::string, at::Tensor>>;

// Rows of a repeating cycle of `period` token ids (a fixed permutation of a few vocab ids), each
// row starting at another phase; labels are the next tokens; every token counts.
inline Batch pattern_batch(int64_t b, int64_t s, int64_t phase, int64_t vocab) {
  static const int64_t cycle[] = {3, 17, 42, 5, 60, 8, 21, 33, 50, 11};
  const int64_t period = 10;
  at::Tensor tokens = at::empty({b, s}, at::kLong), labels = at::empty({b, s}, at::kLong);
  auto tk = tokens.accessor<int64_t, 2>();
  auto lb = labels.accessor<int64_t, 2>();
  for (int64_t r = 0; r < b; ++r)
    for (int64_t t = 0; t < s; ++t) {
      const int64_t off = r * 3 + phase;
      tk[r][t] = cycle[(off + t) % period] % vocab;
      lb[r][t] = cycle[(off + t + 1) % period] % vocab;
    }
  return {{"tokens", tokens}, {"labels", labels}, {"loss_mask", at::ones({b, s}, at::kFloat)}};
}

// Uniformly random tokens and labels.
inline Batch random_batch(int64_t b, int64_t s, int64_t vocab, uint64_t seed) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  return {{"tokens", at::randint(vocab, {b, s}, gen, at::kLong)},
          {"labels", at::randint(vocab, {b, s}, gen, at::kLong)},
          {"loss_mask", at::ones({b, s}, at::kFloat)}};
}

inline at::Tensor& batch_get(Batch& batch, const std::string& name) {
  for (auto& [n, t] : batch)
    if (n == name) return t;
  throw std::runtime_error("no " + name);
}

}  // namespace mhtest
