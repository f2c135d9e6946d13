// Megatron's autograd regions on 2 ranks: forward and backward of each against plain math.
// Rank r feeds x_r = fixed(seed r) and backpropagates the upstream gradient w_r = fixed(seed 10 + r).
#include <gtest/gtest.h>

#include "common.h"
#include "megahost/sdk/parallel/mappings.h"
#include "thread_dist.h"

namespace {

using namespace megahost::sdk::parallel;
using mhtest::expect_close;
using mhtest::fixed;

constexpr int kRanks = 2;

at::Tensor x_of(int r) { return fixed({4, 6}, 1 + r); }
at::Tensor w_of(int r, at::IntArrayRef shape) { return fixed(shape, 10 + r); }

// Runs region(x_r) on each rank, backward with w_r; checks y and x.grad with want_y(r), want_dx(r).
template <typename Region, typename WantY, typename WantDx>
void check_region(Region region, at::IntArrayRef out_shape, WantY want_y, WantDx want_dx) {
  mhtest::ThreadWorld world(kRanks, 1);
  world.run([&](int g) {
    const DistGroup tp = DistGroup::from(world.host(g), "tp").value();
    ASSERT_EQ(tp.rank(), g);
    ASSERT_EQ(tp.size(), kRanks);
    at::Tensor x = x_of(g).requires_grad_(true);
    const at::Tensor y = region(x, tp);
    expect_close(y.detach(), want_y(g), "forward of rank " + std::to_string(g));
    y.backward(w_of(g, out_shape));
    expect_close(x.grad(), want_dx(g), "backward of rank " + std::to_string(g));
  });
}

TEST(Regions, CopyToTpIsIdentityForwardAndAllReduceBackward) {
  check_region(copy_to_tp_region, {4, 6}, [](int r) { return x_of(r); },
               [](int) { return w_of(0, {4, 6}) + w_of(1, {4, 6}); });
}

TEST(Regions, ReduceFromTpIsAllReduceForwardAndIdentityBackward) {
  check_region(reduce_from_tp_region, {4, 6}, [](int) { return x_of(0) + x_of(1); },
               [](int r) { return w_of(r, {4, 6}); });
}

TEST(Regions, ScatterToTpKeepsTheLastDimChunkAndGathersTheGrad) {
  check_region(scatter_to_tp_region, {4, 3}, [](int r) { return x_of(r).chunk(2, -1)[r]; },
               [](int) { return at::cat({w_of(0, {4, 3}), w_of(1, {4, 3})}, -1); });
}

TEST(Regions, GatherFromTpConcatenatesTheLastDimAndSplitsTheGrad) {
  check_region(gather_from_tp_region, {4, 12}, [](int) { return at::cat({x_of(0), x_of(1)}, -1); },
               [](int r) { return w_of(r, {4, 12}).chunk(2, -1)[r]; });
}

TEST(Regions, ScatterToSequenceParallelKeepsTheDim0ChunkAndGathersTheGrad) {
  check_region(scatter_to_sequence_parallel_region, {2, 6}, [](int r) { return x_of(r).chunk(2, 0)[r]; },
               [](int) { return at::cat({w_of(0, {2, 6}), w_of(1, {2, 6})}, 0); });
}

TEST(Regions, GatherFromSequenceParallelConcatenatesDim0AndReduceScattersTheGrad) {
  check_region([](const at::Tensor& x, const DistGroup& g) { return gather_from_sequence_parallel_region(x, g); },
               {8, 6}, [](int) { return at::cat({x_of(0), x_of(1)}, 0); },
               [](int r) { return (w_of(0, {8, 6}) + w_of(1, {8, 6})).chunk(2, 0)[r]; });
}

TEST(Regions, GatherFromSequenceParallelWithoutTpOutputGradSplitsTheGrad) {
  check_region(
      [](const at::Tensor& x, const DistGroup& g) { return gather_from_sequence_parallel_region(x, g, false); },
      {8, 6}, [](int) { return at::cat({x_of(0), x_of(1)}, 0); },
      [](int r) { return w_of(r, {8, 6}).chunk(2, 0)[r]; });
}

TEST(Regions, ReduceScatterToSequenceParallelSumsChunksAndGathersTheGrad) {
  check_region(reduce_scatter_to_sequence_parallel_region, {2, 6},
               [](int r) { return (x_of(0) + x_of(1)).chunk(2, 0)[r]; },
               [](int) { return at::cat({w_of(0, {2, 6}), w_of(1, {2, 6})}, 0); });
}

TEST(Regions, SizeOneGroupsAreIdentityWithoutAHost) {
  const DistGroup single;
  const at::Tensor x = x_of(0);
  EXPECT_TRUE(copy_to_tp_region(x, single).is_same(x));
  EXPECT_TRUE(reduce_scatter_to_sequence_parallel_region(x, single).is_same(x));
  at::Tensor y = x.clone();
  single.all_reduce(y);
  EXPECT_TRUE(at::equal(y, x));
  // A host without mh.dist/1 (1.0) gives a single-process context.
  const auto ctx = ParallelContext::from_host(mhtest::test_host(), MH_PARALLEL_SEQUENCE_PARALLEL);
  EXPECT_EQ(ctx->tp.size(), 1);
  EXPECT_EQ(ctx->cp.size(), 1);
  EXPECT_FALSE(ctx->sequence_parallel);  // Megatron turns it off at tp = 1
}

TEST(Regions, AllReduceOfANonContiguousTensorWritesBack) {
  mhtest::ThreadWorld world(kRanks, 1);
  world.run([&](int g) {
    const DistGroup tp = DistGroup::from(world.host(g), "tp").value();
    at::Tensor base = x_of(g).clone();
    at::Tensor view = base.t();  // non-contiguous
    tp.all_reduce(view, MH_REDUCE_MAX);
    expect_close(base, at::maximum(x_of(0), x_of(1)), "max all-reduce through a transposed view");
  });
}

}  // namespace
