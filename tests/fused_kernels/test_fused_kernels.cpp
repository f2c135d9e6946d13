// Fused operations (megahost/sdk/nn/fused.h) against float64 math written out here.
//
// Error measure: max |got - want| / max |want| over the tensor (want in float64 from the same,
// already-rounded inputs). Bounds: float32 1e-5 (far under 1e-3), bfloat16 1e-2 (bf16 keeps 8
// bits: one rounding of the output is ~4e-3). NaN or Inf anywhere fails (the comparison is
// written so that NaN never passes).
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <torch/csrc/autograd/autograd.h>

#include <cmath>
#include <string>
#include <tuple>
#include <vector>

#include "megahost/sdk/nn/fused.h"
#include "megahost/sdk/param_remainders.h"
#include "megahost/sdk/scaled_state.h"
#include "compare.h"

namespace fused = megahost::sdk::fused;

namespace {

using fused_test::have_gpu;
using fused_test::leaf;
using fused_test::leaf64;
using fused_test::layer_norm64;
using fused_test::rms_norm64;
using fused_test::rotary64;
using fused_test::grads_of;
using fused_test::Case;
using fused_test::gpu_cases;
using fused_test::cuda;

// float64 versions of each operation, straight from the definitions.
at::Tensor gelu64(const at::Tensor& x) { return 0.5 * x * (1.0 + at::erf(x / std::sqrt(2.0))); }
at::Tensor swiglu64(const at::Tensor& x) {
  const int64_t f = x.size(-1) / 2;
  const at::Tensor g = x.narrow(-1, 0, f), u = x.narrow(-1, f, f);
  return g * at::sigmoid(g) * u;
}
at::Tensor cross_entropy64(const at::Tensor& logits, const at::Tensor& labels) {
  return -at::log_softmax(logits, -1).gather(-1, labels.unsqueeze(-1)).squeeze(-1);
}






// The AdamW tests' tensor i of n elements on the GPU: tensor 2 starts one element into its
// allocation, so the kernel takes its element-wise path there.
at::Tensor adamw_input(size_t i, int64_t n, at::ScalarType t) {
  return i == 2 ? at::randn({n + 1}, cuda(t)).narrow(0, 1, n) : at::randn({n}, cuda(t));
}

// add_dropout_norm: the mask is recovered from a call with a zero residual at the same generator
// state (manual_seed resets the Philox offset), then the output and every gradient are held to
// float64 computed with that mask; a further call draws another mask.
void check_add_dropout_norm(const at::TensorOptions& opts, double bound, int64_t h, int64_t rows, bool rms) {
  const double p = 0.1;
  at::manual_seed(12);
  at::Tensor x = leaf(at::randn({3, rows, h}, opts)), r = leaf(at::randn({3, rows, h}, opts));
  at::Tensor w = leaf(1.0 + 0.1 * at::randn({h}, opts)), b = leaf(0.1 * at::randn({h}, opts));
  at::Tensor xb = leaf(0.5 * at::randn({h}, opts));
  const at::Tensor bias = rms ? at::Tensor() : b;
  auto run = [&](const at::Tensor& x_in, const at::Tensor& xb_in, const at::Tensor& residual) {
    at::manual_seed(13);
    return fused::add_dropout_norm(x_in, residual, w, bias, 1e-5, rms, xb_in, p);
  };
  // The mask alone: x = 1, x_bias = 0, residual = 0 (the mask does not depend on the values; x +
  // x_bias itself may be 0 in bf16, where x == -x_bias).
  at::Tensor keep;
  {
    at::NoGradGuard no_grad;
    const at::Tensor probe = run(at::ones_like(x), at::zeros_like(xb), at::zeros_like(r)).second;
    keep = (probe.to(at::kDouble).cpu() != 0).to(at::kDouble);
  }
  EXPECT_NEAR(keep.mean().item<double>(), 1.0 - p, 0.01);
  auto [y, sum] = run(x, xb, r);
  at::Tensor x64 = leaf64(x), r64 = leaf64(r), w64 = leaf64(w), b64 = leaf64(b), xb64 = leaf64(xb);
  const at::Tensor sum64 = r64 + keep * (x64 + xb64) / (1.0 - p);
  const at::Tensor y64 = rms ? rms_norm64(sum64, w64, 1e-5) : layer_norm64(sum64, w64, b64, 1e-5);
  EXPECT_CLOSE(sum, sum64, bound);
  EXPECT_CLOSE(y, y64, bound);
  const at::Tensor dy = at::randn(y.sizes(), at::kDouble), ds = at::randn(y.sizes(), at::kDouble);
  const at::Tensor loss = (y.to(at::kDouble).cpu() * dy).sum() + (sum.to(at::kDouble).cpu() * ds).sum();
  const at::Tensor loss64 = (y64 * dy).sum() + (sum64 * ds).sum();
  std::vector<at::Tensor> in = {x, r, w, xb}, in64 = {x64, r64, w64, xb64};
  if (!rms) in.push_back(b), in64.push_back(b64);
  const auto g = torch::autograd::grad({loss}, in), g64 = torch::autograd::grad({loss64}, in64);
  for (size_t i = 0; i < g.size(); ++i) {
    SCOPED_TRACE("grad of input " + std::to_string(i));  // x, residual, weight, x_bias, [bias]
    EXPECT_CLOSE(g[i], g64[i], bound * (i >= 2 ? 2 : 1));  // weight/bias/x_bias: sums over the rows
  }
  at::NoGradGuard no_grad;
  const at::Tensor next =
      fused::add_dropout_norm(at::ones_like(x), at::zeros_like(r), w, bias, 1e-5, rms, at::zeros_like(xb), p).second;
  EXPECT_FALSE(at::equal((next.to(at::kDouble).cpu() != 0).to(at::kDouble), keep));
}


// n elements, for tensor i == 2 one element past an aligned start: the AdamW kernel's element-wise
// path (the others take its vector path).
at::Tensor at_offset_if_2(int64_t n, size_t i, const at::TensorOptions& o) {
  return i == 2 ? at::empty({n + 1}, o).narrow(0, 1, n) : at::empty({n}, o);
}

}  // namespace

