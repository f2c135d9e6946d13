// megahost core — Megatron's rank layout (RankGenerator), bit-compatible, no torch.
//
// Axes in `order` are listed fastest-varying first; for the default "tp-cp-ep-dp-pp":
//   rank = tp + TP*(cp + CP*(ep + EP*(dp + DP*pp)))
// Two grids over the same ranks:
//   dense  (tp = tp,        cp = cp, ep = 1,  dp = dp(),        pp)
//   expert (tp = expert_tp, cp = 1,  ep = ep, dp = expert_dp(), pp)   MoE "parallel folding"
// A group for a set of axes ("dp", "tp-pp", "dp-cp") is the set of ranks that differ only along
// those axes; its members are listed in layout order (the first axis of `order` fastest).
#pragma once

#include <string>
#include <vector>

namespace megahost::core {

struct ParallelSizes {
  int world = 1, tp = 1, pp = 1, cp = 1, ep = 1;
  int expert_tp = 1;  // Megatron defaults it to tp: callers set it so when the recipe leaves it unset
  std::string order = "tp-cp-ep-dp-pp";
  int dp() const { return world / (tp * pp * cp); }
  int expert_dp() const { return world / (expert_tp * ep * pp); }
};

// Megatron's checks (world divisible by tp*pp*cp and by expert_tp*ep*pp, order tokens, equal
// pipeline groups in both grids); throws core::Error with a HINT.
void validate(const ParallelSizes& sizes);

// Every group of the grid for `axes` ("tp", "dp-cp", "tp-pp", ... tokens of tp/cp/ep/dp/pp in any
// order), as lists of global ranks. Calls validate().
std::vector<std::vector<int>> rank_groups(const ParallelSizes& sizes, const std::string& axes,
                                          bool expert_grid = false);

// The group of `axes` that holds `rank` (validate()d sizes).
std::vector<int> rank_group_of(const ParallelSizes& sizes, const std::string& axes, int rank,
                               bool expert_grid = false);

// This rank's coordinate along one axis ("tp", "cp", "ep", "dp", "pp") of a grid.
int axis_rank(const ParallelSizes& sizes, const std::string& axis, int rank, bool expert_grid = false);

// Megatron's embedding group of a pipeline group: its first and last stage ([r] when pp = 1).
std::vector<int> embedding_ranks(const std::vector<int>& pp_group);

}  // namespace megahost::core
