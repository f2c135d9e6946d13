// megahost core — which transformer layers each pipeline stage holds (Megatron's assignment).
//
// Without interleaving, rank r of pp holds layers [r * L/pp, (r + 1) * L/pp).
// With num_layers_per_virtual_pipeline_stage = n, a rank holds vp = L / (pp * n) chunks; chunk v
// of rank r holds n layers starting at v * (L / vp) + r * n. The model's first stage is chunk 0 of
// rank 0 (embeddings), its last stage chunk vp - 1 of rank pp - 1 (final norm, output layer).
//
//   L = 8, pp = 2, n = 2 (vp = 2):  rank 0: [0, 1] [4, 5]   rank 1: [2, 3] [6, 7]
#pragma once

#include <cstdint>
#include <vector>

namespace megahost::core {

struct StageSpec {
  int32_t layer_offset = 0;  // first GLOBAL layer of the chunk
  int32_t num_layers = 0;
  uint32_t stage_flags = 0;  // MH_STAGE_FIRST / MH_STAGE_LAST
};

// Virtual stages per rank: 1 without interleaving (num_layers_per_virtual_stage = 0), else
// L / (pp * num_layers_per_virtual_stage). Throws core::Error with Megatron's message when the
// layers do not divide.
int64_t virtual_pipeline_size(int64_t num_layers, int64_t pp, int64_t num_layers_per_virtual_stage);

// The chunks of `pp_rank`, in virtual-stage order. Checks as virtual_pipeline_size.
std::vector<StageSpec> stages_for_rank(int64_t num_layers, int64_t pp, int64_t num_layers_per_virtual_stage,
                                       int64_t pp_rank);

// The interleaved schedule runs micro-batches in groups of pp: throws Megatron's message unless
// num_microbatches % pp == 0 (a no-op when vp == 1).
void check_interleaved_microbatches(int64_t num_microbatches, int64_t pp, int64_t vp);

}  // namespace megahost::core
