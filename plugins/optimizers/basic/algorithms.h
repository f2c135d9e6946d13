// Basic optimizers — AdamW and SGD with momentum, the update rules of torch.optim (and of
// apex FusedAdam in AdamW mode, which Megatron's --optimizer adam uses).
#pragma once

#include "optimizer.h"

namespace megahost::optim {

// AdamW (Loshchilov & Hutter, decoupled weight decay), per parameter p with gradient g, step t:
//   p   <- p * (1 - lr * wd)
//   m   <- beta1 * m + (1 - beta1) * g
//   v   <- beta2 * v + (1 - beta2) * g^2
//   p   <- p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
// State: exp_avg (m), exp_avg_sq (v); each fp32, or bf16 (Megatron's --exp-avg-dtype /
// --exp-avg-sq-dtype): then m and v are updated and used in fp32 and stored rounded
// stochastically (sdk/stochastic_round.h), so a slowly decaying v still decays; or fp16 / fp8,
// scaled per tensor (sdk/scaled_state.h), updated in fp32 and stored rounded to nearest.
class AdamW final : public Optimizer {
 public:
  AdamW(const mh_host* host, double beta1, double beta2, double eps, at::ScalarType exp_avg_dtype = at::kFloat,
        at::ScalarType exp_avg_sq_dtype = at::kFloat)
      : Optimizer(host, {"exp_avg", "exp_avg_sq"}, {exp_avg_dtype, exp_avg_sq_dtype}),
        beta1_(beta1),
        beta2_(beta2),
        eps_(eps) {}

 protected:
  void update(Group& g, double lr, double wd, int64_t t) override;
  // On CUDA the multi-tensor kernel (sdk fused::adamw) scales the gradients as it reads them and
  // writes the model copies of the updated parameters.
  bool folds_grad_scale(const Group& g) const override;
  bool writes_model_copies(const Group& g) const override;
  bool handles_remainders(const Group& g) const override;
  bool reads_bf16_grads(const at::Tensor& g) const override;

 private:
  double beta1_, beta2_, eps_;
};

// SGD with momentum and L2 weight decay, as torch.optim.SGD (dampening 0, no Nesterov):
//   d   <- g + wd * p
//   buf <- momentum * buf + d        (buf starts at 0, so the first step gives buf = d exactly)
//   p   <- p - lr * buf              (p - lr * d when momentum = 0; no state then)
// State: momentum_buffer.
class SGD final : public Optimizer {
 public:
  SGD(const mh_host* host, double momentum)
      : Optimizer(host, momentum != 0 ? std::vector<std::string>{"momentum_buffer"} : std::vector<std::string>{}),
        momentum_(momentum) {}

 protected:
  void update(Group& g, double lr, double wd, int64_t t) override;

 private:
  double momentum_;
};

}  // namespace megahost::optim
