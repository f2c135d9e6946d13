// megahost core — Megatron's dataset blending (FORMATS.md §3, blended_megatron_dataset_builder.py
// and helpers.cpp build_blending_indices).
//
// A blend of sources with weights w (normalised) and a target of T samples asks each source
// for ceil(ceil(T * w[d]) * (1 + surplus)) samples (surplus 0.005) so that the greedy choice
// below never runs a source dry, then walks the blended samples s = 0, 1, ...: pick the source
// d maximising w[d] * max(s, 1) - count[d] (ties to the lower index), record (d, count[d]).
#pragma once

#include <cstdint>
#include <vector>

namespace megahost::core::data {

// How long the blend is. Megatron-Core today: the sum of ceil(T * w[d]) (the targets);
// older releases (and FORMATS.md §3's wording): the sum of what each source was asked for.
enum class BlendLength { SumOfTargets, SumOfRequested };

struct BlendPlan {
  std::vector<double> weights;                // normalised once (the builder's normalize)
  std::vector<int64_t> target_samples;        // ceil(T * w[d])
  std::vector<int64_t> requested_samples;     // ceil(ceil(T * w[d]) * (1 + surplus)): build this many
  int64_t size = 0;                           // the blend's length
};

// Throws core::Error on bad weights (negative, not finite, all zero) or a negative target.
BlendPlan plan_blend(const std::vector<double>& weights, int64_t target_samples,
                     double surplus = 0.005, BlendLength length = BlendLength::SumOfTargets);

struct BlendIndices {
  std::vector<int16_t> dataset_index;         // [size] which source (int16, as Megatron)
  std::vector<int64_t> dataset_sample_index;  // [size] which sample of that source
};

// The greedy walk over `size` blended samples. `weights` are used as given (Megatron's
// BlendedDataset normalises them again first; BlendedDataset below does that).
BlendIndices build_blend_indices(const std::vector<double>& weights, int64_t size);

}  // namespace megahost::core::data