// ---- CPU: the references used on the CPU equal the definitions ----

TEST(FusedReference, NormsMatchDefinitions) {
  at::manual_seed(1);
  const at::Tensor x = at::randn({6, 5, 64}, at::kDouble), r = at::randn({6, 5, 64}, at::kDouble);
  const at::Tensor w = at::randn({64}, at::kDouble), b = at::randn({64}, at::kDouble);
  auto [y, sum] = fused::reference::add_norm(x, r, w, b, 1e-5, false);
  EXPECT_CLOSE(sum, x + r, 1e-15);
  EXPECT_CLOSE(y, layer_norm64(x + r, w, b, 1e-5), 1e-12);
  // A skipped output bias of x joins the add.
  const at::Tensor xb = at::randn({64}, at::kDouble);
  auto [yb, sumb] = fused::reference::add_norm(x, r, w, b, 1e-5, false, xb);
  EXPECT_CLOSE(sumb, x + xb + r, 1e-15);
  EXPECT_CLOSE(yb, layer_norm64(x + xb + r, w, b, 1e-5), 1e-12);
  // RMSNorm keeps its statistics in float32 (as the kernel does), whatever the input dtype.
  EXPECT_CLOSE(fused::reference::norm(x, w, at::Tensor(), 1e-6, true), rms_norm64(x, w, 1e-6), 1e-6);
}

TEST(FusedReference, ActivationsRotaryCrossEntropy) {
  at::manual_seed(2);
  const at::Tensor x = at::randn({4, 3, 16}, at::kDouble), bias = at::randn({16}, at::kDouble);
  EXPECT_CLOSE(fused::reference::bias_gelu(x, bias), gelu64(x + bias), 1e-12);
  EXPECT_CLOSE(fused::reference::swiglu(x), swiglu64(x), 1e-12);
  const at::Tensor t = at::randn({5, 2, 3, 8}, at::kDouble), angles = at::randn({5, 1, 1, 3}, at::kFloat);
  const at::Tensor a6 = at::cat({angles, angles}, -1);  // both halves equal, as RotaryEmbedding makes them
  EXPECT_CLOSE(fused::reference::rotary(t, a6), rotary64(t, a6), 1e-6);  // cos/sin from float32 angles
  // q as the attention reads it: [s, b, ng, np/ng, d] -> [s, b, np, d]
  const at::Tensor grouped = at::randn({5, 2, 2, 3, 8}, at::kDouble);
  EXPECT_CLOSE(fused::reference::rotary(grouped, a6), rotary64(grouped.reshape({5, 2, 6, 8}), a6), 1e-6);
  const at::Tensor logits = at::randn({7, 11}, at::kDouble), labels = at::randint(0, 11, {7}, at::kLong);
  EXPECT_CLOSE(fused::reference::cross_entropy(logits.to(at::kFloat), labels, nullptr), cross_entropy64(logits, labels),
               1e-6);
}

TEST(FusedReference, AdamWMatchesTheRuleAndFoldsTheGradScale) {
  at::manual_seed(3);
  const at::Tensor p0 = at::randn({10}, at::kDouble), g = at::randn({10}, at::kDouble);
  at::Tensor p = p0.clone(), m = at::zeros({10}, at::kDouble), v = at::zeros({10}, at::kDouble);
  fused::AdamWHyper h;
  h.lr = 0.1, h.beta1 = 0.9, h.beta2 = 0.95, h.eps = 1e-8, h.step = 1, h.grad_scale = 0.5;
  fused::reference::adamw({p}, {g}, {m}, {v}, {0.1}, h);
  const at::Tensor gs = g * 0.5, m1 = 0.1 * gs, v1 = 0.05 * gs * gs;
  const at::Tensor want = p0 * (1 - 0.1 * 0.1) - 0.1 / 0.1 * m1 / (v1.sqrt() / std::sqrt(0.05) + 1e-8);
  EXPECT_CLOSE(p, want, 1e-12);
  EXPECT_CLOSE(m, m1, 1e-15);
}

// The CPU runs the reference (libtorch's dropout, then add_norm) under the same contract, in
// float32 (libtorch's bf16 norms on the CPU sum the weight gradients in bf16).
TEST(FusedReference, AddDropoutNormMatchesFloat64WithItsMask) {
  for (bool rms : {false, true}) {
    SCOPED_TRACE(rms ? "RMSNorm" : "LayerNorm");
    check_add_dropout_norm(at::TensorOptions().dtype(at::kFloat), 1e-5, 256, 200, rms);
  }
}

TEST(FusedReference, NotAvailableOnCpuTensors) {
  EXPECT_FALSE(fused::available(at::ones({2})));
  if (!fused::built_with_cuda()) EXPECT_FALSE(fused::available(at::ones({2}, at::kBFloat16)));
  EXPECT_FALSE(fused::dropout_in_norm(at::ones({2, 1024}, at::kBFloat16)));  // the CPU: libtorch's dropout
}

