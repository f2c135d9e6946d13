// megahost SDK — float32 -> bf16 with stochastic rounding as torch ops (any device); the bit rule
// and the hash are in stochastic_round_bits.h, which the CUDA AdamW uses in registers.
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <cstdint>

#include "megahost/sdk/stochastic_round_bits.h"

namespace megahost::sdk::stochastic_round {

namespace detail {
constexpr int64_t kPiece = int64_t(1) << 23;  // elements per piece: int64 temporaries near 64 MB
constexpr int64_t kLow32 = int64_t{0xFFFFFFFF};

// x * c mod 2^32 for int64 x in [0, 2^32): two 16-bit halves of c, so no product passes 2^48.
inline at::Tensor mul32(const at::Tensor& x, uint32_t c) {
  const at::Tensor lo = x.mul(static_cast<int64_t>(c & 0xFFFFu));
  const at::Tensor hi = x.mul(static_cast<int64_t>(c >> 16)).bitwise_and(0xFFFF).mul(65536);
  return lo.add(hi).bitwise_and(kLow32);
}
inline at::Tensor shr(const at::Tensor& x, int64_t bits) { return x.div(int64_t(1) << bits, "floor"); }

// mix32 of int64 values in [0, 2^32), elementwise.
inline at::Tensor mix32(at::Tensor x) {
  x = x.bitwise_xor(shr(x, 16));
  x = mul32(x, 0x7feb352du);
  x = x.bitwise_xor(shr(x, 15));
  x = mul32(x, 0x846ca68bu);
  return x.bitwise_xor(shr(x, 16));
}

// value [n] float32 holding elements first .. first + n of its tensor -> out [n] bf16, rounded by
// the element bits' low (half 0) or high (half 1) 16 bits.
inline void round_piece(const at::Tensor& value, int64_t first, uint32_t salt, int half, const at::Tensor& out) {
  const at::Tensor u = value.view(at::kInt).to(at::kLong).bitwise_and(kLow32);
  const at::Tensor index = at::arange(first, first + value.numel(), value.options().dtype(at::kLong));
  const at::Tensor bits = mix32(index.bitwise_and(kLow32).bitwise_xor(static_cast<int64_t>(salt)));
  const at::Tensor r = (half == 0 ? bits : shr(bits, 16)).bitwise_and(0xFFFF);
  at::Tensor hi = shr(u.add(r), 16).bitwise_and(0xFFFF);
  hi = at::where(value.isnan(), shr(u, 16).bitwise_and(0x8000).bitwise_or(0x7FC0), hi);
  out.view(at::kShort).copy_(hi.sub(hi.ge(0x8000).to(at::kLong).mul(65536)).to(at::kShort));
}
}  // namespace detail

// float32 [*] -> out bf16 [*] (same shape, contiguous), each element rounded up with probability
// (its distance to the bf16 below) / (the bf16 spacing), by half `half` (0: bits 0-15, 1: bits
// 16-31) of element_bits(salt, first + its flat index) (first: where `value` starts in the whole
// tensor it is a shard of).
inline void to_bf16(const at::Tensor& value, uint32_t salt, int half, const at::Tensor& out, int64_t first = 0) {
  TORCH_CHECK(value.scalar_type() == at::kFloat && out.scalar_type() == at::kBFloat16 &&
                  value.sizes() == out.sizes() && out.is_contiguous(),
              "stochastic_round::to_bf16: a float32 value and a contiguous bf16 output of its shape");
  const at::Tensor v = value.contiguous().reshape({-1}), o = out.view({-1});
  for (int64_t i = 0; i < v.numel(); i += detail::kPiece) {
    const int64_t n = std::min(detail::kPiece, v.numel() - i);
    detail::round_piece(v.narrow(0, i, n), first + i, salt, half, o.narrow(0, i, n));
  }
}

}  // namespace megahost::sdk::stochastic_round
