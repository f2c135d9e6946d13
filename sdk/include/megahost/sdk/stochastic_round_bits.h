// megahost SDK — stochastic rounding of float32 to bf16, the bit-level part shared by the host
// (stochastic_round.h, torch ops) and the CUDA kernels (the fused AdamW's bf16 moments).
//
// A float32 value's bits u round up to the next bf16 with probability lo16(u) / 65536: add 16
// random bits to u and keep the upper half. Within a binade the bits are linear in the value, so
// the expected result is the value itself (round-to-nearest would keep a moment that decays by
// 0.1% a step, Adam's second moment with beta2 = 0.999, at its old value forever).
//
// The random bits are a hash of the element's index in its tensor and a salt (the step): 32 bits
// per element, the low half for one moment and the high half for the other. Deterministic, fresh
// at every step, independent between elements, and the same on every device (they do not depend
// on the value, whose last float32 bit may differ between the CUDA kernel and the CPU).
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

// The salt of one optimizer step's rounding.
MH_SR_HOST_DEVICE uint32_t salt(int64_t step) { return mix32(static_cast<uint32_t>(step) * 0x9e3779b9u + 0x7f4a7c15u); }

// 32 random bits for element `index` of a tensor: bits 0-15 round exp_avg, bits 16-31 exp_avg_sq.
MH_SR_HOST_DEVICE uint32_t element_bits(uint32_t salt, int64_t index) {
  return mix32(static_cast<uint32_t>(index) ^ salt);
}

// The bf16 bits of float32 bits u rounded up with probability lo16(u) / 65536, by 16 random bits
// r16. A NaN gives a quiet NaN of its sign; +-inf stays; values within an ulp of the largest bf16
// may round to inf, as rounding up does.
MH_SR_HOST_DEVICE uint16_t bf16_bits(uint32_t u, uint32_t r16) {
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>(((u >> 16) & 0x8000u) | 0x7fc0u);
  return static_cast<uint16_t>((u + (r16 & 0xffffu)) >> 16);
}

}  // namespace megahost::sdk::stochastic_round