// ---- GPU: kernels against float64 ----

TEST(FusedKernelsGpu, AddNormAndNorm) {
  SKIP_WITHOUT_GPU();
  for (const Case& c : gpu_cases()) {
    // h: one 16-byte vector per thread of 128; several; blocks of other sizes (768: 96 threads in
    // bf16, 2560: 160 x 2, 5120: 160 x 4; 12288: 384 x 4 in bf16, past the shared-memory kernels,
    // the libtorch reference in float32); not a whole number of vectors (the scalar kernels)
    for (int64_t h : {1024, 2048, 4096, 768, 2560, 5120, 12288, 1020})
    for (bool rms : {false, true})
    for (bool with_x_bias : {false, true}) {  // with: the sub-layer's skipped output bias joins the add
      SCOPED_TRACE(std::string(c10::toString(c.dtype)) + (rms ? " RMSNorm" : " LayerNorm") + " h " +
                   std::to_string(h) + (with_x_bias ? " with x_bias" : ""));
      at::manual_seed(10);
      // h 2048: more rows than the backward's blocks on the device, so each block walks several
      // rows and their sums of dweight / dbias; else 111 rows.
      const int64_t s = h == 2048 ? 677 : 37;
      at::Tensor x = leaf(at::randn({3, s, h}, cuda(c.dtype))), r = leaf(at::randn({3, s, h}, cuda(c.dtype)));
      at::Tensor w = leaf(1.0 + 0.1 * at::randn({h}, cuda(c.dtype))), b = leaf(0.1 * at::randn({h}, cuda(c.dtype)));
      at::Tensor xb = leaf(0.5 * at::randn({h}, cuda(c.dtype)));
      ASSERT_TRUE(fused::available(x));
      auto [y, sum] = fused::add_norm(x, r, w, rms ? at::Tensor() : b, 1e-5, rms, with_x_bias ? xb : at::Tensor());
      at::Tensor x64 = leaf64(x), r64 = leaf64(r), w64 = leaf64(w), b64 = leaf64(b), xb64 = leaf64(xb);
      const at::Tensor sum64 = (with_x_bias ? x64 + xb64 : x64) + r64;
      const at::Tensor y64 = rms ? rms_norm64(sum64, w64, 1e-5) : layer_norm64(sum64, w64, b64, 1e-5);
      EXPECT_CLOSE(sum, sum64, c.bound);
      EXPECT_CLOSE(y, y64, c.bound);
      // A loss that uses both outputs, as a transformer layer does (y feeds the MLP, sum the residual).
      const at::Tensor dy = at::randn(y.sizes(), at::kDouble), ds = at::randn(y.sizes(), at::kDouble);
      const at::Tensor loss = (y.to(at::kDouble).cpu() * dy).sum() + (sum.to(at::kDouble).cpu() * ds).sum();
      const at::Tensor loss64 = (y64 * dy).sum() + (sum64 * ds).sum();
      std::vector<at::Tensor> in = {x, r, w}, in64 = {x64, r64, w64};
      if (!rms) in.push_back(b), in64.push_back(b64);
      if (with_x_bias) in.push_back(xb), in64.push_back(xb64);
      const auto g = torch::autograd::grad({loss}, in), g64 = torch::autograd::grad({loss64}, in64);
      for (size_t i = 0; i < g.size(); ++i) {
        SCOPED_TRACE("grad of input " + std::to_string(i));  // x, residual, weight, [bias], [x_bias]
        EXPECT_CLOSE(g[i], g64[i], c.bound * (i >= 2 ? 2 : 1));  // weight/bias/x_bias: sums over the rows
      }
      // Without a residual.
      const at::Tensor y2 = fused::norm(x, w, rms ? at::Tensor() : b, 1e-5, rms);
      EXPECT_CLOSE(y2, rms ? rms_norm64(x64, w64, 1e-5) : layer_norm64(x64, w64, b64, 1e-5), c.bound);
    }
  }
}

// On CUDA the mask is drawn inside the norm's kernel for h 1024, 2048 (128-thread blocks), 768,
// 2560, 5120 (blocks of 96-320 threads) and 12288 in bf16; 1020 is no whole number of vectors, so
// libtorch's dropout runs there (and at 12288 in float32), under the same contract.
TEST(FusedKernelsGpu, AddDropoutNormMatchesFloat64WithItsMask) {
  SKIP_WITHOUT_GPU();
  for (const Case& c : gpu_cases())
    for (int64_t h : {1024, 2048, 768, 2560, 5120, 12288, 1020})
      for (bool rms : {false, true}) {
        SCOPED_TRACE(std::string(c10::toString(c.dtype)) + (rms ? " RMSNorm" : " LayerNorm") + " h " +
                     std::to_string(h));
        const bool in_kernel = h != 1020 && !(c.dtype == at::kFloat && h == 12288);
        EXPECT_EQ(fused::dropout_in_norm(at::empty({2, h}, cuda(c.dtype))), in_kernel);
        check_add_dropout_norm(cuda(c.dtype), c.bound, h, h == 2048 ? 677 : 379, rms);
      }
}

