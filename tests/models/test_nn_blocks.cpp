// SDK blocks (linear, embedding, norms, rotary, MLP, transformer layer) against plain libtorch math.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>

#include <vector>

#include "megahost/sdk/error.h"
#include "megahost/sdk/nn/embedding.h"
#include "megahost/sdk/nn/linear.h"
#include "megahost/sdk/nn/mlp.h"
#include "megahost/sdk/nn/norm.h"
#include "megahost/sdk/nn/rotary.h"
#include "megahost/sdk/nn/transformer.h"
#include "reference_math.h"

namespace nn = megahost::sdk::nn;
using mhtest::max_abs_diff;

namespace {

nn::ParamRegistry make_registry(uint64_t seed = 7) { return nn::ParamRegistry(at::kCPU, at::kFloat, seed); }

at::Tensor randn(at::IntArrayRef shape, uint64_t seed) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  return at::empty(shape).normal_(0.0, 1.0, gen);
}

nn::TransformerConfig small_config() {
  nn::TransformerConfig c;
  c.num_layers = 2;
  c.hidden_size = 16;
  c.num_attention_heads = 4;
  c.num_query_groups = 4;
  c.kv_channels = 4;
  c.ffn_hidden_size = 24;
  c.hidden_dropout = 0.0;
  c.attention_dropout = 0.0;
  return c;
}

}  // namespace

TEST(NnLinear, ColumnAndRowAreXWtPlusBWithTheirParallelDims) {
  nn::ParamRegistry reg(at::kCPU, at::kFloat, 1);
  nn::ColumnParallelLinear col(reg, "a.col", 8, 6, true, nn::Init::normal(0.5));
  nn::RowParallelLinear row(reg, "a.row", 6, 8, true, nn::Init::normal(0.5));
  mhtest::randomize(reg, 3);
  const at::Tensor x = randn({5, 2, 8}, 11);
  const at::Tensor y = col.forward(x);  // [5, 2, 6]
  EXPECT_LT(max_abs_diff(y, at::matmul(x, col.weight.t()) + col.bias), 1e-5);
  EXPECT_LT(max_abs_diff(row.forward(y), at::matmul(y, row.weight.t()) + row.bias), 1e-5);

  ASSERT_EQ(reg.params().size(), 4u);
  EXPECT_EQ(reg.find("a.col.weight")->tensor_parallel_dim, 0);
  EXPECT_EQ(reg.find("a.col.bias")->tensor_parallel_dim, 0);
  EXPECT_EQ(reg.find("a.row.weight")->tensor_parallel_dim, 1);
  EXPECT_EQ(reg.find("a.row.bias")->tensor_parallel_dim, -1);
  EXPECT_EQ(reg.find("a.col.weight")->flags, 0u);
  EXPECT_EQ(reg.find("a.col.bias")->flags, MH_PARAM_NO_WEIGHT_DECAY);
  EXPECT_EQ(reg.find("a.row.bias")->flags, MH_PARAM_NO_WEIGHT_DECAY);
  EXPECT_EQ(reg.find("a.col.weight")->data.sizes(), (at::IntArrayRef{6, 8}));
  EXPECT_EQ(reg.find("a.row.weight")->data.sizes(), (at::IntArrayRef{8, 6}));
}

TEST(NnLinear, NoBiasRegistersOnlyTheWeight) {
  auto reg = make_registry();
  nn::ColumnParallelLinear col(reg, "x", 4, 4, false, nn::Init::normal(0.02));
  EXPECT_FALSE(col.bias.defined());
  EXPECT_EQ(reg.params().size(), 1u);
  const at::Tensor x = randn({3, 4}, 2);
  EXPECT_LT(max_abs_diff(col.forward(x), at::matmul(x, col.weight.t())), 1e-6);
}

