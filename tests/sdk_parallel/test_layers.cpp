// The SDK's blocks under tensor (+ sequence) and context parallelism against the same blocks on
// one process: outputs, input grads and every parameter's grad (this rank's slice; SP-flagged
// grads summed over tp and every grad summed over cp, as the host does).
#include <gtest/gtest.h>

#include <functional>
#include <memory>

#include "common.h"
#include "megahost/sdk/nn/attention.h"
#include "megahost/sdk/nn/cross_entropy.h"
#include "megahost/sdk/nn/embedding.h"
#include "megahost/sdk/nn/linear.h"
#include "megahost/sdk/nn/mlp.h"
#include "megahost/sdk/nn/rotary.h"
#include "megahost/sdk/parallel/context_parallel.h"
#include "thread_dist.h"

namespace {

using namespace megahost::sdk;
using megahost::sdk::parallel::ParallelContext;
using mhtest::expect_close;
using mhtest::fixed;

constexpr int64_t kSeq = 8, kBatch = 2, kHidden = 16;
constexpr uint64_t kSeed = 77;

nn::TransformerConfig tiny_config(bool swiglu) {
  nn::TransformerConfig c;
  c.num_layers = 2;
  c.hidden_size = kHidden;
  c.num_attention_heads = 4;
  c.num_query_groups = 2;
  c.kv_channels = 4;
  c.ffn_hidden_size = 24;
  c.activation = swiglu ? nn::Activation::SwiGLU : nn::Activation::GeLU;
  c.add_bias_linear = true;
  c.hidden_dropout = c.attention_dropout = 0.0;
  return c;
}

// A block's forward over [s, b, h] hidden states; seq_len is this rank's (full under SP) s.
using Forward = std::function<at::Tensor(const at::Tensor& x)>;
using Build = std::function<Forward(nn::ParamRegistry&, const nn::TransformerConfig&)>;

// This rank's part of a full [s, b, ...] tensor: cp chunks, then the tp chunk under SP.
at::Tensor local_seq(const at::Tensor& full, const ParallelContext& p) {
  at::Tensor t = parallel::context_parallel_slice(full, 0, p.cp.rank(), p.cp.size());
  return p.sequence_parallel ? t.chunk(p.tp.size(), 0)[p.tp.rank()] : t;
}

void check_block(int tp, int cp, bool sp, bool swiglu, const Build& build) {
  const nn::TransformerConfig cfg = tiny_config(swiglu);
  const at::Tensor x_full = fixed({kSeq, kBatch, kHidden}, 5);
  const at::Tensor upstream = fixed({kSeq, kBatch, kHidden}, 6);

  nn::ParamRegistry single(at::kCPU, at::kFloat, kSeed);
  const Forward f1 = build(single, cfg);
  at::Tensor x1 = x_full.clone().requires_grad_(true);
  const at::Tensor y1 = f1(x1);
  y1.backward(upstream);

  mhtest::ThreadWorld world(tp, cp);
  world.run([&](int g) {
    nn::TransformerConfig c = cfg;
    const auto ctx = ParallelContext::from_host(world.host(g), sp ? MH_PARALLEL_SEQUENCE_PARALLEL : 0u);
    c.parallel = ctx;
    nn::ParamRegistry reg(at::kCPU, at::kFloat, kSeed);
    const Forward f = build(reg, c);
    at::Tensor x = local_seq(x_full, *ctx).clone().requires_grad_(true);
    const at::Tensor y = f(x);
    const std::string where = "rank " + std::to_string(g);
    expect_close(y.detach(), local_seq(y1.detach(), *ctx), where + " output");
    y.backward(local_seq(upstream, *ctx));
    expect_close(x.grad(), local_seq(x1.grad(), *ctx), where + " input grad");
    for (const auto& p : reg.params()) {
      at::Tensor grad = p.grad.clone();
      if (p.flags & MH_PARAM_SEQUENCE_PARALLEL) ctx->tp.all_reduce(grad);
      ctx->cp.all_reduce(grad);
      const nn::Param* ref = single.find(p.name);
      ASSERT_NE(ref, nullptr) << p.name;
      const bool glu = (p.flags & MH_PARAM_TP_GLU_HALVES) != 0;
      expect_close(p.data.detach(), mhtest::shard(ref->data.detach(), p.tensor_parallel_dim, ctx->tp.rank(), tp, glu),
                   where + " " + p.name + " starts from the single-process slice");
      expect_close(grad, mhtest::shard(ref->grad, p.tensor_parallel_dim, ctx->tp.rank(), tp, glu),
                   where + " " + p.name + " grad");
    }
  });
}

Build mlp_block() {
  return [](nn::ParamRegistry& reg, const nn::TransformerConfig& c) -> Forward {
    auto mlp = std::make_shared<nn::MLP>(reg, "mlp", c);
    return [mlp](const at::Tensor& x) { return mlp->forward(x); };
  };
}

Build attention_block(bool rope) {
  return [rope](nn::ParamRegistry& reg, const nn::TransformerConfig& c) -> Forward {
    auto attn = std::make_shared<nn::SelfAttention>(reg, "self_attention", c);
    auto rotary = std::make_shared<nn::RotaryEmbedding>(c.kv_channels, 1.0, 10000.0, c.parallel);
    const bool sp = c.parallel && c.parallel->sequence_parallel;
    const int64_t tp = c.parallel ? c.parallel->tp.size() : 1;
    return [attn, rotary, rope, sp, tp](const at::Tensor& x) {
      const int64_t s = x.size(0) * (sp ? tp : 1);  // rotary covers the gathered (this cp rank's) sequence
      return attn->forward(x, rope ? rotary->forward(s, x.device()) : at::Tensor(), /*training=*/false);
    };
  };
}

TEST(ParallelLayers, MlpGeluTp2) { check_block(2, 1, false, false, mlp_block()); }
TEST(ParallelLayers, MlpSwigluTp2HoldsGateAndUpSlices) { check_block(2, 1, false, true, mlp_block()); }
TEST(ParallelLayers, MlpSwigluTp2SequenceParallel) { check_block(2, 1, true, true, mlp_block()); }
TEST(ParallelLayers, AttentionTp2HoldsHalfTheHeadsAndGroups) { check_block(2, 1, false, false, attention_block(true)); }
TEST(ParallelLayers, AttentionTp2SequenceParallel) { check_block(2, 1, true, false, attention_block(true)); }
TEST(ParallelLayers, AttentionCp2GathersKeysAndMasksByGlobalPosition) {
  check_block(1, 2, false, false, attention_block(true));
}
TEST(ParallelLayers, AttentionCp2WithoutRope) { check_block(1, 2, false, false, attention_block(false)); }
TEST(ParallelLayers, AttentionTp2Cp2SequenceParallel) { check_block(2, 2, true, false, attention_block(true)); }

// Embedding -> (SP scatter) -> output layer -> vocab-parallel cross entropy, tied weights.
TEST(ParallelLayers, VocabParallelEmbeddingLogitsAndCrossEntropy) {
  constexpr int64_t kVocab = 12;
  at::Generator gen = at::detail::createCPUGenerator(9);
  const at::Tensor ids = at::randint(kVocab, {kBatch, kSeq}, gen, at::kLong);     // [b, s]
  const at::Tensor labels = at::randint(kVocab, {kSeq, kBatch}, gen, at::kLong);  // [s, b]
  for (bool sp : {false, true}) {
    auto run = [&](nn::ParamRegistry& reg, const parallel::ParallelContext* p, const nn::ParallelContextPtr& pp,
                   at::Tensor* logits_out) {
      nn::VocabParallelEmbedding emb(reg, "embedding.word_embeddings", kVocab, kHidden, nn::Init::normal(0.5), pp);
      const at::Tensor h = nn::embeddings_to_hidden_states(emb.forward(ids), p);  // [s(/tp), b, h]
      const at::Tensor logits = nn::parallel_lm_logits(h, emb.weight, p);          // [s, b, V(/tp)]
      *logits_out = logits.detach();
      return nn::vocab_parallel_cross_entropy(logits, labels, p);                  // [s, b]
    };
    nn::ParamRegistry single(at::kCPU, at::kFloat, kSeed);
    at::Tensor logits1;
    const at::Tensor loss1 = run(single, nullptr, nullptr, &logits1);
    const at::Tensor weights = fixed({kSeq, kBatch}, 3);
    (loss1 * weights).sum().backward();

    mhtest::ThreadWorld world(2, 1);
    world.run([&](int g) {
      const auto ctx = ParallelContext::from_host(world.host(g), sp ? MH_PARALLEL_SEQUENCE_PARALLEL : 0u);
      nn::ParamRegistry reg(at::kCPU, at::kFloat, kSeed);
      at::Tensor logits;
      const at::Tensor loss = run(reg, ctx.get(), ctx, &logits);
      const std::string where = std::string(sp ? "SP " : "") + "rank " + std::to_string(g);
      expect_close(logits, logits1.chunk(2, -1)[g], where + " logits (vocab slice)");
      expect_close(loss.detach(), loss1.detach(), where + " per-token loss");
      (loss * weights).sum().backward();
      expect_close(reg.params()[0].grad, single.params()[0].grad.chunk(2, 0)[g], where + " embedding grad");
    });
  }
}

// Labels outside a rank's vocab range, and logits in bfloat16, still give log_softmax + gather.
TEST(ParallelLayers, VocabParallelCrossEntropyMatchesTorchOnEveryRank) {
  const at::Tensor logits = fixed({5, 3, 8}, 4) * 4.0;  // [s, b, V]
  const at::Tensor labels = at::tensor({0, 7, 3, 4, 1, 6, 2, 5, 0, 7, 7, 0, 3, 4, 4}, at::kLong).view({5, 3});
  at::Tensor full = logits.clone().requires_grad_(true);
  const at::Tensor want = nn::vocab_parallel_cross_entropy(full, labels);
  want.sum().backward();
  mhtest::ThreadWorld world(2, 1);
  world.run([&](int g) {
    const auto ctx = ParallelContext::from_host(world.host(g), 0);
    at::Tensor part = logits.chunk(2, -1)[g].clone().requires_grad_(true);
    const at::Tensor loss = nn::vocab_parallel_cross_entropy(part, labels, ctx.get());
    expect_close(loss.detach(), want.detach(), "loss");
    loss.sum().backward();
    expect_close(part.grad(), full.grad().chunk(2, -1)[g], "grad: softmax minus one-hot on the owned range");
  });
}

TEST(ParallelLayers, ContextParallelPositionsAreTheLoadBalancedChunks) {
  using parallel::context_parallel_positions;
  EXPECT_TRUE(at::equal(context_parallel_positions(4, 0, 2, at::kCPU), at::tensor({0, 1, 6, 7}, at::kLong)));
  EXPECT_TRUE(at::equal(context_parallel_positions(4, 1, 2, at::kCPU), at::tensor({2, 3, 4, 5}, at::kLong)));
  const at::Tensor seq = at::arange(8, at::kLong).view({1, 8});
  EXPECT_TRUE(at::equal(parallel::context_parallel_slice(seq, 1, 1, 2).view({4}),
                        context_parallel_positions(4, 1, 2, at::kCPU)));
}

}  // namespace
