// fused::head_norm_rotary (qk_layernorm, then the rotary embedding) against float64: its CPU
// reference always, and on a CUDA build with a GPU the one-pass kernel, forward and backward.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "compare.h"
#include "megahost/sdk/nn/fused.h"

namespace fused = megahost::sdk::fused;

namespace {

using fused_test::Case;
using fused_test::cuda;
using fused_test::gpu_cases;
using fused_test::grads_of;
using fused_test::leaf64;

// t [s, b, n, d] (float64): normed over d, then its first rot dims rotated (rot = 0: none).
at::Tensor head_norm_rotary64(const at::Tensor& t, const at::Tensor& w, const at::Tensor& b, bool rms,
                              const at::Tensor& angles) {
  const double eps = 1e-6;
  const at::Tensor normed = rms ? fused_test::rms_norm64(t, w, eps) : fused_test::layer_norm64(t, w, b, eps);
  return angles.defined() ? fused_test::rotary64(normed, angles) : normed;
}

// Angles as RotaryEmbedding makes them, at positions first .. first + s - 1: [s, 1, 1, rot].
at::Tensor angles_at(int64_t first, int64_t s, int64_t rot, const at::TensorOptions& opts) {
  const at::Tensor pos = first + at::arange(s, opts.dtype(at::kFloat));
  const at::Tensor inv = 1.0 / at::pow(10000.0, at::arange(0, rot, 2, pos.options()) / rot);
  const at::Tensor half = at::outer(pos, inv);
  return at::cat({half, half}, -1).view({s, 1, 1, rot});
}

struct Layout {
  int64_t s, b, ng, per_group, hn;
};

// q as the attention reads it: [s, b, ng, np/ng, hn], a view into the fused q/k/v projection's
// [s, b, ng, (np/ng + 2) hn]; k beside it, [s, b, ng, hn]. Checks both through
// head_norm_rotary against float64: the output and the gradients of the projection, weight and bias.
void check_layout(const Layout& l, const at::TensorOptions& opts, double bound, bool rms, int64_t rot) {
  at::manual_seed(21);
  const at::Tensor qkv = at::randn({l.s, l.b, l.ng, (l.per_group + 2) * l.hn}, opts);
  const at::Tensor w0 = 1.0 + 0.2 * at::randn({l.hn}, opts), b0 = 0.1 * at::randn({l.hn}, opts);
  const at::Tensor angles = rot > 0 ? angles_at(2000, l.s, rot, opts) : at::Tensor();
  for (bool is_q : {true, false}) {
    SCOPED_TRACE(is_q ? "q, grouped" : "k");
    at::Tensor base = qkv.detach().clone().requires_grad_(true);
    at::Tensor w = w0.detach().clone().requires_grad_(true), b = b0.detach().clone().requires_grad_(true);
    const at::Tensor t = is_q ? base.narrow(3, 0, l.per_group * l.hn).view({l.s, l.b, l.ng, l.per_group, l.hn})
                              : base.narrow(3, l.per_group * l.hn, l.hn);
    const at::Tensor y = fused::head_norm_rotary(t, w, rms ? at::Tensor() : b, 1e-6, rms, angles);
    const int64_t n = is_q ? l.ng * l.per_group : l.ng;
    ASSERT_EQ(y.sizes(), (at::IntArrayRef{l.s, l.b, n, l.hn}));
    EXPECT_TRUE(y.is_contiguous());

    at::Tensor base64 = leaf64(qkv), w64 = leaf64(w0), b64 = leaf64(b0);
    const at::Tensor t64 = is_q ? base64.narrow(3, 0, l.per_group * l.hn).reshape({l.s, l.b, n, l.hn})
                                : base64.narrow(3, l.per_group * l.hn, l.hn);
    const at::Tensor y64 = head_norm_rotary64(t64, w64, b64, rms, angles.defined() ? angles.cpu() : angles);
    EXPECT_CLOSE(y, y64, bound);
    const at::Tensor seed = at::randn(y.sizes(), at::kDouble);
    std::vector<at::Tensor> in = {base, w}, in64 = {base64, w64};
    if (!rms) in.push_back(b), in64.push_back(b64);
    const auto g = grads_of(y, seed, in), g64 = grads_of(y64, seed, in64);
    EXPECT_CLOSE(g[0], g64[0], bound);  // the projection's gradient (zero outside this part)
    EXPECT_CLOSE(g[1], g64[1], bound);  // weight
    if (!rms) EXPECT_CLOSE(g[2], g64[2], bound);
  }
}

TEST(FusedReference, HeadNormRotaryMatchesFloat64) {
  for (bool rms : {true, false})
    for (int64_t rot : {int64_t{16}, int64_t{8}, int64_t{0}}) {
      SCOPED_TRACE(std::string(rms ? "RMSNorm" : "LayerNorm") + " rot " + std::to_string(rot));
      // 1e-6: the reference norms in float32 (as Megatron's) and takes cos / sin of float32 angles
      check_layout({5, 2, 2, 3, 16}, at::TensorOptions().dtype(at::kDouble), 1e-6, rms, rot);
    }
}

TEST(FusedKernelsGpu, HeadNormRotaryFromTheGroupedLayout) {
  SKIP_WITHOUT_GPU();
  for (const Case& c : gpu_cases())
    for (bool rms : {true, false})
      // hn 128: Llama / Qwen heads (bf16: 16 lanes a row); 64 with half of it rotated
      // (rotary_percent 0.5); 256 (a whole warp a row in bf16); 36: refused, the reference runs.
      for (const auto& [hn, rot] : std::vector<std::pair<int64_t, int64_t>>{{128, 128}, {64, 32}, {256, 256},
                                                                            {128, 0}, {36, 36}}) {
        SCOPED_TRACE(std::string(c10::toString(c.dtype)) + (rms ? " RMSNorm" : " LayerNorm") + " hn " +
                     std::to_string(hn) + " rot " + std::to_string(rot));
        // 37 positions x 3 x 8 heads of q: several rows per group of lanes, and a last partial one.
        check_layout({37, 3, 2, 4, hn}, cuda(c.dtype), c.bound, rms, rot);
      }
}

// A long sequence: one block per position, each with many rows (the benchmark's shape, smaller).
TEST(FusedKernelsGpu, HeadNormRotaryOverALongSequence) {
  SKIP_WITHOUT_GPU();
  check_layout({1024, 2, 4, 4, 128}, cuda(at::kBFloat16), 1e-2, true, 128);
}

}  // namespace
