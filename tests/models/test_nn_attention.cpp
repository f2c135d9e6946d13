// SelfAttention against explicit softmax(Q K^T / sqrt(d) + causal mask) V, per head.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "megahost/sdk/compat.h"
#include "megahost/sdk/nn/attention.h"
#include "megahost/sdk/nn/rotary.h"
#include "reference_math.h"

namespace nn = megahost::sdk::nn;
using mhtest::max_abs_diff;

namespace {

at::Tensor randn(at::IntArrayRef shape, uint64_t seed) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  return at::empty(shape).normal_(0.0, 1.0, gen);
}

nn::TransformerConfig attn_config(int64_t heads, int64_t groups, bool bias) {
  nn::TransformerConfig c;
  c.num_layers = 1;
  c.num_attention_heads = heads;
  c.num_query_groups = groups;
  c.kv_channels = 4;
  c.hidden_size = 12;
  c.add_bias_linear = bias;
  c.attention_dropout = 0.0;
  return c;
}

struct Case {
  int64_t heads, groups;
  bool bias, rope, qk_norm = false;
};

void check_against_reference(const Case& k) {
  auto cfg = attn_config(k.heads, k.groups, k.bias);
  cfg.qk_layernorm = k.qk_norm;
  cfg.normalization = k.qk_norm ? nn::NormKind::RMSNorm : cfg.normalization;
  nn::ParamRegistry reg(at::kCPU, at::kFloat, 3);
  nn::SelfAttention attn(reg, "self_attention", cfg);
  mhtest::randomize(reg, 10 + k.heads + k.groups);
  const int64_t s = 6, b = 3;
  const at::Tensor x = randn({s, b, cfg.hidden_size}, 5);
  const at::Tensor freqs = k.rope ? nn::RotaryEmbedding(cfg.kv_channels, 1.0, 10000.0).forward(s, at::kCPU)
                                  : at::Tensor();
  const auto qkv_bias = reg.find("self_attention.linear_qkv.bias");
  const auto proj_bias = reg.find("self_attention.linear_proj.bias");
  const at::Tensor w_qkv = attn.linear_qkv.weight.detach(), w_proj = attn.linear_proj.weight.detach();

  // forward
  const at::Tensor xa = x.clone().requires_grad_();
  const at::Tensor got = attn.forward(xa, freqs, /*training=*/true);
  const at::Tensor xr = x.clone().requires_grad_();
  const at::Tensor want = mhtest::ref_self_attention(
      xr, w_qkv, qkv_bias ? qkv_bias->data.detach() : at::Tensor(), w_proj,
      proj_bias ? proj_bias->data.detach() : at::Tensor(), k.heads, k.groups, cfg.kv_channels,
      k.rope ? cfg.kv_channels : 0, 10000.0,
      k.qk_norm ? reg.find("self_attention.q_layernorm.weight")->data.detach() : at::Tensor(),
      k.qk_norm ? reg.find("self_attention.k_layernorm.weight")->data.detach() : at::Tensor(), cfg.norm_epsilon);
  EXPECT_EQ(got.sizes(), (at::IntArrayRef{s, b, cfg.hidden_size}));
  EXPECT_LT(max_abs_diff(got, want), 1e-4);

  // backward: same input gradient
  const at::Tensor g = randn({s, b, cfg.hidden_size}, 6);
  (got * g).sum().backward();
  (want * g).sum().backward();
  EXPECT_LT(max_abs_diff(xa.grad(), xr.grad()), 1e-4);

  // without autograd (libtorch 1.13 takes another kernel then): same values
  at::NoGradGuard no_grad;
  EXPECT_LT(max_abs_diff(attn.forward(x, freqs, false), want), 1e-4);
}

}  // namespace

TEST(NnAttention, MultiHeadMatchesExplicitSoftmaxAttention) { check_against_reference({3, 3, true, false}); }
TEST(NnAttention, GroupedQueryMatchesExplicitSoftmaxAttention) { check_against_reference({4, 2, false, false}); }
TEST(NnAttention, MultiQueryMatchesExplicitSoftmaxAttention) { check_against_reference({4, 1, true, false}); }
TEST(NnAttention, RotaryGroupedQueryMatchesExplicitSoftmaxAttention) { check_against_reference({4, 2, false, true}); }
// Qwen3-style: q and k RMS-normed per head (weights [kv_channels]) before the rotation.
TEST(NnAttention, QkLayernormNormsEachHeadBeforeTheRotation) {
  check_against_reference({4, 2, false, true, /*qk_norm=*/true});
  check_against_reference({3, 3, true, false, /*qk_norm=*/true});
}