TEST(FusedKernelsGpu, BiasGeluAndSwiglu) {
  SKIP_WITHOUT_GPU();
  for (const Case& c : gpu_cases()) {
    SCOPED_TRACE(c10::toString(c.dtype));
    at::manual_seed(11);
    at::Tensor x = leaf(2 * at::randn({5, 9, 256}, cuda(c.dtype))), b = leaf(at::randn({256}, cuda(c.dtype)));
    at::Tensor x64 = leaf64(x), b64 = leaf64(b);
    const at::Tensor y = fused::bias_gelu(x, b), y64 = gelu64(x64 + b64);
    EXPECT_CLOSE(y, y64, c.bound);
    const at::Tensor seed = at::randn(y.sizes(), at::kDouble);
    const auto g = grads_of(y, seed, {x, b}), g64 = grads_of(y64, seed, {x64, b64});
    EXPECT_CLOSE(g[0], g64[0], c.bound);
    EXPECT_CLOSE(g[1], g64[1], c.bound);

    const at::Tensor s = fused::swiglu(x), s64 = swiglu64(x64);
    EXPECT_CLOSE(s, s64, c.bound);
    const at::Tensor seed2 = at::randn(s.sizes(), at::kDouble);
    EXPECT_CLOSE(grads_of(s, seed2, {x})[0], grads_of(s64, seed2, {x64})[0], c.bound);
  }
}

TEST(FusedKernelsGpu, RotaryOnStridedInput) {
  SKIP_WITHOUT_GPU();
  for (const Case& c : gpu_cases()) {
    for (int64_t rot : {64, 32}) {  // whole head, and rotary_percent = 0.5
      SCOPED_TRACE(std::string(c10::toString(c.dtype)) + " rot " + std::to_string(rot));
      at::manual_seed(12);
      // q as the attention takes it: a slice of the fused qkv projection (not contiguous).
      const at::Tensor qkv = at::randn({33, 2, 4, 3 * 64}, cuda(c.dtype));
      at::Tensor q = leaf(qkv).narrow(3, 64, 64);  // [s, b, n, d], strided
      at::Tensor base = q;                          // grads flow to the leaf through the view
      const at::Tensor pos = at::arange(33, at::TensorOptions().dtype(at::kFloat).device(at::kCUDA));
      const at::Tensor inv = 1.0 / at::pow(10000.0, at::arange(0, rot, 2, pos.options()) / rot);
      const at::Tensor half = at::outer(pos, inv);
      const at::Tensor angles = at::cat({half, half}, -1).view({33, 1, 1, rot});
      const at::Tensor y = fused::rotary(base, angles);
      at::Tensor q64 = leaf64(q);
      const at::Tensor y64 = rotary64(q64, angles.cpu());
      EXPECT_CLOSE(y, y64, c.bound);
      const at::Tensor seed = at::randn(y.sizes(), at::kDouble);
      EXPECT_CLOSE(grads_of(y, seed, {base})[0], grads_of(y64, seed, {q64})[0], c.bound);
    }
  }
}

// The layouts the attention hands over: q read straight from the grouped q/k/v projection
// [s, b, ng, np/ng, hn] (5-D, strided), positions far past 2 pi (the angles' sin / cos taken
// exactly, not by the fast intrinsics), and a head width the vector path refuses (half a
// rotation not a whole number of 16-byte vectors: the per-element path).
TEST(FusedKernelsGpu, RotaryFromTheGroupedLayoutAtLatePositions) {
  SKIP_WITHOUT_GPU();
  for (const Case& c : gpu_cases()) {
    for (int64_t hn : {128, 36}) {
      SCOPED_TRACE(std::string(c10::toString(c.dtype)) + " hn " + std::to_string(hn));
      at::manual_seed(14);
      const int64_t s = 37, b = 3, ng = 2, per_group = 3;
      // [s, b, ng, (np/ng + 2) hn]: each group's queries, then its key and value
      const at::Tensor qkv = at::randn({s, b, ng, (per_group + 2) * hn}, cuda(c.dtype));
      at::Tensor base = leaf(qkv);
      const at::Tensor q = base.narrow(3, 0, per_group * hn).view({s, b, ng, per_group, hn});
      const at::Tensor pos = 2000 + at::arange(s, at::TensorOptions().dtype(at::kFloat).device(at::kCUDA));
      const at::Tensor inv = 1.0 / at::pow(10000.0, at::arange(0, hn, 2, pos.options()) / hn);
      const at::Tensor half = at::outer(pos, inv);
      const at::Tensor angles = at::cat({half, half}, -1).view({s, 1, 1, hn});
      const at::Tensor y = fused::rotary(q, angles);
      ASSERT_EQ(y.sizes(), (at::IntArrayRef{s, b, ng * per_group, hn}));
      EXPECT_TRUE(y.is_contiguous());
      at::Tensor base64 = leaf64(qkv);
      const at::Tensor q64 = base64.narrow(3, 0, per_group * hn).reshape({s, b, ng * per_group, hn});
      const at::Tensor y64 = rotary64(q64, angles.cpu());
      EXPECT_CLOSE(y, y64, c.bound);
      EXPECT_CLOSE(fused::reference::rotary(q, angles), y64, c.bound);  // the CPU path's 5-D view
      const at::Tensor seed = at::randn(y.sizes(), at::kDouble);
      EXPECT_CLOSE(grads_of(y, seed, {base})[0], grads_of(y64, seed, {base64})[0], c.bound);
    }
  }
}

