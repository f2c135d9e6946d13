#include "scaled_state.h"

#include "megahost/sdk/compat.h"

namespace megahost::optim {

namespace {
// Transformer Engine's ranges: half of fp16's largest value (headroom for the next update's
// growth before the scale follows), E4M3's largest value.
double range_of(at::ScalarType stored) { return stored == at::kHalf ? 65504.0 / 2 : double(sdk::kE4M3Max); }
}  // namespace

bool is_scaled_dtype(at::ScalarType stored) { return stored == at::kHalf || stored == at::kByte; }

at::Tensor initial_scale(const at::Tensor& stored) {
  return at::ones({1}, stored.options().dtype(at::kFloat));
}

at::Tensor unscale(const at::Tensor& stored, const at::Tensor& scale) {
  at::Tensor values = stored.scalar_type() == at::kByte ? compat::from_e4m3_bits(stored) : stored.to(at::kFloat);
  return values.mul_(scale);
}

void store_scaled(const at::Tensor& values, at::Tensor& stored, at::Tensor& scale) {
  if (values.numel() == 0) return;
  const at::Tensor absmax = values.abs().max().reshape({1});
  scale.copy_(absmax / range_of(stored.scalar_type()));
  const at::Tensor inverse = at::where(scale > 0, scale.reciprocal(), at::zeros_like(scale));
  const at::Tensor scaled = values * inverse;  // [numel] float32, |x| <= range
  stored.copy_(stored.scalar_type() == at::kByte ? compat::to_e4m3_bits(scaled) : scaled.to(at::kHalf));
}

}  // namespace megahost::optim
