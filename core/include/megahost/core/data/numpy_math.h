// megahost core — the few numpy float operations whose rounding Megatron's indices depend on.
//
// Megatron normalises split and blend weights with numpy (w / numpy.sum(w)); numpy sums doubles
// pairwise, so the last bit of a weight (and, rarely, a rounded split bound or a blend choice)
// depends on that summation order.
#pragma once

#include <cstddef>
#include <vector>

namespace megahost::core::data {

// numpy.sum of a 1-D float64 array (identity 0.0 plus numpy's pairwise summation).
double numpy_sum(const double* values, size_t n);

// Megatron's utils.normalize: w / numpy.sum(w), element by element. Throws core::Error when the
// weights are empty, negative, not finite or sum to zero.
std::vector<double> normalize_weights(const std::vector<double>& weights, const char* what);

}  // namespace megahost::core::data