TEST(FusedKernelsGpu, CrossEntropyWithoutFloat32Logits) {
  SKIP_WITHOUT_GPU();
  for (const Case& c : gpu_cases()) {
    SCOPED_TRACE(c10::toString(c.dtype));
    at::manual_seed(13);
    const int64_t rows = 97, vocab = 50304;
    at::Tensor logits = leaf(3 * at::randn({rows, vocab}, cuda(c.dtype)));
    const at::Tensor labels = at::randint(0, vocab, {rows}, at::TensorOptions().dtype(at::kLong).device(at::kCUDA));
    const at::Tensor loss = fused::cross_entropy(logits, labels, nullptr);
    EXPECT_EQ(loss.scalar_type(), at::kFloat);
    at::Tensor l64 = leaf64(logits);
    const at::Tensor loss64 = cross_entropy64(l64, labels.cpu());
    EXPECT_CLOSE(loss, loss64, 1e-5);  // float32 math on the same inputs, whatever the logits' dtype
    const at::Tensor seed = at::rand({rows}, at::kDouble);
    const auto g = grads_of(loss, seed, {logits});
    EXPECT_EQ(g[0].scalar_type(), c.dtype);  // the gradient stays in the logits' dtype
    EXPECT_CLOSE(g[0], grads_of(loss64, seed, {l64})[0], c.bound);
  }
}

TEST(FusedKernelsGpu, MultiTensorAdamW) {
  SKIP_WITHOUT_GPU();
  at::manual_seed(14);
  // Sizes around the chunk boundary, plus a large one and a tiny one.
  const std::vector<int64_t> sizes = {1, 16383, 16384, 16385, 100000, 7};
  std::vector<at::Tensor> p, g, m, v, p64, g64, m64, v64;
  std::vector<double> wd;
  for (size_t i = 0; i < sizes.size(); ++i) {
    p.push_back(at::randn({sizes[i]}, cuda(at::kFloat)));
    g.push_back(at::randn({sizes[i]}, cuda(at::kFloat)));
    m.push_back(at::zeros({sizes[i]}, cuda(at::kFloat)));
    v.push_back(at::zeros({sizes[i]}, cuda(at::kFloat)));
    for (auto [src, dst] : {std::pair{&p, &p64}, {&g, &g64}, {&m, &m64}, {&v, &v64}})
      dst->push_back(src->back().cpu().to(at::kDouble));
    wd.push_back(i % 2 == 0 ? 0.1 : 0.0);
  }
  fused::AdamWHyper h;
  h.lr = 1e-3, h.beta1 = 0.9, h.beta2 = 0.95, h.eps = 1e-8;
  for (int64_t step = 1; step <= 3; ++step) {
    h.step = step;
    h.grad_scale = 0.25 * step;  // clipping x 1/loss scale, folded in
    fused::adamw(p, g, m, v, wd, h);
    fused::reference::adamw(p64, g64, m64, v64, wd, h);
  }
  for (size_t i = 0; i < sizes.size(); ++i) {
    SCOPED_TRACE("tensor " + std::to_string(i));
    EXPECT_CLOSE(p[i], p64[i], 1e-5);
    EXPECT_CLOSE(m[i], m64[i], 1e-5);
    EXPECT_CLOSE(v[i], v64[i], 1e-5);
  }
  EXPECT_CLOSE(g[0], g64[0], 0.0);  // the gradients are read, not rescaled in place
}

// The clipping coefficient as a device scalar (ABI 1.7 grad_scale_tensor) multiplies the
// gradients as grad_scale does: the same update, bit for bit, with the kernel reading it on the
// device; gradients untouched.
TEST(FusedKernelsGpu, AdamWGradScaleTensorEqualsGradScale) {
  SKIP_WITHOUT_GPU();
  at::manual_seed(16);
  const std::vector<int64_t> sizes = {16385, 7, 100000};
  std::vector<at::Tensor> p, g, m, v, p2, m2, v2;
  for (int64_t n : sizes) {
    p.push_back(at::randn({n}, cuda(at::kFloat)));
    g.push_back(at::randn({n}, cuda(at::kFloat)));
    m.push_back(at::zeros({n}, cuda(at::kFloat)));
    v.push_back(at::zeros({n}, cuda(at::kFloat)));
    p2.push_back(p.back().clone());
    m2.push_back(m.back().clone());
    v2.push_back(v.back().clone());
  }
  const std::vector<double> wd = {0.1, 0.0, 0.1};
  const at::Tensor g_before = g[0].clone();
  for (int64_t step = 1; step <= 3; ++step) {
    const float coeff = 0.3f / static_cast<float>(step);
    fused::AdamWHyper h;
    h.lr = 1e-3, h.beta1 = 0.9, h.beta2 = 0.95, h.eps = 1e-8, h.step = step;
    h.grad_scale = coeff;
    fused::adamw(p, g, m, v, wd, h);
    h.grad_scale = 1.0;
    h.grad_scale_tensor = at::full({1}, coeff, cuda(at::kFloat));
    fused::adamw(p2, g, m2, v2, wd, h);
  }
  for (size_t i = 0; i < sizes.size(); ++i) {
    SCOPED_TRACE("tensor " + std::to_string(i));
    EXPECT_TRUE(at::equal(p[i], p2[i]));
    EXPECT_TRUE(at::equal(m[i], m2[i]));
    EXPECT_TRUE(at::equal(v[i], v2[i]));
  }
  EXPECT_TRUE(at::equal(g[0], g_before));
}