TEST(NnEmbedding, LooksUpRowsAndRecordsVocabParallelDim) {
  auto reg = make_registry();
  nn::VocabParallelEmbedding words(reg, "embedding.word_embeddings", 10, 4, nn::Init::normal(0.02));
  nn::Embedding pos(reg, "embedding.position_embeddings", 6, 4, nn::Init::normal(0.02));
  const at::Tensor ids = at::tensor({3, 0, 9, 3}, at::kLong).view({2, 2});
  const at::Tensor out = words.forward(ids);  // [2, 2, 4]
  EXPECT_TRUE(at::equal(out[0][0], words.weight[3]));
  EXPECT_TRUE(at::equal(out[1][0], words.weight[9]));
  EXPECT_TRUE(at::equal(pos.forward(ids.clamp_max(5))[0][1], pos.weight[0]));
  EXPECT_EQ(reg.find("embedding.word_embeddings.weight")->tensor_parallel_dim, 0);
  EXPECT_EQ(reg.find("embedding.position_embeddings.weight")->tensor_parallel_dim, -1);
  EXPECT_EQ(reg.find("embedding.word_embeddings.weight")->flags, 0u);  // Megatron decays embeddings
}

TEST(NnNorm, LayerNormMatchesExplicitFormula) {
  auto reg = make_registry();
  nn::LayerNorm ln(reg, "ln", 12, 1e-5);
  EXPECT_TRUE(at::equal(ln.weight, at::ones({12})));
  EXPECT_TRUE(at::equal(ln.bias, at::zeros({12})));
  mhtest::randomize(reg, 5);
  const at::Tensor x = randn({3, 2, 12}, 9) * 3 + 1;
  EXPECT_LT(max_abs_diff(ln.forward(x), mhtest::ref_layer_norm(x, ln.weight, ln.bias, 1e-5)), 1e-5);
  EXPECT_EQ(reg.find("ln.weight")->flags, MH_PARAM_NO_WEIGHT_DECAY);
  EXPECT_EQ(reg.find("ln.bias")->flags, MH_PARAM_NO_WEIGHT_DECAY);
}

TEST(NnNorm, RMSNormMatchesExplicitFormulaAndHasNoBias) {
  auto reg = make_registry();
  nn::RMSNorm rms(reg, "rms", 12, 1e-6);
  ASSERT_EQ(reg.params().size(), 1u);
  mhtest::randomize(reg, 5);
  const at::Tensor x = randn({3, 2, 12}, 9) * 3 + 1;
  EXPECT_LT(max_abs_diff(rms.forward(x), mhtest::ref_rms_norm(x, rms.weight, 1e-6)), 1e-5);
  // gradients too: the block and the formula are the same function
  const at::Tensor xa = x.clone().requires_grad_(), xb = x.clone().requires_grad_();
  (rms.forward(xa) * x).sum().backward();
  (mhtest::ref_rms_norm(xb, rms.weight.detach(), 1e-6) * x).sum().backward();
  EXPECT_LT(max_abs_diff(xa.grad(), xb.grad()), 1e-4);
}

TEST(NnNorm, NormPicksTheKindByName) {
  nn::NormKind kind;
  ASSERT_TRUE(nn::parse_norm_kind("RMSNorm", &kind));
  EXPECT_EQ(kind, nn::NormKind::RMSNorm);
  ASSERT_TRUE(nn::parse_norm_kind("LayerNorm", &kind));
  EXPECT_EQ(kind, nn::NormKind::LayerNorm);
  EXPECT_FALSE(nn::parse_norm_kind("layernorm", &kind));
  auto reg = make_registry();
  nn::Norm a(reg, "a", 8, nn::NormKind::RMSNorm, 1e-5);
  nn::Norm b(reg, "b", 8, nn::NormKind::LayerNorm, 1e-5);
  EXPECT_NE(reg.find("a.weight"), nullptr);
  EXPECT_EQ(reg.find("a.bias"), nullptr);
  EXPECT_NE(reg.find("b.bias"), nullptr);
}

TEST(NnRotary, MatchesPairwiseRotationWithHalvesConvention) {
  const int64_t s = 7, b = 2, n = 3, d = 8;
  const at::Tensor t = randn({s, b, n, d}, 21);
  nn::RotaryEmbedding rope(d, 1.0, 10000.0);
  const at::Tensor freqs = rope.forward(s, at::kCPU);
  EXPECT_EQ(freqs.sizes(), (at::IntArrayRef{s, 1, 1, d}));
  EXPECT_LT(max_abs_diff(nn::apply_rotary_pos_emb(t, freqs), mhtest::ref_rotary(t, d, 10000.0)), 1e-5);
}

