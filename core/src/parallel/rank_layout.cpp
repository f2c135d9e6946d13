// Megatron's RankGenerator (megatron/core/parallel_state.py), the same rank lists bit for bit.
#include "megahost/core/parallel/rank_layout.h"

#include <algorithm>
#include <sstream>

#include "megahost/core/error.h"

namespace megahost::core {
namespace {

const std::vector<std::string> kAxes = {"tp", "pp", "dp", "ep", "cp"};

std::vector<std::string> split_tokens(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string tok;
  while (std::getline(ss, tok, '-')) out.push_back(tok);
  return out;
}

int axis_size(const ParallelSizes& s, const std::string& axis, bool expert) {
  if (axis == "tp") return expert ? s.expert_tp : s.tp;
  if (axis == "cp") return expert ? 1 : s.cp;
  if (axis == "ep") return expert ? s.ep : 1;
  if (axis == "dp") return expert ? s.expert_dp() : s.dp();
  if (axis == "pp") return s.pp;
  throw Error(cat("parallel: unknown axis '", axis, "'. HINT: axes are tp, cp, ep, dp, pp"));
}

// The order's axes (fastest first) with their sizes; Megatron appends axes of size 1 missing
// from the order at the end.
struct Grid {
  std::vector<std::string> names;
  std::vector<int> sizes;
};

Grid make_grid(const ParallelSizes& s, bool expert) {
  Grid g;
  for (const auto& tok : split_tokens(s.order)) {
    g.names.push_back(tok);
    g.sizes.push_back(axis_size(s, tok, expert));
  }
  for (const auto& a : kAxes) {
    if (std::find(g.names.begin(), g.names.end(), a) != g.names.end()) continue;
    g.names.push_back(a);
    g.sizes.push_back(axis_size(s, a, expert));
  }
  return g;
}

std::vector<int> prefix_product(const std::vector<int>& a) {
  std::vector<int> r{1};
  for (int v : a) r.push_back(r.back() * v);
  return r;
}

// Megatron's generate_masked_orthogonal_rank_groups: groups vary the masked axes and fix the rest.
std::vector<std::vector<int>> masked_groups(int world, const std::vector<int>& sizes, const std::vector<bool>& mask) {
  const std::vector<int> stride = prefix_product(sizes);
  std::vector<int> in_shape, in_stride, out_shape, out_stride;
  for (size_t i = 0; i < sizes.size(); ++i) {
    (mask[i] ? in_shape : out_shape).push_back(sizes[i]);
    (mask[i] ? in_stride : out_stride).push_back(stride[i]);
  }
  auto offset = [](int index, const std::vector<int>& shape, const std::vector<int>& strides) {
    int r = 0;
    for (size_t i = 0; i < shape.size(); ++i) {
      r += (index % shape[i]) * strides[i];
      index /= shape[i];
    }
    return r;
  };
  int group_size = 1;
  for (int v : in_shape) group_size *= v;
  std::vector<std::vector<int>> groups(world / group_size);
  for (int g = 0; g < static_cast<int>(groups.size()); ++g)
    for (int i = 0; i < group_size; ++i)
      groups[g].push_back(offset(i, in_shape, in_stride) + offset(g, out_shape, out_stride));
  return groups;
}

void check_positive(int v, const char* what) {
  MH_CORE_CHECK(v >= 1, "parallel: ", what, " must be >= 1, got ", v, ". HINT: set [parallel] ", what, " to 1 or more");
}

}  // namespace

void validate(const ParallelSizes& s) {
  check_positive(s.world, "world_size");
  check_positive(s.tp, "tensor_model_parallel_size");
  check_positive(s.pp, "pipeline_model_parallel_size");
  check_positive(s.cp, "context_parallel_size");
  check_positive(s.ep, "expert_model_parallel_size");
  check_positive(s.expert_tp, "expert_tensor_parallel_size");
  const int tpc = s.tp * s.pp * s.cp;
  MH_CORE_CHECK(s.world % tpc == 0, "parallel: world_size (", s.world, ") is not divisible by tensor_model_parallel_size (",
                s.tp, ") x pipeline_model_parallel_size (", s.pp, ") x context_parallel_size (", s.cp,
                "). HINT: choose tp, pp and cp whose product divides the number of ranks");
  const int etp = s.expert_tp * s.ep * s.pp;
  MH_CORE_CHECK(s.world % etp == 0, "parallel: world_size (", s.world,
                ") is not divisible by expert_tensor_model_pipeline_parallel_size (", etp,
                " = expert_tensor_parallel_size ", s.expert_tp, " x expert_model_parallel_size ", s.ep,
                " x pipeline_model_parallel_size ", s.pp,
                "). HINT: choose expert tp, ep and pp whose product divides the number of ranks");
  const auto tokens = split_tokens(s.order);
  for (const auto& t : tokens) {
    MH_CORE_CHECK(std::find(kAxes.begin(), kAxes.end(), t) != kAxes.end(), "parallel: order '", s.order,
                  "' has an unknown token '", t, "'. HINT: order lists tp, cp, ep, dp, pp joined by '-', e.g. tp-cp-ep-dp-pp");
    MH_CORE_CHECK(std::count(tokens.begin(), tokens.end(), t) == 1, "parallel: order '", s.order, "' lists '", t,
                  "' twice. HINT: each axis appears at most once");
  }
  for (const auto& a : kAxes) {
    if (std::find(tokens.begin(), tokens.end(), a) != tokens.end()) continue;
    const int dense = axis_size(s, a, false), expert = axis_size(s, a, true);
    MH_CORE_CHECK(dense == 1 && expert == 1, "parallel: the size of (", a, ") is (", std::max(dense, expert),
                  "), but you haven't specified the order (", s.order, "). HINT: add '", a, "' to parallel.order");
  }
  // Parallel folding shares the pipeline: both grids must give the same pp groups. Checked only
  // with experts (ep > 1): without them the expert grid is never used, and expert_tp may keep its
  // default of 1 under any order.
  auto pp_groups = [&](bool expert) {
    const Grid g = make_grid(s, expert);
    std::vector<bool> mask;
    for (const auto& n : g.names) mask.push_back(n == "pp");
    return masked_groups(s.world, g.sizes, mask);
  };
  MH_CORE_CHECK(s.ep == 1 || pp_groups(false) == pp_groups(true),
                "parallel: pipeline parallel groups are expected to be the same for non-expert and expert parts "
                "(order '", s.order, "'). HINT: keep 'pp' last in parallel.order when ep or expert tp differ from tp x cp");
}

std::vector<std::vector<int>> rank_groups(const ParallelSizes& s, const std::string& axes, bool expert) {
  validate(s);
  const auto want = split_tokens(axes);
  for (const auto& a : want)
    MH_CORE_CHECK(std::find(kAxes.begin(), kAxes.end(), a) != kAxes.end(), "parallel: unknown axis '", a,
                  "' in group '", axes, "'. HINT: axes are tp, cp, ep, dp, pp joined by '-'");
  const Grid g = make_grid(s, expert);
  std::vector<bool> mask;
  for (const auto& n : g.names) mask.push_back(std::find(want.begin(), want.end(), n) != want.end());
  return masked_groups(s.world, g.sizes, mask);
}

std::vector<int> rank_group_of(const ParallelSizes& s, const std::string& axes, int rank, bool expert) {
  for (auto& g : rank_groups(s, axes, expert))
    if (std::find(g.begin(), g.end(), rank) != g.end()) return g;
  throw Error(cat("parallel: rank ", rank, " is outside the world of ", s.world, " ranks. HINT: RANK < WORLD_SIZE"));
}

int axis_rank(const ParallelSizes& s, const std::string& axis, int rank, bool expert) {
  const auto g = rank_group_of(s, axis, rank, expert);
  return static_cast<int>(std::find(g.begin(), g.end(), rank) - g.begin());
}

std::vector<int> embedding_ranks(const std::vector<int>& pp_group) {
  if (pp_group.size() <= 1) return pp_group;
  return {pp_group.front(), pp_group.back()};
}

}  // namespace megahost::core