// The model copies of the updated masters (bf16 / fp16 / none per tensor), written in the update
// pass, are exactly the rounded masters: what a separate copy_ would have written. Tensor 2 lies
// at an odd offset of its storage (as a parameter inside a flat buffer may): the kernel's
// element-wise path instead of its 16-byte one.
TEST(FusedKernelsGpu, AdamWWritesTheModelCopies) {
  SKIP_WITHOUT_GPU();
  at::manual_seed(15);
  const std::vector<int64_t> sizes = {16385, 7, 100001};
  const std::vector<at::ScalarType> copy_dtypes = {at::kBFloat16, at::kHalf, at::kBFloat16};
  auto make = [](int64_t n, size_t i, const at::TensorOptions& o) {
    return i == 2 ? at::randn({n + 1}, o).narrow(0, 1, n) : at::randn({n}, o);
  };
  std::vector<at::Tensor> p, g, m, v, copies, p64, g64, m64, v64;
  for (size_t i = 0; i < sizes.size(); ++i) {
    p.push_back(at_offset_if_2(sizes[i], i, cuda(at::kFloat)));
    g.push_back(at_offset_if_2(sizes[i], i, cuda(at::kFloat)));
    m.push_back(at_offset_if_2(sizes[i], i, cuda(at::kFloat)).abs_());
    v.push_back(at_offset_if_2(sizes[i], i, cuda(at::kFloat)).abs_());
    copies.push_back(i == 1 ? at::Tensor() : at_offset_if_2(sizes[i], i, cuda(copy_dtypes[i])));  // tensor 1: no copy
    for (auto [src, dst] : {std::pair{&p, &p64}, {&g, &g64}, {&m, &m64}, {&v, &v64}})
      dst->push_back(src->back().cpu().to(at::kDouble));
  }
  fused::AdamWHyper h;
  h.lr = 1e-2, h.step = 2, h.grad_scale = 0.5;
  fused::adamw(p, g, m, v, {0.1, 0.1, 0.0}, h, copies);
  fused::reference::adamw(p64, g64, m64, v64, {0.1, 0.1, 0.0}, h);
  for (size_t i = 0; i < sizes.size(); ++i) {
    SCOPED_TRACE("tensor " + std::to_string(i));
    EXPECT_CLOSE(p[i], p64[i], 1e-5);
    EXPECT_CLOSE(m[i], m64[i], 1e-5);
    EXPECT_CLOSE(v[i], v64[i], 1e-5);
    if (copies[i].defined()) EXPECT_TRUE(at::equal(copies[i], p[i].to(copy_dtypes[i])));
  }
}

// bf16 main gradients (main_grads_dtype = bf16): the kernel reads them as float32 (exactly: bf16
// widens without rounding), so the update equals the float64 reference fed the same bf16 values,
// as well as the fp32-gradient kernel fed them widened. Tensor 2 at an odd offset (the kernel's
// element-wise path), tensor 1 shorter than a vector.
TEST(FusedKernelsGpu, AdamWReadsBf16Gradients) {
  SKIP_WITHOUT_GPU();
  at::manual_seed(18);
  const std::vector<int64_t> sizes = {16385, 3, 100001};
  std::vector<at::Tensor> p, g16, m, v, p2, g32, m2, v2, p64, g64, m64, v64;
  for (size_t i = 0; i < sizes.size(); ++i) {
    const int64_t n = sizes[i];
    auto make = [&](at::ScalarType t) { return adamw_input(i, n, t); };
    p.push_back(make(at::kFloat));
    g16.push_back(make(at::kBFloat16));
    m.push_back(make(at::kFloat).abs_());
    v.push_back(make(at::kFloat).abs_());
    p2.push_back(p.back().clone());
    g32.push_back(g16.back().to(at::kFloat));
    m2.push_back(m.back().clone());
    v2.push_back(v.back().clone());
    for (auto [src, dst] : {std::pair{&p, &p64}, {&m, &m64}, {&v, &v64}}) dst->push_back(src->back().cpu().to(at::kDouble));
    g64.push_back(g16.back().cpu().to(at::kDouble));
  }
  fused::AdamWHyper h;
  h.lr = 1e-2, h.step = 3, h.grad_scale = 0.5;
  const std::vector<double> wd = {0.1, 0.0, 0.1};
  fused::adamw(p, g16, m, v, wd, h);
  fused::adamw(p2, g32, m2, v2, wd, h);
  fused::reference::adamw(p64, g64, m64, v64, wd, h);
  for (size_t i = 0; i < sizes.size(); ++i) {
    SCOPED_TRACE("tensor " + std::to_string(i));
    EXPECT_TRUE(at::equal(p[i], p2[i]));
    EXPECT_TRUE(at::equal(m[i], m2[i]));
    EXPECT_TRUE(at::equal(v[i], v2[i]));
    EXPECT_CLOSE(p[i], p64[i], 1e-5);
    EXPECT_CLOSE(m[i], m64[i], 1e-5);
    EXPECT_CLOSE(v[i], v64[i], 1e-5);
  }
}

