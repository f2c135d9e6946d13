// megahost SDK — the plain libtorch references of the fused operations (see megahost/sdk/nn/fused.h).
// They are what runs on the CPU, and what the GPU tests hold the kernels to.
#include <ATen/ATen.h>

#include "megahost/sdk/error.h"
#include "megahost/sdk/nn/fused.h"
#include "megahost/sdk/nn/mlp.h"
#include "megahost/sdk/nn/norm.h"
#include "megahost/sdk/nn/rotary.h"
#include "megahost/sdk/parallel/random.h"
#include "megahost/sdk/stochastic_round.h"

namespace megahost::sdk::fused::reference {

at::Tensor norm(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, double eps, bool rms) {
  return rms ? nn::rms_norm(x, weight, eps) : nn::layer_norm(x, weight, bias, eps);
}

std::pair<at::Tensor, at::Tensor> add_norm(const at::Tensor& x, const at::Tensor& residual, const at::Tensor& weight,
                                           const at::Tensor& bias, double eps, bool rms, const at::Tensor& x_bias) {
  const at::Tensor sum = residual + (x_bias.defined() ? x + x_bias : x);  // the residual stream after this sub-layer
  return {norm(sum, weight, bias, eps, rms), sum};
}

std::pair<at::Tensor, at::Tensor> add_dropout_norm(const at::Tensor& x, const at::Tensor& residual,
                                                   const at::Tensor& weight, const at::Tensor& bias, double eps,
                                                   bool rms, const at::Tensor& x_bias, double p) {
  const at::Tensor dropped = parallel::replicated_dropout(x_bias.defined() ? x + x_bias : x, p, /*training=*/true);
  return add_norm(dropped, residual, weight, bias, eps, rms);
}

std::pair<at::Tensor, at::Tensor> norm_passthrough(const at::Tensor& x, const at::Tensor& weight,
                                                   const at::Tensor& bias, double eps, bool rms,
                                                   const at::Tensor& x_bias) {
  // x_bias is inside x already: its gradient, the column sums of x's, reaches it through an
  // identity that adds (x_bias - x_bias) with x_bias's gradient path (values unchanged).
  const at::Tensor out = x_bias.defined() ? x + (x_bias - x_bias.detach()) : x;
  return {norm(out, weight, bias, eps, rms), out};
}

at::Tensor embedding_sbh(const at::Tensor& word, const at::Tensor& ids, const at::Tensor& pos,
                         const at::Tensor& pos_ids) {
  at::Tensor e = at::embedding(word, ids);                    // [b, s, h]
  if (pos.defined()) e = e + at::embedding(pos, pos_ids);     // Megatron's word + position embeddings
  return e.transpose(0, 1).contiguous();                      // [s, b, h]
}

at::Tensor bias_gelu(const at::Tensor& x, const at::Tensor& bias) {
  return at::gelu(bias.defined() ? x + bias : x);
}

at::Tensor swiglu(const at::Tensor& x) { return nn::swiglu(x); }

at::Tensor rotary(const at::Tensor& t, const at::Tensor& angles) {
  if (t.dim() != 5) return nn::apply_rotary_pos_emb(t, angles);
  // [s, b, n1, n2, d] (q read from the grouped q/k/v layout) -> [s, b, n1 * n2, d]
  const at::Tensor out = nn::apply_rotary_pos_emb(t, angles.reshape({angles.size(0), 1, 1, 1, angles.size(-1)}));
  return out.reshape({t.size(0), t.size(1), t.size(2) * t.size(3), t.size(4)});
}

at::Tensor head_norm_rotary(const at::Tensor& t, const at::Tensor& weight, const at::Tensor& bias, double eps,
                            bool rms, const at::Tensor& angles) {
  const at::Tensor normed = norm(t, weight, bias, eps, rms);  // [s, b, n1, (n2,) d]
  if (angles.defined()) return rotary(normed, angles);
  return normed.reshape({t.size(0), t.size(1), -1, t.size(-1)});
}

at::Tensor cross_entropy(const at::Tensor& logits, const at::Tensor& labels, const parallel::DistGroup* tp) {
  MH_CHECK(tp == nullptr, MH_ERR_INVALID_ARG, "fused::reference::cross_entropy is single-device",
           "\nHINT: under tensor parallelism use nn::vocab_parallel_cross_entropy");
  return at::cross_entropy_loss(logits.to(at::kFloat), labels, /*weight=*/{}, at::Reduction::None);  // [N]
}

void adamw(const std::vector<at::Tensor>& params, const std::vector<at::Tensor>& grads,
           const std::vector<at::Tensor>& exp_avgs, const std::vector<at::Tensor>& exp_avg_sqs,
           const std::vector<double>& weight_decays, const AdamWHyper& h, const std::vector<int64_t>& offsets) {
  MH_CHECK(offsets.empty() || offsets.size() == params.size(), MH_ERR_INVALID_ARG,
           "fused::reference::adamw: one offset per param, or none");
  const double bc1 = 1.0 - std::pow(h.beta1, static_cast<double>(h.step));
  const double bc2 = 1.0 - std::pow(h.beta2, static_cast<double>(h.step));
  for (size_t i = 0; i < params.size(); ++i) {
    at::Tensor p = params[i];
    // bf16 moments: updated and used in float32, stored rounded stochastically (as the kernel).
    auto working = [&](const at::Tensor& s) { return s.scalar_type() == at::kBFloat16 ? s.to(p.scalar_type()) : s; };
    at::Tensor m = working(exp_avgs[i]), v = working(exp_avg_sqs[i]);
    at::Tensor g = grads[i].scalar_type() == p.scalar_type() ? grads[i] : grads[i].to(p.scalar_type());  // bf16 grads
    if (h.grad_scale != 1.0) g = g * h.grad_scale;
    if (h.grad_scale_tensor.defined()) g = g * h.grad_scale_tensor.to(g.device()).reshape({});
    if (weight_decays[i] != 0) p.mul_(1.0 - h.lr * weight_decays[i]);  // decoupled decay on p before the step
    m.mul_(h.beta1).add_(g, 1.0 - h.beta1);
    v.mul_(h.beta2).addcmul_(g, g, 1.0 - h.beta2);
    const at::Tensor denom = v.sqrt().div_(std::sqrt(bc2)).add_(h.eps);
    p.addcdiv_(m, denom, -h.lr / bc1);
    const uint32_t salt = stochastic_round::salt(h.step);
    const int64_t first = offsets.empty() ? 0 : offsets[i];
    if (!m.is_same(exp_avgs[i])) stochastic_round::to_bf16(m.to(at::kFloat), salt, 0, exp_avgs[i], first);
    if (!v.is_same(exp_avg_sqs[i])) stochastic_round::to_bf16(v.to(at::kFloat), salt, 1, exp_avg_sqs[i], first);
  }
}

}  // namespace megahost::sdk::fused::reference
