// Basic optimizers — Megatron's fp16 and fp8 optimizer states (--exp-avg-dtype /
// --exp-avg-sq-dtype fp16 | fp8, Transformer Engine FusedAdam's scaled states): a state tensor
// stored in float16, or in FP8 E4M3 bits (uint8), with one float32 scale per tensor:
//   value = float(stored) * scale.
// The update works on float32 values; storing them back sets scale = max|value| / range, so the
// largest magnitude lands on the format's range (fp16: 65504 / 2, fp8: 448), and rounds each
// value / scale to nearest (a zero tensor keeps scale 0 and stores zeros).
#pragma once

#include <ATen/ATen.h>

namespace megahost::optim {

// Storage dtypes of the scaled states: kHalf (fp16) and kByte (E4M3 bits).
bool is_scaled_dtype(at::ScalarType stored);
// The scale of a fresh (all-zero) state: float32 [1] on the state's device.
at::Tensor initial_scale(const at::Tensor& stored);
// float32 values of a scaled state, same shape.
at::Tensor unscale(const at::Tensor& stored, const at::Tensor& scale);
// Stores float32 values into stored (fp16 or E4M3 bits) and sets scale; stays on the device (no
// host sync).
void store_scaled(const at::Tensor& values, at::Tensor& stored, at::Tensor& scale);

}  // namespace megahost::optim
