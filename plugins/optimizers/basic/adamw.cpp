#include <cmath>

#include "algorithms.h"
#include "megahost/sdk/nn/fused.h"
#include "megahost/sdk/scaled_state.h"

namespace megahost::optim {

namespace {
// fp32 live tensors on a CUDA device: one multi-tensor kernel launch for the whole group.
// With remainders: bf16 params, the kernel composing and splitting the fp32 masters itself.
bool fused_ok(const Group& g) {
  if (g.params.empty() || !g.write_back.empty() || !sdk::fused::available(g.params.front())) return false;
  const at::ScalarType param_type = g.remainders.empty() ? at::kFloat : at::kBFloat16;
  for (size_t i = 0; i < g.params.size(); ++i)
    if (g.params[i].scalar_type() != param_type ||
        (g.grads[i].scalar_type() != at::kFloat && g.grads[i].scalar_type() != at::kBFloat16))
      return false;
  return true;
}
}  // namespace

// bf16 main gradients (the host's main_grads_dtype = bf16) go to the CUDA kernel as they are: it
// reads them as float32 in registers. Elsewhere (CPU, fusion off) they are copied to float32.
bool AdamW::reads_bf16_grads(const at::Tensor& g) const {
  return g.scalar_type() == at::kBFloat16 && sdk::fused::available(g);
}
bool AdamW::folds_grad_scale(const Group& g) const { return fused_ok(g); }
bool AdamW::writes_model_copies(const Group& g) const { return fused_ok(g); }
bool AdamW::handles_remainders(const Group& g) const { return fused_ok(g); }

// Same operation order as torch::optim::AdamW, so results match it to rounding.
void AdamW::update(Group& g, double lr, double wd, int64_t t) {
  // bf16 moments, or scaled fp16 / fp8 ones: the sdk's update takes them (the CUDA kernel in two
  // passes, since the new scale needs the updated moments' largest value; its reference on the
  // CPU through sdk/scaled_state.h).
  bool bf16_moments = false;
  for (const std::vector<at::Tensor>& state : g.state)
    for (const at::Tensor& s : state)
      bf16_moments = bf16_moments || s.scalar_type() == at::kBFloat16 || sdk::is_scaled_dtype(s.scalar_type());
  const bool fused = fused_ok(g);
  if (fused || bf16_moments) {  // the sdk's update: the CUDA kernel, or its reference on the CPU
    sdk::fused::AdamWHyper h;
    h.lr = lr;
    h.beta1 = beta1_;
    h.beta2 = beta2_;
    h.eps = eps_;
    h.step = t;
    h.grad_scale = g.grad_scale;
    h.grad_scale_tensor = g.grad_scale_tensor;
    const std::vector<double> decays(g.params.size(), wd);
    const sdk::fused::AdamWScales scales{g.scales[0], g.scales[1]};
    if (!fused)  // fp32 working params
      sdk::fused::adamw(g.params, g.grads, g.state[0], g.state[1], decays, h, {}, {}, g.offsets, scales);
    else if (g.remainders.empty())
      sdk::fused::adamw(g.params, g.grads, g.state[0], g.state[1], decays, h, g.model_copies, {}, g.offsets, scales);
    else
      sdk::fused::adamw(g.params, g.grads, g.state[0], g.state[1], decays, h, {}, g.remainders, g.offsets, scales);
    return;
  }
  std::vector<at::Tensor>& exp_avg = g.state[0];     // m, per param: same shape as p
  std::vector<at::Tensor>& exp_avg_sq = g.state[1];  // v
  if (wd != 0) at::_foreach_mul_(g.params, 1 - lr * wd);  // decoupled decay uses p before the step

  at::_foreach_mul_(exp_avg, beta1_);
  at::_foreach_add_(exp_avg, g.grads, 1 - beta1_);
  at::_foreach_mul_(exp_avg_sq, beta2_);
  at::_foreach_addcmul_(exp_avg_sq, g.grads, g.grads, 1 - beta2_);

  const double bias_correction1 = 1 - std::pow(beta1_, double(t));
  const double bias_correction2 = 1 - std::pow(beta2_, double(t));
  std::vector<at::Tensor> denom = at::_foreach_sqrt(exp_avg_sq);
  at::_foreach_div_(denom, std::sqrt(bias_correction2));
  at::_foreach_add_(denom, eps_);
  at::_foreach_addcdiv_(g.params, exp_avg, denom, -lr / bias_correction1);
}

}  // namespace megahost::optim
