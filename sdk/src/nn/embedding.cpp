// megahost SDK — embeddings (see megahost/sdk/nn/embedding.h).
#include "megahost/sdk/nn/embedding.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/embedding.h>

namespace megahost::sdk::nn {

VocabParallelEmbedding::VocabParallelEmbedding(ParamRegistry& reg, const std::string& prefix, int64_t vocab_size,
                                               int64_t hidden_size, const Init& init, ParallelContextPtr parallel)
    : parallel_(std::move(parallel)) {
  weight = create_tensor_parallel(reg, join_name(prefix, "weight"), {vocab_size, hidden_size}, init, 0, 0,
                                  parallel_.get());
  if (parallel_) vocab_start_ = parallel_->tp.rank() * weight.size(0);
}

at::Tensor VocabParallelEmbedding::forward(const at::Tensor& ids) const {
  if (!parallel_ || parallel_->tp.size() == 1) return at::embedding(weight, ids);
  // Ids outside [start, start + V/tp) belong to another rank: look up row 0, zero the result.
  const at::Tensor foreign = (ids < vocab_start_).logical_or(ids >= vocab_start_ + weight.size(0));  // [...]
  const at::Tensor local_ids = (ids - vocab_start_).masked_fill(foreign, 0);
  const at::Tensor partial = at::embedding(weight, local_ids).masked_fill(foreign.unsqueeze(-1), 0.0);
  return parallel::reduce_from_tp_region(partial, parallel_->tp);  // [..., hidden]
}

at::Tensor embeddings_to_hidden_states(const at::Tensor& embeddings, const parallel::ParallelContext* parallel) {
  const at::Tensor h = embeddings.transpose(0, 1).contiguous();  // [s, b, h]
  if (parallel == nullptr || !parallel->sequence_parallel) return h;
  return parallel::scatter_to_sequence_parallel_region(h, parallel->tp);  // [s/tp, b, h]
}

Embedding::Embedding(ParamRegistry& reg, const std::string& prefix, int64_t num_embeddings, int64_t hidden_size,
                     const Init& init) {
  weight = reg.create(join_name(prefix, "weight"), {num_embeddings, hidden_size}, init, -1, 0);
}

at::Tensor Embedding::forward(const at::Tensor& ids) const { return at::embedding(weight, ids); }

}  // namespace megahost::sdk::nn