// bf16 moments (exp_avg_dtype / exp_avg_sq_dtype = bf16): the vector path (aligned clones) and
// the element-wise path (tensor 2 at an odd offset) give the same bits, their random bits being
// the element's index's; the CPU reference rounds the same way except where float32 arithmetic
// differs in the last bit right at a rounding threshold.
TEST(FusedKernelsGpu, AdamWBf16MomentsGiveTheSameBitsOnEveryPath) {
  SKIP_WITHOUT_GPU();
  at::manual_seed(19);
  const std::vector<int64_t> sizes = {16385, 3, 100001};
  std::vector<at::Tensor> p, g, m, v, p2, g2, m2, v2, pc, gc, mc, vc;
  for (size_t i = 0; i < sizes.size(); ++i) {
    const int64_t n = sizes[i];
    auto make = [&](at::ScalarType t) { return adamw_input(i, n, t); };
    p.push_back(make(at::kFloat));
    g.push_back(make(at::kFloat));
    m.push_back(make(at::kBFloat16).mul_(0.1));
    v.push_back(make(at::kBFloat16).abs_().mul_(0.01));
    for (auto [src, dst] : {std::pair{&p, &p2}, {&g, &g2}, {&m, &m2}, {&v, &v2}}) dst->push_back(src->back().clone());
    for (auto [src, dst] : {std::pair{&p, &pc}, {&g, &gc}, {&m, &mc}, {&v, &vc}}) dst->push_back(src->back().cpu());
  }
  fused::AdamWHyper h;
  h.lr = 1e-2, h.step = 5, h.grad_scale = 0.5;
  const std::vector<double> wd = {0.1, 0.0, 0.1};
  fused::adamw(p, g, m, v, wd, h);
  fused::adamw(p2, g2, m2, v2, wd, h);
  fused::reference::adamw(pc, gc, mc, vc, wd, h);
  for (size_t i = 0; i < sizes.size(); ++i) {
    SCOPED_TRACE("tensor " + std::to_string(i));
    EXPECT_TRUE(at::equal(p[i], p2[i]));
    EXPECT_TRUE(at::equal(m[i], m2[i]));
    EXPECT_TRUE(at::equal(v[i], v2[i]));
    EXPECT_EQ(m[i].scalar_type(), at::kBFloat16);
    EXPECT_LE((p[i].cpu() - pc[i]).abs().max().item<double>(), 1e-5);
    for (auto [gpu, cpu] : {std::pair{&m, &mc}, {&v, &vc}})
      EXPECT_GE((*gpu)[i].cpu().eq((*cpu)[i]).to(at::kDouble).mean().item<double>(), 0.999);
  }
}

// Megatron's fp8 / fp16 moments (scaled per tensor) on the GPU with bf16 params + int16
// remainders, the bench recipe's layout: three steps of the kernel's two passes against the CPU's
// path through sdk/scaled_state.h (widen, the reference update, store scaled). Tensor 2 lies at
// an odd offset (the element-wise path). The kernel takes 1 - beta from float32 betas, the
// reference from doubles (~5e-5 apart for beta2 = 0.999), so the moments agree to within the
// format's rounding and the scales to ~1e-4.
TEST(FusedKernelsGpu, AdamWScaledMomentsWithParamRemainders) {
  SKIP_WITHOUT_GPU();
  namespace sdk = megahost::sdk;
  at::manual_seed(29);
  const std::vector<int64_t> sizes = {16385, 7, 100001};
  std::vector<at::Tensor> p16, rem, g, m, v, sm, sv, pc, gc, mc, vc, smc, svc;
  for (size_t i = 0; i < sizes.size(); ++i) {
    const at::Tensor master = at::randn({sizes[i]}, cuda(at::kFloat));
    p16.push_back(at_offset_if_2(sizes[i], i, cuda(at::kBFloat16)));
    rem.push_back(at_offset_if_2(sizes[i], i, cuda(at::kShort)));
    sdk::split_fp32(master, p16.back(), rem.back());
    g.push_back(at::randn({sizes[i]}, cuda(at::kFloat)));
    m.push_back(at_offset_if_2(sizes[i], i, cuda(at::kByte)).zero_());  // fp8 (E4M3 bits)
    v.push_back(at_offset_if_2(sizes[i], i, cuda(at::kHalf)).zero_());  // fp16
    sm.push_back(sdk::initial_scale(m.back()));
    sv.push_back(sdk::initial_scale(v.back()));
    pc.push_back(master.cpu());
    gc.push_back(g.back().cpu());
    mc.push_back(m.back().cpu());
    vc.push_back(v.back().cpu());
    smc.push_back(sm.back().cpu());
    svc.push_back(sv.back().cpu());
  }
  const std::vector<double> wd = {0.1, 0.0, 0.1};
  fused::AdamWHyper h;
  h.lr = 1e-2;
  for (int64_t step = 1; step <= 3; ++step) {
    h.step = step;
    for (size_t i = 0; i < sizes.size(); ++i) g[i].normal_(), gc[i].copy_(g[i]);
    fused::adamw(p16, g, m, v, wd, h, {}, rem, {}, fused::AdamWScales{sm, sv});
    fused::adamw(pc, gc, mc, vc, wd, h, {}, {}, {}, fused::AdamWScales{smc, svc});
  }
  for (size_t i = 0; i < sizes.size(); ++i) {
    SCOPED_TRACE("tensor " + std::to_string(i));
    // The masters: to the reference's 1e-5, but where a moment rounded to the neighbouring E4M3
    // value (rare) that element's updates moved by up to 2^-4 of lr: 3 x 1e-2 x 2^-4 < 2e-3.
    const at::Tensor diff = (sdk::compose_fp32(p16[i], rem[i]).cpu() - pc[i]).abs();
    EXPECT_GE(diff.le(1e-5).to(at::kDouble).mean().item<double>(), 0.999);
    EXPECT_LE(diff.max().item<double>(), 2e-3);
    EXPECT_NEAR(sm[i].item<double>(), smc[i].item<double>(), 2e-4 * smc[i].item<double>());
    EXPECT_NEAR(sv[i].item<double>(), svc[i].item<double>(), 2e-4 * svc[i].item<double>());
    EXPECT_GT(smc[i].item<double>(), 0.0);
    for (const auto& [gpu, cpu, scale, step] :
         {std::tuple{sdk::unscale(m[i], sm[i]).cpu(), sdk::unscale(mc[i], smc[i]), smc[i].item<double>(), 0x1p-3},
          std::tuple{sdk::unscale(v[i], sv[i]).cpu(), sdk::unscale(vc[i], svc[i]), svc[i].item<double>(), 0x1p-10}}) {
      // Each stored moment carries its rounding into the next step, so after 3 steps the two sides
      // may be 3 format steps apart (at the subnormals 2^-9 of the scale; the scales differ by
      // ~1e-4, hence 1.01). Measured: 2 fp16 steps on one element of v.
      const at::Tensor a = cpu.to(at::kDouble), b = gpu.to(at::kDouble);
      const at::Tensor over = (a - b).abs() - ((3 * step + 2e-4) * a.abs() + 3 * 1.01 * scale * 0x1p-9);
      const int64_t worst = over.argmax().item<int64_t>();
      EXPECT_LE(over[worst].item<double>(), 0.0) << "element " << worst << ": " << a[worst].item<double>() << " vs "
                                                 << b[worst].item<double>() << ", scale " << scale;
    }
  }
}

