// megahost SDK — per-token cross entropy (see megahost/sdk/nn/cross_entropy.h).
#include "megahost/sdk/nn/cross_entropy.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include "megahost/sdk/nn/fused.h"
#include "megahost/sdk/nn/linear.h"
#include "megahost/sdk/parallel/mappings.h"

namespace megahost::sdk::nn {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Megatron's _VocabParallelCrossEntropy. Saves softmax [..., V/tp] for backward.
struct VocabParallelCE : torch::autograd::Function<VocabParallelCE> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& logits_in, const at::Tensor& labels,
                            const parallel::DistGroup* tp) {
    const at::Tensor logits = logits_in.to(at::kFloat);  // [..., Vp]
    at::Tensor max = std::get<0>(logits.max(-1));       // [...]
    tp->all_reduce(max, MH_REDUCE_MAX);
    const at::Tensor shifted = logits - max.unsqueeze(-1);

    const int64_t vp = logits.size(-1), start = tp->rank() * vp;
    const at::Tensor foreign = (labels < start).logical_or(labels >= start + vp);  // target on another rank
    const at::Tensor local_target = (labels - start).masked_fill(foreign, 0);
    at::Tensor target_logit = shifted.gather(-1, local_target.unsqueeze(-1)).squeeze(-1).masked_fill(foreign, 0.0);
    tp->all_reduce(target_logit);

    const at::Tensor exp = shifted.exp();
    at::Tensor sum_exp = exp.sum(-1);  // [...]
    tp->all_reduce(sum_exp);

    ctx->save_for_backward({exp / sum_exp.unsqueeze(-1), foreign, local_target});
    ctx->saved_data["dtype"] = static_cast<int64_t>(logits_in.scalar_type());
    return sum_exp.log() - target_logit;  // [...]
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& softmax = saved[0];
    const at::Tensor& foreign = saved[1];
    const at::Tensor& local_target = saved[2];
    // d loss / d logits = softmax - one_hot(target), the one-hot only where this rank owns it.
    at::Tensor dlogits = softmax.clone();
    dlogits.scatter_add_(-1, local_target.unsqueeze(-1), (foreign.logical_not().to(at::kFloat) * -1.0).unsqueeze(-1));
    dlogits.mul_(grad[0].unsqueeze(-1));
    const auto dtype = static_cast<at::ScalarType>(ctx->saved_data["dtype"].toInt());
    return {dlogits.to(dtype), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor vocab_parallel_cross_entropy(const at::Tensor& logits, const at::Tensor& labels) {
  const int64_t vocab = logits.size(-1);
  if (fused::available(logits))  // straight from (b)f16 logits, no float32 copy
    return fused::cross_entropy(logits.reshape({-1, vocab}), labels.reshape({-1}), nullptr).view(labels.sizes());
  const at::Tensor flat = at::cross_entropy_loss(logits.to(at::kFloat).reshape({-1, vocab}), labels.reshape({-1}),
                                                 /*weight=*/{}, at::Reduction::None);
  return flat.view(labels.sizes());  // [...]
}

at::Tensor vocab_parallel_cross_entropy(const at::Tensor& logits, const at::Tensor& labels,
                                        const parallel::ParallelContext* parallel) {
  if (parallel == nullptr || parallel->tp.size() == 1) return vocab_parallel_cross_entropy(logits, labels);
  if (fused::available(logits)) {
    const int64_t vp = logits.size(-1);
    return fused::cross_entropy(logits.reshape({-1, vp}), labels.reshape({-1}), &parallel->tp).view(labels.sizes());
  }
  return VocabParallelCE::apply(logits, labels.contiguous(), &parallel->tp);
}

at::Tensor lm_head_cross_entropy(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& labels,
                                 const parallel::ParallelContext* parallel, bool accumulate_into_grad,
                                 bool notify_grad_ready) {
  if (parallel != nullptr && parallel->tp.size() > 1)
    return vocab_parallel_cross_entropy(
        parallel_lm_logits(hidden, weight, parallel, accumulate_into_grad, notify_grad_ready), labels, parallel);
  const int64_t h = hidden.size(-1);
  return fused::lm_head_cross_entropy(hidden.reshape({-1, h}), weight, labels.reshape({-1}), accumulate_into_grad,
                                      notify_grad_ready)
      .view(labels.sizes());  // [s, b]
}

}  // namespace megahost::sdk::nn
