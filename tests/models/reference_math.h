// Plain libtorch math the SDK blocks are checked against, written from the formulas (per head,
// per pair of dims) rather than from the SDK's code.
#pragma once

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <cmath>
#include <limits>
#include <vector>

namespace mhtest {

// (x - mean) / sqrt(biased var + eps) * w + b over the last dim
inline at::Tensor ref_layer_norm(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, double eps) {
  const at::Tensor mean = x.mean(-1, true);
  const at::Tensor var = (x - mean).pow(2).mean(-1, true);
  return (x - mean) / (var + eps).sqrt() * w + b;
}

// x / sqrt(mean(x^2) + eps) * w
inline at::Tensor ref_rms_norm(const at::Tensor& x, const at::Tensor& w, double eps) {
  return x / (x.pow(2).mean(-1, true) + eps).sqrt() * w;
}

inline at::Tensor ref_gelu(const at::Tensor& x) { return 0.5 * x * (1.0 + at::erf(x / std::sqrt(2.0))); }
inline at::Tensor ref_silu(const at::Tensor& x) { return x / (1.0 + at::exp(-x)); }

// Rotary on t [s, b, n, d]: dims i and i + rot/2 (i < rot/2) rotate by angle pos * base^(-2i/rot);
// dims >= rot pass through. Position = index along dim 0.
inline at::Tensor ref_rotary(const at::Tensor& t, int64_t rot, double base) {
  at::Tensor out = t.clone();
  const int64_t s = t.size(0), half = rot / 2;
  for (int64_t p = 0; p < s; ++p)
    for (int64_t i = 0; i < half; ++i) {
      const double theta = static_cast<double>(p) * std::pow(base, -2.0 * static_cast<double>(i) / rot);
      const at::Tensor a = t.select(0, p).select(-1, i), b = t.select(0, p).select(-1, i + half);
      out.select(0, p).select(-1, i).copy_(a * std::cos(theta) - b * std::sin(theta));
      out.select(0, p).select(-1, i + half).copy_(b * std::cos(theta) + a * std::sin(theta));
    }
  return out;
}

// Megatron-Core self-attention written per head: x [s, b, h] -> [s, b, h].
// QKV columns per group g: [q of its heads..., k, v], each hn wide.
inline at::Tensor ref_self_attention(const at::Tensor& x, const at::Tensor& w_qkv, const at::Tensor& b_qkv,
                                     const at::Tensor& w_proj, const at::Tensor& b_proj, int64_t heads,
                                     int64_t groups, int64_t hn, int64_t rot = 0, double base = 10000.0,
                                     const at::Tensor& q_norm = at::Tensor(), const at::Tensor& k_norm = at::Tensor(),
                                     double eps = 1e-5) {
  // q_norm / k_norm [hn]: RMSNorm of each head's q and k before the rotation (qk_layernorm)
  auto rms = [eps](const at::Tensor& t, const at::Tensor& w) {
    return t / at::sqrt(t.pow(2).mean(-1, /*keepdim=*/true) + eps) * w;
  };
  const int64_t s = x.size(0), b = x.size(1), per_group = heads / groups, group_width = (per_group + 2) * hn;
  const at::Tensor mixed = b_qkv.defined() ? at::matmul(x, w_qkv.t()) + b_qkv : at::matmul(x, w_qkv.t());
  at::Tensor causal = at::ones({s, s}, x.options()).triu(1).to(at::kBool);  // true above the diagonal
  std::vector<at::Tensor> outs;
  for (int64_t i = 0; i < heads; ++i) {
    const int64_t g = i / per_group, j = i % per_group;
    at::Tensor q = mixed.narrow(-1, g * group_width + j * hn, hn);  // [s, b, hn]
    at::Tensor k = mixed.narrow(-1, g * group_width + per_group * hn, hn);
    const at::Tensor v = mixed.narrow(-1, g * group_width + (per_group + 1) * hn, hn);
    if (q_norm.defined()) q = rms(q, q_norm), k = rms(k, k_norm);
    if (rot > 0) {
      q = ref_rotary(q.unsqueeze(2), rot, base).squeeze(2);
      k = ref_rotary(k.unsqueeze(2), rot, base).squeeze(2);
    }
    // scores[b, s_q, s_k]
    at::Tensor scores = at::matmul(q.permute({1, 0, 2}), k.permute({1, 2, 0})) / std::sqrt(static_cast<double>(hn));
    scores = scores.masked_fill(causal, -std::numeric_limits<double>::infinity());
    const at::Tensor probs = at::softmax(scores, -1);
    outs.push_back(at::matmul(probs, v.permute({1, 0, 2})).permute({1, 0, 2}));  // [s, b, hn]
  }
  const at::Tensor context = at::cat(outs, -1);  // [s, b, heads * hn]
  return b_proj.defined() ? at::matmul(context, w_proj.t()) + b_proj : at::matmul(context, w_proj.t());
}

// Fills every parameter with fresh random values (so norms and biases are not trivially 1 / 0).
template <typename Registry>
void randomize(Registry& reg, uint64_t seed) {
  at::NoGradGuard no_grad;
  at::Generator gen = at::detail::createCPUGenerator(seed);
  for (const auto& p : reg.params()) p.data.copy_(at::empty(p.data.sizes()).normal_(0.0, 0.3, gen));
}

inline double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

}  // namespace mhtest