// Megatron's store_param_remainders on the GPU: the kernel reads each fp32 master from the bf16
// parameter and its int16 remainder and writes both back. (1) With lr = 0 the update is the
// identity: the kernel's split of every value (ties, carries, subnormals, infinities) is the
// torch-op encoding bit for bit. (2) Over three real steps the composed masters follow the
// float64 reference as the fp32 kernel does, and stay a valid encoding. Tensor 2 lies at an odd
// offset (the kernel's element-wise path).
TEST(FusedKernelsGpu, AdamWWithParamRemainders) {
  SKIP_WITHOUT_GPU();
  namespace sdk = megahost::sdk;
  at::manual_seed(17);
  const std::vector<int64_t> sizes = {16385, 7, 100001};
  std::vector<at::Tensor> master, p16, rem, g, m, v, p64, g64, m64, v64;
  for (size_t i = 0; i < sizes.size(); ++i) {
    at::Tensor bits = at::randint(-(int64_t(1) << 31), int64_t(1) << 31, {sizes[i]}, cuda(at::kLong)).to(at::kInt);
    if (i == 0) {  // exact ties, both parities, and the edges of the range
      const std::vector<int64_t> edges = {0x3F808000, 0x3F818000, -0x407F8000 /* 0xBF808000 */, 0x7F7F8000, 0x7F800000,
                                          0x00008000, 0x7F7FFFFF, -0x00800000 /* 0xFF800000 */};
      for (size_t k = 0; k < edges.size(); ++k) bits[int64_t(k)] = static_cast<int32_t>(edges[k]);
    }
    at::Tensor x = bits.view(at::kFloat);
    x = at::where(x.isnan(), at::zeros_like(x), x);
    master.push_back(x);
    p16.push_back(at_offset_if_2(sizes[i], i, cuda(at::kBFloat16)));
    rem.push_back(at_offset_if_2(sizes[i], i, cuda(at::kShort)));
    sdk::split_fp32(x, p16.back(), rem.back());
    g.push_back(at::randn({sizes[i]}, cuda(at::kFloat)));
    m.push_back(at::zeros({sizes[i]}, cuda(at::kFloat)));
    v.push_back(at::zeros({sizes[i]}, cuda(at::kFloat)));
  }
  const std::vector<double> no_decay(sizes.size(), 0.0);
  fused::AdamWHyper h;
  h.lr = 0.0;
  fused::adamw(p16, g, m, v, no_decay, h, {}, rem);
  for (size_t i = 0; i < sizes.size(); ++i) {
    SCOPED_TRACE("identity, tensor " + std::to_string(i));
    EXPECT_TRUE(at::equal(sdk::compose_fp32(p16[i], rem[i]).view(at::kInt), master[i].view(at::kInt)));
  }

  // Real steps from ordinary weights.
  for (size_t i = 0; i < sizes.size(); ++i) {
    master[i] = at::randn({sizes[i]}, cuda(at::kFloat));
    sdk::split_fp32(master[i], p16[i], rem[i]);
    m[i].zero_();
    v[i].zero_();
    for (auto [src, dst] : {std::pair{&master, &p64}, {&g, &g64}, {&m, &m64}, {&v, &v64}})
      dst->push_back((*src)[i].cpu().to(at::kDouble));
  }
  const std::vector<double> wd = {0.1, 0.0, 0.1};
  h.lr = 1e-2, h.beta1 = 0.9, h.beta2 = 0.95, h.eps = 1e-8;
  for (int64_t step = 1; step <= 3; ++step) {
    h.step = step;
    h.grad_scale = 0.5;
    fused::adamw(p16, g, m, v, wd, h, {}, rem);
    fused::reference::adamw(p64, g64, m64, v64, wd, h);
  }
  for (size_t i = 0; i < sizes.size(); ++i) {
    SCOPED_TRACE("three steps, tensor " + std::to_string(i));
    const at::Tensor composed = sdk::compose_fp32(p16[i], rem[i]);
    EXPECT_CLOSE(composed, p64[i], 1e-5);
    EXPECT_CLOSE(m[i], m64[i], 1e-5);
    EXPECT_CLOSE(v[i], v64[i], 1e-5);
    at::Tensor hi = at::empty_like(p16[i]), lo = at::empty_like(rem[i]);
    sdk::split_fp32(composed, hi, lo);
    EXPECT_TRUE(at::equal(hi.view(at::kShort), p16[i].contiguous().view(at::kShort)));
    EXPECT_TRUE(at::equal(lo, rem[i].contiguous()));
  }
}
