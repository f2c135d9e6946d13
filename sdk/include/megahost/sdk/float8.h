// megahost SDK — FP8 E4M3 ("e4m3fn": 1 sign, 4 exponent bits with bias 7, 3 mantissa bits; no
// infinities, 0x7F / 0xFF are NaN, largest finite 448), the format of Megatron's
// --exp-avg-dtype fp8 moments. Scalar codec, used where libtorch has no float8 dtype (1.13);
// libtorch >= 2.1 converts natively with the same rounding (compat.h picks).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace megahost::sdk {

constexpr float kE4M3Max = 448.0f;

// float -> E4M3 bits, rounding to nearest even; beyond 464 (halfway to the next power step) and
// NaN give NaN, as libtorch's float8_e4m3fn conversion does.
inline uint8_t float_to_e4m3(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  const uint8_t sign = static_cast<uint8_t>((bits >> 24) & 0x80u);
  const float a = std::fabs(x);
  if (std::isnan(a) || a > 464.0f) return sign | 0x7F;
  if (a < 0.015625f) {  // below the smallest normal 2^-6: subnormals m * 2^-9, m in 0..7
    const float m = std::nearbyint(a * 512.0f);  // exact scaling; the default mode is to-nearest-even
    return sign | static_cast<uint8_t>(m);      // m == 8 is the smallest normal's code 0x08
  }
  int e = 0;
  const float f = std::frexp(a, &e);                   // a = f * 2^e, f in [0.5, 1)
  float m = std::nearbyint((f * 2.0f - 1.0f) * 8.0f);  // the 3 mantissa bits, exact before rounding
  int exponent = e - 1 + 7;
  if (m == 8.0f) m = 0.0f, ++exponent;
  if (exponent > 15 || (exponent == 15 && m == 7.0f)) return sign | 0x7F;  // only 464 < a reaches this
  return sign | static_cast<uint8_t>((exponent << 3) | static_cast<int>(m));
}

inline float e4m3_to_float(uint8_t c) {
  const int exponent = (c >> 3) & 0xF, m = c & 7;
  float a;
  if (exponent == 15 && m == 7)
    a = std::nanf("");
  else if (exponent == 0)
    a = std::ldexp(static_cast<float>(m), -9);
  else
    a = std::ldexp(1.0f + static_cast<float>(m) / 8.0f, exponent - 7);
  return (c & 0x80) ? -a : a;
}

}  // namespace megahost::sdk
