// megahost SDK — embeddings (see megahost/sdk/nn/embedding.h).
#include "megahost/sdk/nn/embedding.h"

#include <ATen/ops/embedding.h>

namespace megahost::sdk::nn {

VocabParallelEmbedding::VocabParallelEmbedding(ParamRegistry& reg, const std::string& prefix, int64_t vocab_size,
                                               int64_t hidden_size, const Init& init) {
  weight = reg.create(join_name(prefix, "weight"), {vocab_size, hidden_size}, init, 0, 0);
}

at::Tensor VocabParallelEmbedding::forward(const at::Tensor& ids) const { return at::embedding(weight, ids); }

Embedding::Embedding(ParamRegistry& reg, const std::string& prefix, int64_t num_embeddings, int64_t hidden_size,
                     const Init& init) {
  weight = reg.create(join_name(prefix, "weight"), {num_embeddings, hidden_size}, init, -1, 0);
}

at::Tensor Embedding::forward(const at::Tensor& ids) const { return at::embedding(weight, ids); }

}  // namespace megahost::sdk::nn