TEST(NnAttention, QkvLayoutIsGroupedQueriesThenKeyThenValue) {
  const auto cfg = attn_config(4, 2, false);
  nn::ParamRegistry reg(at::kCPU, at::kFloat, 3);
  nn::SelfAttention attn(reg, "sa", cfg);
  // [ng * (np/ng + 2) * hn, h] = [2 * 4 * 4, 12]
  EXPECT_EQ(attn.linear_qkv.weight.sizes(), (at::IntArrayRef{32, 12}));
  EXPECT_EQ(attn.linear_proj.weight.sizes(), (at::IntArrayRef{12, 16}));
  {
    at::NoGradGuard no_grad;  // row r of W_qkv := e_r, so output column r is x[r] for x = I
    attn.linear_qkv.weight.zero_();
    for (int64_t r = 0; r < 12; ++r) attn.linear_qkv.weight[r][r] = 1.0;
    for (int64_t r = 12; r < 32; ++r) attn.linear_qkv.weight[r][r % 12] = 100.0 + r;
  }
  at::Tensor q, k, v;
  attn.query_key_value(at::eye(12).view({12, 1, 12}), &q, &k, &v);
  EXPECT_EQ(q.sizes(), (at::IntArrayRef{12, 1, 4, 4}));
  EXPECT_EQ(k.sizes(), (at::IntArrayRef{12, 1, 2, 4}));
  // group 0 = columns 0..15: q heads 0, 1 (0..7), k (8..11), v (12..15); group 1 = 16..31
  EXPECT_EQ(q[1][0][0][1].item<float>(), 1.0f);          // column 1 = head 0, dim 1
  EXPECT_EQ(q[4][0][1][0].item<float>(), 1.0f);          // column 4 = head 1, dim 0
  EXPECT_EQ(k[8][0][0][0].item<float>(), 1.0f);          // column 8 = key of group 0
  EXPECT_EQ(v[0][0][0][0].item<float>(), 112.0f);        // column 12 = value of group 0 (x = e_0)
  EXPECT_EQ(q[4][0][2][0].item<float>(), 116.0f);  // column 16 = head 2 (group 1), dim 0; 16 % 12 = 4
  EXPECT_EQ(k[0][0][1][0].item<float>(), 124.0f);  // column 24 = key of group 1; 24 % 12 = 0
}

TEST(NnAttention, CompatCausalAttentionMasksTheFuture) {
  // Changing only the last position's key/value must not change earlier outputs.
  const at::Tensor q = randn({1, 2, 5, 4}, 1), k = randn({1, 2, 5, 4}, 2), v = randn({1, 2, 5, 4}, 3);
  const at::Tensor k2 = k.clone(), v2 = v.clone();
  k2.select(2, 4).add_(5.0);
  v2.select(2, 4).add_(5.0);
  const at::Tensor a = megahost::compat::causal_attention(q, k, v, 0.0);
  const at::Tensor b = megahost::compat::causal_attention(q, k2, v2, 0.0);
  EXPECT_LT(max_abs_diff(a.narrow(2, 0, 4), b.narrow(2, 0, 4)), 1e-6);
  EXPECT_GT(max_abs_diff(a.narrow(2, 4, 1), b.narrow(2, 4, 1)), 1e-3);
}

TEST(NnAttention, AttentionDropoutIsReproducibleFromTheDefaultGenerator) {
  auto cfg = attn_config(2, 2, true);
  cfg.attention_dropout = 0.3;
  nn::ParamRegistry reg(at::kCPU, at::kFloat, 3);
  nn::SelfAttention attn(reg, "sa", cfg);
  mhtest::randomize(reg, 4);
  const at::Tensor x = randn({8, 2, cfg.hidden_size}, 5);
  at::manual_seed(5);
  const at::Tensor a = attn.forward(x, {}, true);
  at::manual_seed(5);
  const at::Tensor b = attn.forward(x, {}, true);
  EXPECT_TRUE(at::equal(a, b));
  EXPECT_GT(max_abs_diff(a, attn.forward(x, {}, false)), 1e-4);
}

// padded_dot_product_attention against softmax(Q K^T / sqrt(d) + padding (+ causal) mask) V per
// head, grouped-query (2 heads per key/value group); padded keys get no weight.
TEST(PaddedAttention, MatchesExplicitMaskedSoftmax) {
  const int64_t s = 6, b = 2, heads = 4, groups = 2, hn = 4;
  const at::Tensor q = randn({s, b, heads, hn}, 1), k = randn({s, b, groups, hn}, 2), v = randn({s, b, groups, hn}, 3);
  at::Tensor keep = at::ones({b, s}, at::kBool);
  keep[0][4] = false;  // sample 0: the last two keys are padding
  keep[0][5] = false;
  for (bool causal : {false, true}) {
    const at::Tensor out = nn::padded_dot_product_attention(q, k, v, keep, causal, 0.0);  // [s, b, heads * hn]
    ASSERT_EQ(out.sizes(), at::IntArrayRef({s, b, heads * hn}));
    for (int64_t bi = 0; bi < b; ++bi)
      for (int64_t h = 0; h < heads; ++h) {
        const int64_t g = h / (heads / groups);
        const at::Tensor qh = q.select(1, bi).select(1, h), kh = k.select(1, bi).select(1, g);  // [s, hn]
        const at::Tensor vh = v.select(1, bi).select(1, g);
        at::Tensor scores = at::matmul(qh, kh.t()) / std::sqrt(static_cast<double>(hn));  // [s, s]
        at::Tensor allowed = keep[bi].view({1, s}).expand({s, s}).clone();
        if (causal) allowed = allowed.logical_and(at::ones({s, s}, at::kBool).tril());
        scores = scores.masked_fill(allowed.logical_not(), -std::numeric_limits<float>::infinity());
        const at::Tensor want = at::matmul(at::softmax(scores, -1), vh);  // [s, hn]
        const at::Tensor got = out.select(1, bi).narrow(1, h * hn, hn);
        EXPECT_LT(max_abs_diff(got, want), 1e-5) << "sample " << bi << " head " << h << (causal ? " causal" : "");
      }
  }
}

TEST(AttentionBackend, MegatronNamesAreKnown) {
  for (const char* name : {"auto", "flash", "cudnn", "fused", "efficient", "math", "unfused", "local"})
    EXPECT_TRUE(nn::select_attention_backend(name)) << name;
  EXPECT_FALSE(nn::select_attention_backend("tensorrt"));
  nn::select_attention_backend("auto");  // leave libtorch's defaults for the other tests
}
