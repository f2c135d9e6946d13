#include "megahost/core/data/numpy_math.h"

#include <cmath>

#include "megahost/core/error.h"

namespace megahost::core::data {

namespace {

// numpy's pairwise_sum for float64 (block size 128, 8-way unrolled leaves).
double pairwise_sum(const double* a, size_t n) {
  if (n < 8) {
    double res = 0.;
    for (size_t i = 0; i < n; ++i) res += a[i];
    return res;
  }
  if (n <= 128) {
    double r[8];
    for (int k = 0; k < 8; ++k) r[k] = a[k];
    size_t i = 8;
    for (; i < n - (n % 8); i += 8)
      for (int k = 0; k < 8; ++k) r[k] += a[i + k];
    double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) res += a[i];
    return res;
  }
  size_t n2 = n / 2;
  n2 -= n2 % 8;
  return pairwise_sum(a, n2) + pairwise_sum(a + n2, n - n2);
}

}  // namespace

double numpy_sum(const double* values, size_t n) { return 0.0 + pairwise_sum(values, n); }

std::vector<double> normalize_weights(const std::vector<double>& weights, const char* what) {
  MH_CORE_CHECK(!weights.empty(), what, ": no weights given");
  for (double w : weights)
    MH_CORE_CHECK(std::isfinite(w) && w >= 0.0, what, ": weight ", w,
                  " is not a finite non-negative number");
  const double sum = numpy_sum(weights.data(), weights.size());
  MH_CORE_CHECK(sum > 0.0, what, ": the weights sum to 0; HINT: give at least one positive weight");
  std::vector<double> out(weights.size());
  for (size_t i = 0; i < weights.size(); ++i) out[i] = weights[i] / sum;
  return out;
}

}  // namespace megahost::core::data
