// megahost SDK — per-token cross entropy (see megahost/sdk/nn/cross_entropy.h).
#include "megahost/sdk/nn/cross_entropy.h"

#include <ATen/ops/cross_entropy_loss.h>

namespace megahost::sdk::nn {

at::Tensor vocab_parallel_cross_entropy(const at::Tensor& logits, const at::Tensor& labels) {
  const int64_t vocab = logits.size(-1);
  const at::Tensor flat = at::cross_entropy_loss(logits.to(at::kFloat).reshape({-1, vocab}), labels.reshape({-1}),
                                                 /*weight=*/{}, at::Reduction::None);
  return flat.view(labels.sizes());  // [...]
}

}  // namespace megahost::sdk::nn