TEST(NnRotary, PartialRotaryLeavesTheTailAndHonoursTheBase) {
  const int64_t s = 5, d = 8;
  const at::Tensor t = randn({s, 1, 2, d}, 22);
  nn::RotaryEmbedding rope(d, 0.5, 500.0);  // rotates the first 4 dims
  EXPECT_EQ(rope.dim(), 4);
  const at::Tensor out = nn::apply_rotary_pos_emb(t, rope.forward(s, at::kCPU));
  EXPECT_TRUE(at::equal(out.narrow(-1, 4, 4), t.narrow(-1, 4, 4)));
  EXPECT_LT(max_abs_diff(out, mhtest::ref_rotary(t, 4, 500.0)), 1e-5);
  EXPECT_TRUE(at::equal(out[0], t[0]));  // position 0 does not rotate
}

// Llama 3.1's frequency scaling against its definition, frequency by frequency in double: a
// head of 128 at base 500000 has all three bands (kept, blended, divided by the factor).
TEST(NnRotary, Llama3ScalingKeepsBlendsAndSlowsTheFrequencies) {
  const int64_t d = 128, s = 9;
  const double base = 500000.0, factor = 8.0;
  nn::RotaryEmbedding plain(d, 1.0, base), scaled(d, 1.0, base, nullptr, nn::RopeScaling{factor});
  const at::Tensor pos = at::arange(s, at::kLong);
  const at::Tensor a = plain.for_positions(pos), b = scaled.for_positions(pos);  // [s, 1, 1, d]
  int kept = 0, blended = 0, slowed = 0;
  for (int64_t i = 0; i < d / 2; ++i) {
    const double f = 1.0 / std::pow(base, static_cast<double>(2 * i) / d), wavelen = 2 * M_PI / f;
    double want = f;
    if (wavelen > 8192.0) {
      want = f / factor, ++slowed;
    } else if (wavelen >= 2048.0) {
      const double w = (8192.0 / wavelen - 1.0) / 3.0;
      want = (1 - w) * f / factor + w * f, ++blended;
    } else {
      ++kept;
    }
    const double got = b[s - 1][0][0][i].item<double>() / (s - 1);  // angle at the last position
    EXPECT_NEAR(got, want, 2e-6 * want) << "frequency " << i;  // float32 against double
    EXPECT_DOUBLE_EQ(b[s - 1][0][0][i + d / 2].item<double>(), b[s - 1][0][0][i].item<double>());  // both halves
  }
  EXPECT_GT(kept, 0);
  EXPECT_GT(blended, 0);
  EXPECT_GT(slowed, 0);
  EXPECT_TRUE(at::equal(a.narrow(-1, 0, 8), b.narrow(-1, 0, 8)));  // the fastest frequencies are kept
}

// Linear position interpolation: position p at factor 4 turns as p / 4 does without it.
TEST(NnRotary, SeqLenInterpolationDividesThePositions) {
  nn::RotaryEmbedding plain(16, 1.0, 10000.0), stretched(16, 1.0, 10000.0, nullptr, std::nullopt, 4.0);
  const at::Tensor a = plain.for_positions(at::arange(4, at::kLong));
  const at::Tensor b = stretched.for_positions(at::arange(0, 16, 4, at::kLong));
  EXPECT_TRUE(at::equal(a, b));
  EXPECT_THROW(nn::RotaryEmbedding(16, 1.0, 10000.0, nullptr, std::nullopt, 0.0), megahost::sdk::Error);
}

TEST(NnRotary, RejectsAnOddRotaryDim) {
  EXPECT_THROW(nn::RotaryEmbedding(6, 0.5, 10000.0), megahost::sdk::Error);  // 3 dims
}

TEST(NnMlp, SwiGLUIsSiluOfTheFirstHalfTimesTheSecond) {
  const at::Tensor x = randn({4, 10}, 3);
  const at::Tensor expected = mhtest::ref_silu(x.narrow(-1, 0, 5)) * x.narrow(-1, 5, 5);
  EXPECT_LT(max_abs_diff(nn::swiglu(x), expected), 1e-6);
}

