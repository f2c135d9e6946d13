// megahost SDK — embeddings: Megatron-Core's VocabParallelEmbedding (vocabulary split across
// tensor-parallel ranks: weight dim 0) and a replicated table for learned absolute positions.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>

#include "megahost/sdk/nn/linear.h"
#include "megahost/sdk/nn/params.h"

namespace megahost::sdk::nn {

class VocabParallelEmbedding {
 public:
  // Registers "<prefix>.weight" [vocab, hidden] (tp dim 0: this rank's vocab/tp rows),
  // normal(0, init_std). vocab_size is the FULL (padded) vocabulary.
  VocabParallelEmbedding(ParamRegistry& reg, const std::string& prefix, int64_t vocab_size,
                         int64_t hidden_size, const Init& init, ParallelContextPtr parallel = nullptr);
  // ids [...] int64 -> [..., hidden]. Under TP each rank looks up its vocab range, zeroes the
  // rest and the outputs are all-reduced (reduce_from_tp_region).
  at::Tensor forward(const at::Tensor& ids) const;

  at::Tensor weight;  // [vocab/tp, hidden]

 private:
  ParallelContextPtr parallel_;
  int64_t vocab_start_ = 0;  // first vocab id this rank holds
};

// The tail of Megatron's LanguageModelEmbedding: embeddings [b, s, h] (word + position) ->
// the decoder's input [s, b, h], scattered along s under sequence parallelism ([s/tp, b, h]).
at::Tensor embeddings_to_hidden_states(const at::Tensor& embeddings, const parallel::ParallelContext* parallel);

class Embedding {
 public:
  // Registers "<prefix>.weight" [num, hidden], replicated (Megatron's position_embeddings).
  Embedding(ParamRegistry& reg, const std::string& prefix, int64_t num_embeddings,
            int64_t hidden_size, const Init& init);
  at::Tensor forward(const at::Tensor& ids) const;  // ids [...] -> [..., hidden]

  at::Tensor weight;
};

}  // namespace megahost::sdk::nn
