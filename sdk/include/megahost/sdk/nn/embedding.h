// megahost SDK — embeddings: Megatron-Core's VocabParallelEmbedding (vocabulary split across
// tensor-parallel ranks: weight dim 0) and a replicated table for learned absolute positions.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>

#include "megahost/sdk/nn/params.h"

namespace megahost::sdk::nn {

class VocabParallelEmbedding {
 public:
  // Registers "<prefix>.weight" [vocab, hidden] (tp dim 0), normal(0, init_std).
  VocabParallelEmbedding(ParamRegistry& reg, const std::string& prefix, int64_t vocab_size,
                         int64_t hidden_size, const Init& init);
  // ids [...] int64 -> [..., hidden]. Under TP each rank looks up its vocab range, zeroes the
  // rest and the outputs are all-reduced (not needed on one device).
  at::Tensor forward(const at::Tensor& ids) const;

  at::Tensor weight;
};

class Embedding {
 public:
  // Registers "<prefix>.weight" [num, hidden], replicated (Megatron's position_embeddings).
  Embedding(ParamRegistry& reg, const std::string& prefix, int64_t num_embeddings,
            int64_t hidden_size, const Init& init);
  at::Tensor forward(const at::Tensor& ids) const;  // ids [...] -> [..., hidden]

  at::Tensor weight;
};

}  // namespace megahost::sdk::nn