TEST(NnMlp, SwiGLUMlpMatchesExplicitMath) {
  auto cfg = small_config();
  cfg.activation = nn::Activation::SwiGLU;
  auto reg = make_registry();
  nn::MLP mlp(reg, "mlp", cfg);
  EXPECT_EQ(mlp.linear_fc1.weight.sizes(), (at::IntArrayRef{2 * cfg.ffn_hidden_size, cfg.hidden_size}));
  EXPECT_EQ(mlp.linear_fc2.weight.sizes(), (at::IntArrayRef{cfg.hidden_size, cfg.ffn_hidden_size}));
  mhtest::randomize(reg, 4);
  const at::Tensor x = randn({3, 2, cfg.hidden_size}, 8);
  const at::Tensor h = at::matmul(x, mlp.linear_fc1.weight.t()) + mlp.linear_fc1.bias;
  const int64_t f = cfg.ffn_hidden_size;
  const at::Tensor act = mhtest::ref_silu(h.narrow(-1, 0, f)) * h.narrow(-1, f, f);
  const at::Tensor expected = at::matmul(act, mlp.linear_fc2.weight.t()) + mlp.linear_fc2.bias;
  EXPECT_LT(max_abs_diff(mlp.forward(x), expected), 1e-4);
}

TEST(NnMlp, GeLUMlpMatchesExplicitMath) {
  auto cfg = small_config();
  auto reg = make_registry();
  nn::MLP mlp(reg, "mlp", cfg);
  EXPECT_EQ(mlp.linear_fc1.weight.sizes(), (at::IntArrayRef{cfg.ffn_hidden_size, cfg.hidden_size}));
  mhtest::randomize(reg, 4);
  const at::Tensor x = randn({3, 2, cfg.hidden_size}, 8);
  const at::Tensor h = at::matmul(x, mlp.linear_fc1.weight.t()) + mlp.linear_fc1.bias;
  const at::Tensor expected = at::matmul(mhtest::ref_gelu(h), mlp.linear_fc2.weight.t()) + mlp.linear_fc2.bias;
  EXPECT_LT(max_abs_diff(mlp.forward(x), expected), 1e-4);
}

namespace {

// One pre-norm layer written out by hand from the registry's tensors.
at::Tensor ref_layer(const nn::ParamRegistry& reg, const std::string& p, const nn::TransformerConfig& c,
                     const at::Tensor& x, int64_t rot) {
  auto t = [&](const std::string& n) { return reg.find(p + "." + n)->data; };
  auto opt = [&](const std::string& n) { return reg.find(p + "." + n) ? reg.find(p + "." + n)->data : at::Tensor(); };
  auto norm = [&](const std::string& n, const at::Tensor& v) {
    return c.normalization == nn::NormKind::RMSNorm ? mhtest::ref_rms_norm(v, t(n + ".weight"), c.norm_epsilon)
                                                     : mhtest::ref_layer_norm(v, t(n + ".weight"), t(n + ".bias"),
                                                                              c.norm_epsilon);
  };
  const at::Tensor attn = mhtest::ref_self_attention(
      norm("input_layernorm", x), t("self_attention.linear_qkv.weight"), opt("self_attention.linear_qkv.bias"),
      t("self_attention.linear_proj.weight"), opt("self_attention.linear_proj.bias"), c.num_attention_heads,
      c.num_query_groups, c.kv_channels, rot);
  const at::Tensor h = x + attn;
  at::Tensor fc1 = at::matmul(norm("pre_mlp_layernorm", h), t("mlp.linear_fc1.weight").t());
  if (opt("mlp.linear_fc1.bias").defined()) fc1 = fc1 + opt("mlp.linear_fc1.bias");
  const int64_t f = c.ffn_hidden_size;
  const at::Tensor act = c.activation == nn::Activation::SwiGLU
                             ? mhtest::ref_silu(fc1.narrow(-1, 0, f)) * fc1.narrow(-1, f, f)
                             : mhtest::ref_gelu(fc1);
  at::Tensor fc2 = at::matmul(act, t("mlp.linear_fc2.weight").t());
  if (opt("mlp.linear_fc2.bias").defined()) fc2 = fc2 + opt("mlp.linear_fc2.bias");
  return h + fc2;
}

}  // namespace

TEST(NnTransformer, GptStyleLayerMatchesHandWrittenPreNormLayer) {
  const auto cfg = small_config();  // LayerNorm, GeLU, biases
  auto reg = make_registry();
  nn::TransformerLayer layer(reg, "decoder.layers.0", cfg);
  mhtest::randomize(reg, 12);
  const at::Tensor x = randn({6, 2, cfg.hidden_size}, 13);
  const at::Tensor got = layer.forward(x, at::Tensor(), /*training=*/false);
  EXPECT_LT(max_abs_diff(got, ref_layer(reg, "decoder.layers.0", cfg, x, 0)), 1e-4);
}

