#include "megahost/core/data/blend.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "megahost/core/data/numpy_math.h"
#include "megahost/core/error.h"

namespace megahost::core::data {

BlendPlan plan_blend(const std::vector<double>& weights, int64_t target_samples, double surplus,
                     BlendLength length) {
  MH_CORE_CHECK(target_samples >= 0, "blend: negative number of samples ", target_samples);
  MH_CORE_CHECK(surplus >= 0.0, "blend: negative surplus ", surplus);
  MH_CORE_CHECK(weights.size() < 32767, "blend: ", weights.size(),
                " sources, Megatron's int16 dataset index holds at most 32766");
  BlendPlan p;
  p.weights = normalize_weights(weights, "blend weights");
  const double margin = 1.0 + surplus;
  for (double w : p.weights) {
    // Python: int(math.ceil(math.ceil(T * w) * (1 + surplus))), all in float64.
    const double target = std::ceil(static_cast<double>(target_samples) * w);
    p.target_samples.push_back(static_cast<int64_t>(target));
    p.requested_samples.push_back(static_cast<int64_t>(std::ceil(target * margin)));
  }
  const auto& counted =
      length == BlendLength::SumOfTargets ? p.target_samples : p.requested_samples;
  for (int64_t n : counted) p.size += n;
  return p;
}

BlendIndices build_blend_indices(const std::vector<double>& weights, int64_t size) {
  MH_CORE_CHECK(!weights.empty(), "blend: no sources");
  MH_CORE_CHECK(size >= 0, "blend: negative size ", size);
  const size_t n = weights.size();
  BlendIndices out;
  out.dataset_index.resize(static_cast<size_t>(size));
  out.dataset_sample_index.resize(static_cast<size_t>(size));
  std::vector<int64_t> count(n, 0);
  for (int64_t s = 0; s < size; ++s) {
    // Pick the source furthest behind its share; strict > keeps ties on the lower index.
    const double progress = std::max(static_cast<double>(s), 1.0);
    size_t best = 0;
    double best_error = weights[0] * progress - static_cast<double>(count[0]);
    for (size_t d = 1; d < n; ++d) {
      const double error = weights[d] * progress - static_cast<double>(count[d]);
      if (error > best_error) {
        best_error = error;
        best = d;
      }
    }
    out.dataset_index[s] = static_cast<int16_t>(best);
    out.dataset_sample_index[s] = count[best];
    ++count[best];
  }
  return out;
}

}  // namespace megahost::core::data
