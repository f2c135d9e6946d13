// megahost SDK — stochastic rounding of float32 to bf16, the bit-level part shared by the host
// (stochastic_round.h, torch ops) and the CUDA kernels (the fused AdamW's bf16 moments).
//
// A float32 value's bits u round up to the next bf16 with probability lo16(u) / 65536: add 16
// random bits to u and keep the upper half. Within a binade the bits are linear in the value, so
// the expected result is the value itself (round-to-nearest would keep a moment that decays by
// 0.1% a step, Adam's second moment with beta2 = 0.999, at its old value forever).
//
// The random bits are a hash of the value's bits, its index in the tensor and a salt (the step
// and which state): deterministic, the same on every device, fresh at every step, and
// independent between elements that hold the same value (a moment that starts at one value
// everywhere would otherwise round the same way everywhere).
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define MH_SR_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define MH_SR_HOST_DEVICE inline
#endif

namespace megahost::sdk::stochastic_round {

// A 32-bit integer hash with good avalanche (two multiply-xorshift rounds).
MH_SR_HOST_DEVICE uint32_t mix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352du;
  x ^= x >> 15;
  x *= 0x846ca68bu;
  x ^= x >> 16;
  return x;
}

// The salt of one optimizer step's rounding of one state (state: 0 = exp_avg, 1 = exp_avg_sq, ...).
MH_SR_HOST_DEVICE uint32_t salt(int64_t step, uint32_t state) {
  return mix32(mix32(static_cast<uint32_t>(step)) ^ (0x9e3779b9u * (state + 1)));
}

// The bf16 bits of float32 bits u (element `index` of its tensor), rounded stochastically. A NaN
// gives a quiet NaN of its sign; +-inf stays; values within an ulp of the largest bf16 may round
// to inf, as rounding up does.
MH_SR_HOST_DEVICE uint16_t bf16_bits(uint32_t u, uint32_t salt, int64_t index) {
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>(((u >> 16) & 0x8000u) | 0x7fc0u);
  const uint32_t r = mix32(u ^ mix32(static_cast<uint32_t>(index) ^ salt)) & 0xffffu;
  return static_cast<uint16_t>((u + r) >> 16);
}

}  // namespace megahost::sdk::stochastic_round
