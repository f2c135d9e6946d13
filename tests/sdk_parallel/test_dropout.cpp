// Megatron's model-parallel RNG for dropout (megahost/sdk/parallel/random.h), ranks as threads:
// attention dropout and sequence-parallel hidden dropout differ across TP ranks and repeat with
// the seed; replicated hidden dropout is the same on every TP rank; tp = 1 is at::dropout.
//
// Ranks as threads share the process's default generator, so each rank installs its own copy
// (ScopedDefaultGenerator), seeded alike as every process's default is. Comparisons are exact:
// the same ops on the same inputs.
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "common.h"
#include "megahost/sdk/nn/attention.h"
#include "megahost/sdk/nn/transformer.h"
#include "megahost/sdk/parallel/mappings.h"
#include "megahost/sdk/parallel/random.h"
#include "thread_dist.h"

namespace {

using namespace megahost::sdk;
using megahost::sdk::parallel::ParallelContext;
using mhtest::fixed;

constexpr int64_t kSeq = 8, kBatch = 2, kHidden = 16;
constexpr uint64_t kDefaultSeed = 1234;

nn::TransformerConfig dropout_config(double hidden, double attention) {
  nn::TransformerConfig c;
  c.num_layers = 2;
  c.hidden_size = kHidden;
  c.num_attention_heads = 4;
  c.num_query_groups = 2;
  c.kv_channels = 4;
  c.ffn_hidden_size = 24;
  c.hidden_dropout = hidden;
  c.attention_dropout = attention;
  return c;
}

// Runs fn(rank, ctx) on TP2 ranks, each with its default generator seeded kDefaultSeed; returns
// every rank's tensor.
std::vector<at::Tensor> on_tp2(bool sp, const std::function<at::Tensor(int, const ParallelContext&)>& fn) {
  mhtest::ThreadWorld world(2, 1);
  std::vector<at::Tensor> out(2);
  world.run([&](int g) {
    parallel::ScopedDefaultGenerator seeded(at::detail::createCPUGenerator(kDefaultSeed));
    const auto ctx = ParallelContext::from_host(world.host(g), sp ? MH_PARALLEL_SEQUENCE_PARALLEL : 0u);
    out[g] = fn(g, *ctx).detach();
  });
  return out;
}

bool same(const at::Tensor& a, const at::Tensor& b) { return at::equal(a, b); }

TEST(ParallelDropout, TpOneIsAtDropoutOnTheDefaultGenerator) {
  const at::Tensor x = fixed({kSeq, kBatch, kHidden}, 3);
  const ParallelContext single;
  at::manual_seed(5);
  const at::Tensor want = at::dropout(x, 0.3, true);
  const at::Tensor want_next = at::rand({4});
  at::manual_seed(5);
  const at::Tensor got = parallel::hidden_dropout(x, 0.3, true, &single);
  EXPECT_TRUE(same(at::rand({4}), want_next)) << "the default generator is consumed as before";
  EXPECT_TRUE(same(got, want));
  at::manual_seed(5);
  EXPECT_TRUE(same(parallel::tensor_parallel_dropout(x, 0.3, true, parallel::DistGroup()), want));
  at::manual_seed(5);
  EXPECT_TRUE(same(parallel::hidden_dropout(x, 0.3, true, nullptr), want));
}

TEST(ParallelDropout, ExplicitGeneratorDropoutIsAtDropoutOnCpu) {
  // The per-rank path draws as at::dropout does on CPU, so a generator seeded like the default
  // gives the default's mask (and ScopedDefaultGenerator stands in for the process default).
  const at::Tensor x = fixed({kSeq, kBatch, kHidden}, 3);
  at::manual_seed(9);
  const at::Tensor want = at::dropout(x, 0.25, true);
  EXPECT_TRUE(same(parallel::dropout_with(x, 0.25, true, at::detail::createCPUGenerator(9)), want));
  parallel::ScopedDefaultGenerator seeded(at::detail::createCPUGenerator(9));
  EXPECT_TRUE(same(parallel::replicated_dropout(x, 0.25, true), want));
  EXPECT_TRUE(same(parallel::dropout_with(x, 0.25, false, at::detail::createCPUGenerator(9)), x));
}

TEST(ParallelDropout, TensorParallelGeneratorIsSeededFromOneDefaultDrawPlusRankOffset) {
  const std::vector<at::Tensor> draws = on_tp2(false, [](int, const ParallelContext& ctx) {
    return at::rand({8}, parallel::tensor_parallel_generator(at::kCPU, ctx.tp));
  });
  at::Generator base = at::detail::createCPUGenerator(kDefaultSeed);
  const uint64_t drawn = parallel::draw_seed(base);
  for (int r = 0; r < 2; ++r) {
    const at::Tensor want = at::rand({8}, at::detail::createCPUGenerator(drawn + 2718 + r));
    EXPECT_TRUE(same(draws[r], want)) << "tp rank " << r;
  }
}

TEST(ParallelDropout, AttentionTp2MasksDifferAcrossRanksAndRepeatWithTheSeed) {
  // Both ranks attend over the very same q, k, v: only the dropout masks can tell them apart.
  const at::Tensor q = fixed({kSeq, kBatch, 2, 4}, 11), k = fixed({kSeq, kBatch, 1, 4}, 12),
                   v = fixed({kSeq, kBatch, 1, 4}, 13);
  const auto core = [&](int, const ParallelContext& ctx) {
    return nn::causal_dot_product_attention(q, k, v, 0.5, parallel::tensor_parallel_generator(q.device(), ctx.tp));
  };
  const std::vector<at::Tensor> first = on_tp2(false, core), again = on_tp2(false, core);
  EXPECT_FALSE(same(first[0], first[1])) << "tp ranks draw their own attention masks";
  EXPECT_TRUE(same(first[0], again[0]));
  EXPECT_TRUE(same(first[1], again[1]));
  const at::Tensor undropped = nn::causal_dot_product_attention(q, k, v, 0.0);
  EXPECT_FALSE(same(first[0], undropped));

  // SelfAttention at TP2 takes exactly that generator (one default draw before its attention),
  // and repeats with the seed.
  const nn::TransformerConfig cfg = dropout_config(0.0, 0.5);
  const at::Tensor x = fixed({kSeq, kBatch, kHidden}, 14);
  const auto layer = [&](bool reference) {
    return [&, reference](int, const ParallelContext& ctx) {
      nn::TransformerConfig c = cfg;
      c.parallel = std::make_shared<ParallelContext>(ctx);
      nn::ParamRegistry reg(at::kCPU, at::kFloat, 77);
      const nn::SelfAttention attn(reg, "self_attention", c);
      if (!reference) return attn.forward(x, at::Tensor(), /*training=*/true);
      at::Tensor lq, lk, lv;
      attn.query_key_value(x, &lq, &lk, &lv);
      const at::Generator gen = parallel::tensor_parallel_generator(x.device(), ctx.tp);
      return attn.linear_proj.forward(nn::causal_dot_product_attention(lq, lk, lv, 0.5, gen));
    };
  };
  const std::vector<at::Tensor> got = on_tp2(false, layer(false)), want = on_tp2(false, layer(true)),
                                rerun = on_tp2(false, layer(false));
  for (int r = 0; r < 2; ++r) {
    EXPECT_TRUE(same(got[r], want[r])) << "tp rank " << r;
    EXPECT_TRUE(same(got[r], rerun[r])) << "tp rank " << r;
  }
  EXPECT_TRUE(same(got[0], got[1])) << "the row-parallel output is reduced over tp";
}

TEST(ParallelDropout, SequenceParallelHiddenDropoutDiffersAcrossSequenceHalves) {
  const at::Tensor ones = at::ones({kSeq / 2, kBatch, kHidden});
  const auto mask = [&](int, const ParallelContext& ctx) { return parallel::hidden_dropout(ones, 0.5, true, &ctx); };
  const std::vector<at::Tensor> first = on_tp2(true, mask), again = on_tp2(true, mask);
  EXPECT_FALSE(same(first[0], first[1])) << "each sequence half draws its own mask";
  EXPECT_TRUE(same(first[0], again[0]));
  EXPECT_TRUE(same(first[1], again[1]));

  // The layer's two hidden dropouts are these, in order (attention dropout off here).
  const nn::TransformerConfig cfg = dropout_config(0.5, 0.0);
  const at::Tensor x_full = fixed({kSeq, kBatch, kHidden}, 21);
  const auto layer = [&](bool reference) {
    return [&, reference](int g, const ParallelContext& ctx) {
      nn::TransformerConfig c = cfg;
      c.parallel = std::make_shared<ParallelContext>(ctx);
      nn::ParamRegistry reg(at::kCPU, at::kFloat, 77);
      const nn::TransformerLayer l(reg, "decoder.layers.0", c);
      const at::Tensor x = x_full.chunk(2, 0)[g];  // [s/2, b, h]
      if (!reference) return l.forward(x, at::Tensor(), /*training=*/true);
      const at::Tensor attn = l.self_attention.forward(l.input_layernorm.forward(x), at::Tensor(), true);
      const at::Tensor h = x + parallel::hidden_dropout(attn, 0.5, true, &ctx);
      return h + parallel::hidden_dropout(l.mlp.forward(l.pre_mlp_layernorm.forward(h)), 0.5, true, &ctx);
    };
  };
  const std::vector<at::Tensor> got = on_tp2(true, layer(false)), want = on_tp2(true, layer(true));
  for (int r = 0; r < 2; ++r) EXPECT_TRUE(same(got[r], want[r])) << "tp rank " << r;
}

// The fused add + norm's dropout (CUDA) draws from the thread's default generator; under
// sequence parallelism the layer installs the TP rank's generator around it
// (nn::hidden_dropout_generator). A draw inside that scope is hidden_dropout's own mask: it
// differs across the sequence halves and repeats with the seed. Without sequence parallelism
// the scope is empty: the same mask on every rank.
TEST(ParallelDropout, HiddenDropoutGeneratorIsTheTpRanksUnderSequenceParallelism) {
  const at::Tensor ones = at::ones({kSeq / 2, kBatch, kHidden});
  const auto scoped = [&](int, const ParallelContext& ctx) {
    const auto scope = nn::hidden_dropout_generator(0.5, &ctx, ones.device());
    return parallel::replicated_dropout(ones, 0.5, true);  // the thread's default generator
  };
  const auto own = [&](int, const ParallelContext& ctx) { return parallel::hidden_dropout(ones, 0.5, true, &ctx); };
  const std::vector<at::Tensor> got = on_tp2(true, scoped), want = on_tp2(true, own);
  EXPECT_FALSE(same(got[0], got[1])) << "each sequence half draws its own mask";
  for (int r = 0; r < 2; ++r) EXPECT_TRUE(same(got[r], want[r])) << "tp rank " << r;

  const std::vector<at::Tensor> replicated = on_tp2(false, scoped);
  EXPECT_TRUE(same(replicated[0], replicated[1]));
  EXPECT_FALSE(nn::hidden_dropout_generator(0.0, nullptr, ones.device()).has_value());
}

TEST(ParallelDropout, HiddenDropoutWithoutSequenceParallelIsTheSameOnEveryTpRank) {
  const at::Tensor ones = at::ones({kSeq, kBatch, kHidden});
  const std::vector<at::Tensor> masks =
      on_tp2(false, [&](int, const ParallelContext& ctx) { return parallel::hidden_dropout(ones, 0.5, true, &ctx); });
  EXPECT_TRUE(same(masks[0], masks[1]));
  EXPECT_FALSE(same(masks[0], ones));

  // A whole layer with both dropouts: its output is replicated across TP, masks and all.
  const nn::TransformerConfig cfg = dropout_config(0.5, 0.5);
  const at::Tensor x = fixed({kSeq, kBatch, kHidden}, 31);
  const std::vector<at::Tensor> out = on_tp2(false, [&](int, const ParallelContext& ctx) {
    nn::TransformerConfig c = cfg;
    c.parallel = std::make_shared<ParallelContext>(ctx);
    nn::ParamRegistry reg(at::kCPU, at::kFloat, 77);
    return nn::TransformerLayer(reg, "decoder.layers.0", c).forward(x, at::Tensor(), /*training=*/true);
  });
  EXPECT_TRUE(same(out[0], out[1]));
}

}  // namespace
