// Stage assignment (Megatron's layers per rank and virtual chunk) and its divisibility messages.
#include <gtest/gtest.h>

#include <string>

#include "megahost/core/engine/pipeline_layout.h"
#include "megahost/core/error.h"
#include "megahost/megahost.h"

namespace megahost::core {
namespace {

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(PipelineLayout, WholeModelWithoutPipelining) {
  const auto s = stages_for_rank(4, 1, 0, 0);
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].layer_offset, 0);
  EXPECT_EQ(s[0].num_layers, 4);
  EXPECT_EQ(s[0].stage_flags, MH_STAGE_FIRST | MH_STAGE_LAST);
}

TEST(PipelineLayout, ContiguousStages) {
  // 8 layers over 4 stages: 2 each, in rank order.
  for (int64_t r = 0; r < 4; ++r) {
    const auto s = stages_for_rank(8, 4, 0, r);
    ASSERT_EQ(s.size(), 1u);
    EXPECT_EQ(s[0].layer_offset, 2 * r);
    EXPECT_EQ(s[0].num_layers, 2);
    EXPECT_EQ(s[0].stage_flags, (r == 0 ? MH_STAGE_FIRST : 0u) | (r == 3 ? MH_STAGE_LAST : 0u));
  }
}

TEST(PipelineLayout, InterleavedChunksAsMegatron) {
  // Megatron's docstring example: 8 layers, pp 2, 2 chunks of 2 layers per rank:
  // rank 0 holds [0, 1] and [4, 5], rank 1 holds [2, 3] and [6, 7].
  EXPECT_EQ(virtual_pipeline_size(8, 2, 2), 2);
  const auto r0 = stages_for_rank(8, 2, 2, 0), r1 = stages_for_rank(8, 2, 2, 1);
  ASSERT_EQ(r0.size(), 2u);
  ASSERT_EQ(r1.size(), 2u);
  EXPECT_EQ(r0[0].layer_offset, 0);
  EXPECT_EQ(r0[1].layer_offset, 4);
  EXPECT_EQ(r1[0].layer_offset, 2);
  EXPECT_EQ(r1[1].layer_offset, 6);
  for (const auto* v : {&r0, &r1})
    for (const auto& s : *v) EXPECT_EQ(s.num_layers, 2);
  EXPECT_EQ(r0[0].stage_flags, MH_STAGE_FIRST);
  EXPECT_EQ(r0[1].stage_flags, 0u);
  EXPECT_EQ(r1[0].stage_flags, 0u);
  EXPECT_EQ(r1[1].stage_flags, MH_STAGE_LAST);

  // 4 layers, pp 2, 1 layer per virtual stage: rank 0 [0] [2], rank 1 [1] [3].
  const auto a = stages_for_rank(4, 2, 1, 0), b = stages_for_rank(4, 2, 1, 1);
  EXPECT_EQ(a[0].layer_offset, 0);
  EXPECT_EQ(a[1].layer_offset, 2);
  EXPECT_EQ(b[0].layer_offset, 1);
  EXPECT_EQ(b[1].layer_offset, 3);
}

TEST(PipelineLayout, EveryLayerExactlyOnce) {
  for (int64_t pp : {1, 2, 3, 4})
    for (int64_t n : {0, 1, 2}) {
      const int64_t layers = 12;
      if (n > 0 && (pp == 1 || (layers / pp) % n != 0)) continue;
      std::vector<int> seen(layers, 0);
      for (int64_t r = 0; r < pp; ++r)
        for (const auto& s : stages_for_rank(layers, pp, n, r))
          for (int32_t l = s.layer_offset; l < s.layer_offset + s.num_layers; ++l) ++seen[l];
      for (int64_t l = 0; l < layers; ++l) EXPECT_EQ(seen[l], 1) << "pp " << pp << " n " << n << " layer " << l;
    }
}

TEST(PipelineLayout, MegatronDivisibilityMessages) {
  const std::string pp = error_of([] { stages_for_rank(6, 4, 0, 0); });
  EXPECT_NE(pp.find("number of layers should be divisible by the pipeline parallel size"), std::string::npos) << pp;
  EXPECT_NE(pp.find("HINT"), std::string::npos);

  const std::string vs = error_of([] { stages_for_rank(8, 2, 3, 0); });
  EXPECT_NE(vs.find("number of layers per pipeline stage must be divisible number of layers per virtual pipeline "
                    "stage"),
            std::string::npos)
      << vs;
  EXPECT_NE(vs.find("HINT"), std::string::npos);

  const std::string one = error_of([] { stages_for_rank(8, 1, 2, 0); });
  EXPECT_NE(one.find("When interleaved schedule is used, pipeline-model-parallel size should be greater than 1"),
            std::string::npos)
      << one;

  const std::string mb = error_of([] { check_interleaved_microbatches(3, 2, 2); });
  EXPECT_NE(mb.find("number of microbatches (3) is not divisible by pipeline-model-parallel-size (2) when using "
                    "interleaved schedule"),
            std::string::npos)
      << mb;
  EXPECT_NE(mb.find("HINT"), std::string::npos);
  EXPECT_NO_THROW(check_interleaved_microbatches(3, 2, 1));  // only the interleaved schedule needs it
  EXPECT_NO_THROW(check_interleaved_microbatches(4, 2, 2));

  EXPECT_FALSE(error_of([] { stages_for_rank(4, 2, 0, 2); }).empty());  // rank outside the pipeline
}

}  // namespace
}  // namespace megahost::core
