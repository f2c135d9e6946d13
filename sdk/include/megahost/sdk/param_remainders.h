// megahost SDK — an fp32 master weight kept as the bf16 model parameter plus a 16-bit remainder
// (Megatron's store_param_remainders, ABI 1.8 mh_optimizer_step_args.param_remainders): 16 bits
// per parameter instead of a separate 32-bit master, and still the exact fp32 value.
//
//   split:    hi = upper 16 bits of the fp32 value, lo = lower 16 bits;
//             hi += 1 when bit 15 of lo is set (the bf16 parameter is the value rounded half away
//             from zero: round-to-nearest-even differs only on exact ties); a NaN stores a quiet
//             NaN and lo = 0. remainder = lo as int16 (negative exactly when hi was rounded up).
//   compose:  bits = ((hi - (remainder < 0)) << 16) | (uint16) remainder.
//
// Header-only torch ops (any device): the host composes masters for checkpoints, the optimizer
// plugin for its non-fused updates; the fused CUDA AdamW does the same in registers.
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <cstdint>

namespace megahost::sdk {

namespace detail {
// Elements per piece: the int64 temporaries stay near 100 MB whatever the tensor's size.
constexpr int64_t kRemainderPiece = int64_t(1) << 23;

inline at::Tensor compose_piece(const at::Tensor& bf16, const at::Tensor& remainder) {
  // int64 arithmetic: no signed overflow on the way to the 32 bits.
  const at::Tensor lo = remainder.to(at::kLong).bitwise_and(0xFFFF);
  const at::Tensor hi = bf16.view(at::kShort).to(at::kLong).bitwise_and(0xFFFF) - lo.ge(0x8000).to(at::kLong);
  at::Tensor bits = hi.bitwise_and(0xFFFF).mul(65536).add(lo);  // [0, 2^32)
  bits = bits - bits.ge(int64_t(1) << 31).to(at::kLong).mul(int64_t(1) << 32);  // as int32
  return bits.to(at::kInt).view(at::kFloat);
}

inline void split_piece(const at::Tensor& value, const at::Tensor& bf16, const at::Tensor& remainder) {
  const at::Tensor bits = value.view(at::kInt).to(at::kLong).bitwise_and(int64_t(0xFFFFFFFF));
  const at::Tensor nan = value.isnan();
  at::Tensor lo = bits.bitwise_and(0xFFFF);
  at::Tensor hi = bits.div(65536, "floor") + lo.ge(0x8000).to(at::kLong);  // inf has lo = 0: stays inf
  hi = at::where(nan, hi.bitwise_and(0x8000).bitwise_or(0x7FC0), hi);
  lo = at::where(nan, at::zeros_like(lo), lo);
  auto as_int16 = [](const at::Tensor& x) {  // [0, 65536) -> the same 16 bits as int16
    return (x - x.ge(0x8000).to(at::kLong).mul(65536)).to(at::kShort);
  };
  bf16.view(at::kShort).copy_(as_int16(hi));
  remainder.copy_(as_int16(lo));
}
}  // namespace detail

// bf16 [*] + int16 [*] (same shape, contiguous) -> float32 [*], the exact master value.
inline at::Tensor compose_fp32(const at::Tensor& bf16, const at::Tensor& remainder) {
  TORCH_CHECK(bf16.scalar_type() == at::kBFloat16 && remainder.scalar_type() == at::kShort &&
                  bf16.sizes() == remainder.sizes() && bf16.is_contiguous() && remainder.is_contiguous(),
              "compose_fp32: a contiguous bf16 tensor and an int16 remainder of the same shape");
  at::Tensor out = at::empty(bf16.sizes(), bf16.options().dtype(at::kFloat));
  const at::Tensor b = bf16.reshape({-1}), r = remainder.reshape({-1}), o = out.view({-1});
  for (int64_t i = 0; i < b.numel(); i += detail::kRemainderPiece) {
    const int64_t n = std::min(detail::kRemainderPiece, b.numel() - i);
    o.narrow(0, i, n).copy_(detail::compose_piece(b.narrow(0, i, n), r.narrow(0, i, n)));
  }
  return out;
}

// float32 [*] -> writes bf16 [*] and int16 [*] (same shape, contiguous; e.g. the live parameter
// and its remainder) so that compose_fp32 gives `value` back bit for bit (a NaN: a quiet NaN).
inline void split_fp32(const at::Tensor& value, const at::Tensor& bf16, const at::Tensor& remainder) {
  TORCH_CHECK(value.scalar_type() == at::kFloat && bf16.scalar_type() == at::kBFloat16 &&
                  remainder.scalar_type() == at::kShort && value.sizes() == bf16.sizes() &&
                  value.sizes() == remainder.sizes() && bf16.is_contiguous() && remainder.is_contiguous(),
              "split_fp32: a float32 value, a contiguous bf16 tensor and an int16 remainder of one shape");
  const at::Tensor v = value.contiguous().reshape({-1}), b = bf16.view({-1}), r = remainder.view({-1});
  for (int64_t i = 0; i < v.numel(); i += detail::kRemainderPiece) {
    const int64_t n = std::min(detail::kRemainderPiece, v.numel() - i);
    detail::split_piece(v.narrow(0, i, n), b.narrow(0, i, n), r.narrow(0, i, n));
  }
}

}  // namespace megahost::sdk