TEST(NnTransformer, LlamaStyleLayerMatchesHandWrittenPreNormLayer) {
  auto cfg = small_config();
  cfg.normalization = nn::NormKind::RMSNorm;
  cfg.activation = nn::Activation::SwiGLU;
  cfg.num_query_groups = 2;
  cfg.add_bias_linear = false;
  auto reg = make_registry();
  nn::TransformerLayer layer(reg, "decoder.layers.3", cfg);
  EXPECT_EQ(reg.find("decoder.layers.3.self_attention.linear_qkv.bias"), nullptr);
  EXPECT_EQ(reg.find("decoder.layers.3.input_layernorm.bias"), nullptr);
  mhtest::randomize(reg, 12);
  const at::Tensor x = randn({6, 2, cfg.hidden_size}, 13);
  nn::RotaryEmbedding rope(cfg.kv_channels, 1.0, 10000.0);
  const at::Tensor got = layer.forward(x, rope.forward(6, at::kCPU), /*training=*/false);
  EXPECT_LT(max_abs_diff(got, ref_layer(reg, "decoder.layers.3", cfg, x, cfg.kv_channels)), 1e-4);
}

TEST(NnTransformer, BlockNamesLayersGloballyAndEndsWithFinalNorm) {
  const auto cfg = small_config();
  auto reg = make_registry();
  nn::TransformerBlock block(reg, "decoder", cfg, /*first_layer=*/2, /*num_local_layers=*/2, true);
  EXPECT_NE(reg.find("decoder.layers.2.input_layernorm.weight"), nullptr);
  EXPECT_NE(reg.find("decoder.layers.3.mlp.linear_fc2.weight"), nullptr);
  EXPECT_EQ(reg.find("decoder.layers.0.input_layernorm.weight"), nullptr);
  EXPECT_EQ(reg.params().back().name, "decoder.final_layernorm.bias");
  mhtest::randomize(reg, 2);
  const at::Tensor x = randn({4, 1, cfg.hidden_size}, 3);
  at::Tensor expected = ref_layer(reg, "decoder.layers.3", cfg, ref_layer(reg, "decoder.layers.2", cfg, x, 0), 0);
  expected = mhtest::ref_layer_norm(expected, reg.find("decoder.final_layernorm.weight")->data,
                                    reg.find("decoder.final_layernorm.bias")->data, cfg.norm_epsilon);
  EXPECT_LT(max_abs_diff(block.forward(x, at::Tensor(), false), expected), 1e-4);
}

TEST(NnTransformer, HiddenDropoutAppliesOnlyInTrainingAndFollowsTheDefaultGenerator) {
  auto cfg = small_config();
  cfg.hidden_dropout = 0.5;
  auto reg = make_registry();
  nn::TransformerLayer layer(reg, "l", cfg);
  mhtest::randomize(reg, 1);
  const at::Tensor x = randn({5, 2, cfg.hidden_size}, 4);
  at::NoGradGuard no_grad;
  EXPECT_TRUE(at::equal(layer.forward(x, {}, false), layer.forward(x, {}, false)));
  at::manual_seed(77);
  const at::Tensor a = layer.forward(x, {}, true);
  at::manual_seed(77);
  const at::Tensor b = layer.forward(x, {}, true);
  EXPECT_TRUE(at::equal(a, b));
  EXPECT_GT(max_abs_diff(a, layer.forward(x, {}, false)), 1e-3);
}

// A stream whose last bias was added by its product (DeferredResidual::added_bias, the residual
// adds inside the products): materializing it leaves the values as they are and gives that bias
// its gradient, the column sums of the stream's; the norm's passthrough does the same.
TEST(NnTransformer, MaterializingAStreamWithAnAddedBiasGivesTheBiasItsGradient) {
  const at::Tensor r = at::randn({4, 3, 8}, at::kDouble).requires_grad_(true);
  const at::Tensor b = at::randn({8}, at::kDouble).requires_grad_(true);
  const at::Tensor seed = at::randn({4, 3, 8}, at::kDouble);
  nn::DeferredResidual d;
  d.residual = r;
  d.added_bias = b;
  const at::Tensor out = d.materialize();
  EXPECT_TRUE(at::equal(out, r));
  (out * seed).sum().backward();
  EXPECT_TRUE(at::allclose(b.grad(), seed.sum(at::IntArrayRef{0, 1})));
  EXPECT_TRUE(at::allclose(r.grad(), seed));

  nn::ParamRegistry reg(at::kCPU, at::kDouble, 7);
  nn::Norm norm(reg, "ln", 8, nn::NormKind::LayerNorm, 1e-5);
  const at::Tensor b2 = at::randn({8}, at::kDouble).requires_grad_(true);
  const at::Tensor x = at::randn({4, 3, 8}, at::kDouble).requires_grad_(true);
  const auto [y, stream] = norm.forward_passthrough(x, b2);
  EXPECT_TRUE(at::equal(stream, x));
  EXPECT_TRUE(at::allclose(y, norm.forward(x)));
  (stream * seed).sum().backward();
  EXPECT_TRUE(at::allclose(b2.grad(), seed.sum(at::IntArrayRef{0, 1})));
}

