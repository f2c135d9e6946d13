// MD5 as specified in RFC 1321: 64-byte blocks, four rounds of 16 steps over (a, b, c, d).
#include "megahost/core/data/md5.h"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>

namespace megahost::core::data {

namespace {

uint32_t rotl(uint32_t x, uint32_t c) { return (x << c) | (x >> (32 - c)); }

// Per-step shift amounts (RFC 1321, section 3.4).
constexpr uint32_t kShift[64] = {7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22,
                                 5, 9,  14, 20, 5, 9,  14, 20, 5, 9,  14, 20, 5, 9,  14, 20,
                                 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23,
                                 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21};

struct Table {
  uint32_t k[64];
  Table() {  // K[i] = floor(2^32 * |sin(i + 1)|)
    for (int i = 0; i < 64; ++i) k[i] = static_cast<uint32_t>(std::floor(4294967296.0 * std::fabs(std::sin(i + 1.0))));
  }
};

void block(uint32_t h[4], const unsigned char* p) {
  static const Table t;
  uint32_t m[16];
  for (int i = 0; i < 16; ++i)
    m[i] = uint32_t(p[4 * i]) | uint32_t(p[4 * i + 1]) << 8 | uint32_t(p[4 * i + 2]) << 16 | uint32_t(p[4 * i + 3]) << 24;
  uint32_t a = h[0], b = h[1], c = h[2], d = h[3];
  for (int i = 0; i < 64; ++i) {
    uint32_t f;
    int g;
    if (i < 16) {
      f = (b & c) | (~b & d);
      g = i;
    } else if (i < 32) {
      f = (d & b) | (~d & c);
      g = (5 * i + 1) % 16;
    } else if (i < 48) {
      f = b ^ c ^ d;
      g = (3 * i + 5) % 16;
    } else {
      f = c ^ (b | ~d);
      g = (7 * i) % 16;
    }
    const uint32_t next = b + rotl(a + f + t.k[i] + m[g], kShift[i]);
    a = d;
    d = c;
    c = b;
    b = next;
  }
  h[0] += a;
  h[1] += b;
  h[2] += c;
  h[3] += d;
}

}  // namespace

std::string md5_hex(std::string_view bytes) {
  uint32_t h[4] = {0x67452301u, 0xefcdab89u, 0x98badcfeu, 0x10325476u};
  const size_t n = bytes.size();
  size_t i = 0;
  for (; i + 64 <= n; i += 64) block(h, reinterpret_cast<const unsigned char*>(bytes.data()) + i);
  // Padding: 0x80, zeros to 56 mod 64, then the bit length (little-endian 64-bit).
  unsigned char tail[128] = {};
  const size_t rest = n - i;
  std::memcpy(tail, bytes.data() + i, rest);
  tail[rest] = 0x80;
  const size_t total = rest + 1 + 8 <= 64 ? 64 : 128;
  const uint64_t bits = static_cast<uint64_t>(n) * 8;
  for (int b = 0; b < 8; ++b) tail[total - 8 + b] = static_cast<unsigned char>(bits >> (8 * b));
  for (size_t off = 0; off < total; off += 64) block(h, tail + off);
  char hex[33];
  for (int w = 0; w < 4; ++w)
    for (int b = 0; b < 4; ++b) std::snprintf(hex + 8 * w + 2 * b, 3, "%02x", (h[w] >> (8 * b)) & 0xffu);
  return std::string(hex, 32);
}

}  // namespace megahost::core::data
