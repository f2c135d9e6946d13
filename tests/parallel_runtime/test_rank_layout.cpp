// Megatron's RankGenerator layouts: every example of FORMATS.md §4, the order option, the checks.
#include <gtest/gtest.h>

#include "megahost/core/error.h"
#include "megahost/core/parallel/rank_layout.h"

using megahost::core::ParallelSizes;
using megahost::core::rank_groups;
using Groups = std::vector<std::vector<int>>;

namespace {
ParallelSizes sizes16_tp2_dp4_pp2() {
  ParallelSizes s;
  s.world = 16;
  s.tp = 2;
  s.pp = 2;
  return s;
}
}  // namespace

TEST(RankLayout, Formats16RanksTp2Dp4Pp2) {
  const auto s = sizes16_tp2_dp4_pp2();
  EXPECT_EQ(s.dp(), 4);
  EXPECT_EQ(rank_groups(s, "tp"), (Groups{{0, 1}, {2, 3}, {4, 5}, {6, 7}, {8, 9}, {10, 11}, {12, 13}, {14, 15}}));
  EXPECT_EQ(rank_groups(s, "dp"), (Groups{{0, 2, 4, 6}, {1, 3, 5, 7}, {8, 10, 12, 14}, {9, 11, 13, 15}}));
  EXPECT_EQ(rank_groups(s, "pp"), (Groups{{0, 8}, {1, 9}, {2, 10}, {3, 11}, {4, 12}, {5, 13}, {6, 14}, {7, 15}}));
  EXPECT_EQ(rank_groups(s, "tp-pp"), (Groups{{0, 1, 8, 9}, {2, 3, 10, 11}, {4, 5, 12, 13}, {6, 7, 14, 15}}));
  // Axis order inside the name does not matter; cp = 1 makes dp-cp the dp groups.
  EXPECT_EQ(rank_groups(s, "pp-tp"), rank_groups(s, "tp-pp"));
  EXPECT_EQ(rank_groups(s, "dp-cp"), rank_groups(s, "dp"));
  EXPECT_EQ(rank_groups(s, "cp"), rank_groups(s, "cp-ep"));
  EXPECT_EQ(rank_groups(s, "cp").size(), 16u);
}

TEST(RankLayout, FormulaOfTheDefaultOrder) {
  // rank = tp + TP*(cp + CP*(ep + EP*(dp + DP*pp))), dense grid ep = 1.
  ParallelSizes s;
  s.world = 24;
  s.tp = 2;
  s.cp = 3;
  s.pp = 2;  // dp = 2
  for (int pp = 0; pp < 2; ++pp)
    for (int dp = 0; dp < 2; ++dp)
      for (int cp = 0; cp < 3; ++cp)
        for (int tp = 0; tp < 2; ++tp) {
          const int rank = tp + 2 * (cp + 3 * (dp + 2 * pp));
          EXPECT_EQ(megahost::core::axis_rank(s, "tp", rank), tp);
          EXPECT_EQ(megahost::core::axis_rank(s, "cp", rank), cp);
          EXPECT_EQ(megahost::core::axis_rank(s, "dp", rank), dp);
          EXPECT_EQ(megahost::core::axis_rank(s, "pp", rank), pp);
        }
  // dp-cp varies cp fastest: [0,2,4,6,8,10] for tp 0 of stage 0.
  EXPECT_EQ(rank_groups(s, "dp-cp")[0], (std::vector<int>{0, 2, 4, 6, 8, 10}));
  EXPECT_EQ(rank_groups(s, "tp-cp")[0], (std::vector<int>{0, 1, 2, 3, 4, 5}));
}

TEST(RankLayout, FormatsExpertGrid16RanksEp4Pp2) {
  ParallelSizes s;
  s.world = 16;
  s.pp = 2;
  s.ep = 4;
  s.expert_tp = 1;
  EXPECT_EQ(s.expert_dp(), 2);
  EXPECT_EQ(rank_groups(s, "ep", true), (Groups{{0, 1, 2, 3}, {4, 5, 6, 7}, {8, 9, 10, 11}, {12, 13, 14, 15}}));
  EXPECT_EQ(rank_groups(s, "dp", true),
            (Groups{{0, 4}, {1, 5}, {2, 6}, {3, 7}, {8, 12}, {9, 13}, {10, 14}, {11, 15}}));
  EXPECT_EQ(rank_groups(s, "tp", true).size(), 16u);
  // The expert grid shares the dense grid's pipeline groups.
  EXPECT_EQ(rank_groups(s, "pp", true), rank_groups(s, "pp", false));
}

TEST(RankLayout, OrderOptionPermutesTheAxes) {
  // "tp-pp-dp": pp varies right after tp.  rank = tp + TP*(pp + PP*dp)
  auto s = sizes16_tp2_dp4_pp2();
  s.order = "tp-pp-dp";
  EXPECT_EQ(rank_groups(s, "pp")[0], (std::vector<int>{0, 2}));
  EXPECT_EQ(rank_groups(s, "dp")[0], (std::vector<int>{0, 4, 8, 12}));
  EXPECT_EQ(rank_groups(s, "tp")[1], (std::vector<int>{2, 3}));
  // "tp-dp-pp" is the default order without cp/ep (sizes 1): same groups.
  auto d = sizes16_tp2_dp4_pp2();
  d.order = "tp-dp-pp";
  EXPECT_EQ(rank_groups(d, "dp"), rank_groups(sizes16_tp2_dp4_pp2(), "dp"));
  // "dp-tp-pp": dp fastest.
  auto f = sizes16_tp2_dp4_pp2();
  f.order = "dp-tp-pp";
  EXPECT_EQ(rank_groups(f, "dp")[0], (std::vector<int>{0, 1, 2, 3}));
  EXPECT_EQ(rank_groups(f, "tp")[0], (std::vector<int>{0, 4}));
}

TEST(RankLayout, EmbeddingIsFirstAndLastStage) {
  EXPECT_EQ(megahost::core::embedding_ranks({3, 7, 11, 15}), (std::vector<int>{3, 15}));
  EXPECT_EQ(megahost::core::embedding_ranks({5}), (std::vector<int>{5}));
}

TEST(RankLayout, ChecksGiveMegatronWordingAndAHint) {
  auto expect_error = [](ParallelSizes s, const std::string& part) {
    try {
      megahost::core::validate(s);
      ADD_FAILURE() << "no error for " << part;
    } catch (const megahost::core::Error& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("HINT"), std::string::npos) << e.what();
    }
  };
  ParallelSizes a;
  a.world = 6;
  a.tp = 4;
  expect_error(a, "world_size (6) is not divisible by tensor_model_parallel_size (4)");
  ParallelSizes b;
  b.world = 4;
  b.ep = 3;
  expect_error(b, "expert_tensor_model_pipeline_parallel_size (3");
  ParallelSizes c;
  c.order = "tp-xx-dp";
  expect_error(c, "unknown token 'xx'");
  ParallelSizes d;
  d.world = 4;
  d.tp = 2;
  d.order = "dp-pp";
  expect_error(d, "the size of (tp) is (2), but you haven't specified the order");
  ParallelSizes e;
  e.world = 4;
  e.tp = 2;
  e.pp = 2;
  e.ep = 2;
  e.expert_tp = 1;
  e.order = "tp-pp-ep-dp-cp";
  expect_error(e, "pipeline parallel groups are expected to be the same");
}
