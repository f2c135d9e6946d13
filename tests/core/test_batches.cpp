// Micro-batch assembly: Megatron's data-parallel sample order and the context-parallel slice.
#include <gtest/gtest.h>

#include "megahost/core/engine/batches.h"

using namespace megahost::core;

TEST(Batches, DataParallelRanksTileTheGlobalBatchLikeMegatronsSampler) {
  // gbs 8, mbs 2, dp 2: 2 micro-batches per rank; slices of 4 samples, rank d takes part d.
  std::vector<uint64_t> firsts;
  for (int64_t m = 0; m < 2; ++m)
    for (int64_t d = 0; d < 2; ++d) firsts.push_back(micro_batch_first_sample(100, m, 2, 2, d));
  EXPECT_EQ(firsts, (std::vector<uint64_t>{100, 102, 104, 106}));
  // dp = 1 is the plain accumulation order.
  EXPECT_EQ(micro_batch_first_sample(100, 3, 2, 1, 0), 106u);
}

TEST(Batches, ContextParallelKeepsChunksRAndMirrorWithGlobalPositions) {
  // s = 8, cp = 2: chunks of 2; rank 0 keeps chunks 0 and 3, rank 1 chunks 1 and 2.
  at::Tensor pos = at::arange(8, at::kLong).unsqueeze(0).expand({2, 8}).contiguous();
  MicroBatchTensors b = {{"position_ids", pos}, {"tokens", pos + 100}};
  auto r0 = slice_for_context_parallel(b, 2, 0);
  auto r1 = slice_for_context_parallel(b, 2, 1);
  EXPECT_TRUE(at::equal(r0[0].second[0], at::tensor({0, 1, 6, 7}, at::kLong)));
  EXPECT_TRUE(at::equal(r1[0].second[1], at::tensor({2, 3, 4, 5}, at::kLong)));
  EXPECT_TRUE(at::equal(r1[1].second[0], at::tensor({102, 103, 104, 105}, at::kLong)));
  EXPECT_EQ(r0[1].first, "tokens");
  // cp = 1 changes nothing; a length not divisible by 2 x cp is refused with the reason.
  EXPECT_TRUE(at::equal(slice_for_context_parallel(b, 1, 0)[0].second, pos));
  try {
    slice_for_context_parallel({{"tokens", at::zeros({1, 6}, at::kLong)}}, 2, 0);
    FAIL() << "expected an error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("2 x context_parallel_size"), std::string::npos) << e.what();
  }
}
