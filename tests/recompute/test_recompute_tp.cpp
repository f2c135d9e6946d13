// Recompute under tensor and sequence parallelism (TP2, ranks as threads over the in-process
// mh.dist/1 of tests/sdk_parallel): attention dropout draws from the per-TP-rank generator and,
// under sequence parallelism, hidden dropout too; the recompute rebuilds them from the restored
// default generator, so every rank's output and gradients equal the plain run's (1e-6 relative).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "../sdk_parallel/thread_dist.h"
#include "megahost/sdk/nn/params.h"
#include "megahost/sdk/nn/transformer.h"
#include "megahost/sdk/parallel/mappings.h"
#include "megahost/sdk/parallel/random.h"

namespace nn = megahost::sdk::nn;
namespace parallel = megahost::sdk::parallel;

namespace {

// One TP rank's result: the block's output, then every parameter gradient and the input's.
std::vector<at::Tensor> run_rank(const mh_host* host, int rank, nn::RecomputeGranularity g, nn::RecomputeMethod m,
                                 int64_t n) {
  parallel::ScopedDefaultGenerator seeded(at::detail::createCPUGenerator(1234));  // as each process's default
  nn::TransformerConfig c;
  c.num_layers = 2;
  c.hidden_size = 16;
  c.num_attention_heads = 4;
  c.num_query_groups = 2;
  c.kv_channels = 4;
  c.ffn_hidden_size = 24;
  c.hidden_dropout = 0.3;
  c.attention_dropout = 0.3;
  c.recompute_granularity = g;
  c.recompute_method = m;
  c.recompute_num_layers = n;
  c.parallel = parallel::ParallelContext::from_host(host, MH_PARALLEL_SEQUENCE_PARALLEL);
  nn::ParamRegistry reg(at::kCPU, at::kFloat, 77);
  nn::TransformerBlock block(reg, "decoder", c, 0, 2, true);
  at::Generator data = at::detail::createCPUGenerator(5);
  const at::Tensor full = at::empty({8, 2, 16}).normal_(0.0, 1.0, data);      // [s, b, h]
  const at::Tensor x = full.chunk(2, 0)[rank].clone().requires_grad_(true);  // [s/tp, b, h]
  const at::Tensor y = block.forward(x, at::Tensor(), /*training=*/true);
  (y * y).sum().backward();
  std::vector<at::Tensor> out{y.detach(), x.grad()};
  for (const auto& p : reg.params()) out.push_back(p.data.grad());
  return out;
}

std::vector<std::vector<at::Tensor>> on_tp2(nn::RecomputeGranularity g, nn::RecomputeMethod m, int64_t n) {
  mhtest::ThreadWorld world(2, 1);
  std::vector<std::vector<at::Tensor>> out(2);
  world.run([&](int r) { out[r] = run_rank(world.host(r), r, g, m, n); });
  return out;
}

void expect_same_as_plain(nn::RecomputeGranularity g, nn::RecomputeMethod m, int64_t n) {
  const auto plain = on_tp2(nn::RecomputeGranularity::None, nn::RecomputeMethod::None, 0);
  const auto got = on_tp2(g, m, n);
  for (int r = 0; r < 2; ++r) {
    ASSERT_EQ(got[r].size(), plain[r].size());
    for (size_t i = 0; i < got[r].size(); ++i) {
      ASSERT_TRUE(got[r][i].defined() && plain[r][i].defined()) << "rank " << r << " tensor " << i;
      const double scale = plain[r][i].abs().max().item<double>();
      EXPECT_LE((got[r][i] - plain[r][i]).abs().max().item<double>(), 1e-6 * scale) << "rank " << r << " tensor " << i;
    }
  }
}

}  // namespace

TEST(RecomputeTp, PerRankMasksDiffer) {  // the per-TP-rank generator is really in play
  const auto plain = on_tp2(nn::RecomputeGranularity::None, nn::RecomputeMethod::None, 0);
  EXPECT_FALSE(at::equal(plain[0][0], plain[1][0]));
}
TEST(RecomputeTp, SelectiveMatchesPlain) {
  expect_same_as_plain(nn::RecomputeGranularity::Selective, nn::RecomputeMethod::None, 0);
}
TEST(RecomputeTp, FullUniformMatchesPlain) {
  expect_same_as_plain(nn::RecomputeGranularity::Full, nn::RecomputeMethod::Uniform, 1);
}
TEST(RecomputeTp, FullBlockMatchesPlain) { expect_same_as_plain(nn::RecomputeGranularity::Full, nn::RecomputeMethod::Block, 2); }