// attn_mask_type = Padding (BERT's and T5's encoders): every real token sees every real token.
// A sample's real positions come out as they do for that sample alone without its padding, and
// the first position sees the last real one (no causal mask; the causal layer does not).
TEST(NnTransformer, PaddingMaskLayerIsBidirectionalAndIgnoresPaddedKeys) {
  auto cfg = small_config();
  cfg.attn_mask_type = nn::AttnMaskType::Padding;
  auto reg = make_registry();
  nn::TransformerLayer layer(reg, "encoder.layers.0", cfg);
  mhtest::randomize(reg, 12);
  at::NoGradGuard no_grad;
  const at::Tensor x = randn({6, 2, cfg.hidden_size}, 13);  // [s, b, h]
  at::Tensor keep = at::ones({2, 6}, at::kBool);
  keep.index_put_({1, at::indexing::Slice(4, at::indexing::None)}, false);  // sample 1: 4 real tokens
  const at::Tensor out = layer.forward(x, at::Tensor(), /*training=*/false, keep);
  const at::Tensor alone = layer.forward(x.narrow(0, 0, 4).narrow(1, 1, 1).contiguous(), at::Tensor(), false);
  EXPECT_LT(max_abs_diff(out.narrow(0, 0, 4).narrow(1, 1, 1), alone), 1e-5);

  at::Tensor later = x.clone();
  later[5][0].add_(randn({16}, 14));  // sample 0's last (real) token (not a constant: the norm removes it)
  EXPECT_GT(max_abs_diff(layer.forward(later, at::Tensor(), false, keep)[0], out[0]), 1e-4);
  auto causal_cfg = small_config();
  auto causal_reg = make_registry();
  nn::TransformerLayer causal(causal_reg, "decoder.layers.0", causal_cfg);
  mhtest::randomize(causal_reg, 12);
  EXPECT_EQ(max_abs_diff(causal.forward(later, at::Tensor(), false)[0], causal.forward(x, at::Tensor(), false)[0]),
            0.0);
}

// The key padding mask rides through full activation recompute's checkpoints: the same output and
// gradients as without recompute.
TEST(NnTransformer, FullRecomputeWithAPaddingMaskEqualsNoRecompute) {
  at::Tensor keep = at::ones({2, 5}, at::kBool);
  keep.index_put_({0, 4}, false);
  const at::Tensor x = randn({5, 2, 16}, 21);
  std::vector<at::Tensor> outs, grads;
  for (bool recompute : {false, true}) {
    auto cfg = small_config();
    cfg.attn_mask_type = nn::AttnMaskType::Padding;
    if (recompute) {
      cfg.recompute_granularity = nn::RecomputeGranularity::Full;
      cfg.recompute_method = nn::RecomputeMethod::Uniform;
      cfg.recompute_num_layers = 1;
    }
    auto reg = make_registry();
    nn::TransformerBlock block(reg, "encoder", cfg, 0, 2, /*with_final_layernorm=*/true);
    mhtest::randomize(reg, 5);
    const at::Tensor out = block.forward(x, at::Tensor(), /*training=*/true, keep);
    out.pow(2).sum().backward();
    outs.push_back(out.detach());
    grads.push_back(reg.find("encoder.layers.0.self_attention.linear_qkv.weight")->grad.clone());
  }
  EXPECT_LT(max_abs_diff(outs[1], outs[0]), 1e-6);
  EXPECT_LT(max_abs_diff(grads[1], grads[0]), 1e-5);
  EXPECT_GT(grads[0].abs().max().item<double>(), 0.0);
}
