// megahost SDK — Megatron's fp16 and fp8 optimizer states (--exp-avg-dtype / --exp-avg-sq-dtype
// fp16 | fp8, Transformer Engine FusedAdam's scaled states): a state tensor stored in float16, or
// in FP8 E4M3 bits (uint8), with one float32 scale per tensor:
//   value = float(stored) * scale.
// The update works on float32 values; storing them back sets scale = max|value| / range, so the
// largest magnitude lands on the format's range (fp16: 65504 / 2, fp8: 448), and rounds each
// value * (1 / scale) to nearest (a zero tensor gets scale 0 and stores zeros).
//
// Header-only torch ops (any device, no host sync): the optimizer plugin's non-fused updates and
// its checkpoint copies; the fused CUDA AdamW does the same in registers (kernels/fused_adamw.cu).
#pragma once

#include <ATen/ATen.h>

#include "megahost/sdk/compat.h"

namespace megahost::sdk {

// Storage dtypes of the scaled states: kHalf (fp16) and kByte (E4M3 bits).
inline bool is_scaled_dtype(at::ScalarType stored) { return stored == at::kHalf || stored == at::kByte; }

// Transformer Engine's ranges: half of fp16's largest value (headroom for the next update's growth
// before the scale follows), E4M3's largest value.
inline double scaled_range(at::ScalarType stored) { return stored == at::kHalf ? 65504.0 / 2 : double(kE4M3Max); }

// The scale of a fresh (all-zero) state: float32 [1] on the state's device.
inline at::Tensor initial_scale(const at::Tensor& stored) { return at::ones({1}, stored.options().dtype(at::kFloat)); }

// float32 values of a scaled state, same shape.
inline at::Tensor unscale(const at::Tensor& stored, const at::Tensor& scale) {
  at::Tensor values = stored.scalar_type() == at::kByte ? compat::from_e4m3_bits(stored) : stored.to(at::kFloat);
  return values.mul_(scale);
}

// Stores float32 values into stored (fp16 or E4M3 bits) and sets scale.
inline void store_scaled(const at::Tensor& values, const at::Tensor& stored, const at::Tensor& scale) {
  if (values.numel() == 0) return;
  const at::Tensor absmax = values.abs().max().reshape({1});
  scale.copy_(absmax / scaled_range(stored.scalar_type()));
  const at::Tensor inverse = at::where(scale > 0, scale.reciprocal(), at::zeros_like(scale));
  const at::Tensor scaled = values * inverse;  // |x| <= range
  stored.copy_(stored.scalar_type() == at::kByte ? compat::to_e4m3_bits(scaled) : scaled.to(at::kHalf));
}

}  // namespace megahost::sdk
