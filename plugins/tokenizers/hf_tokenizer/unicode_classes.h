// Code-point classes for the split scanners: letter (\p{L}), number (\p{N}), whitespace (\s,
// Unicode White_Space) or other. Data: unicode_classes.inc, written by gen_unicode_classes.py.
#pragma once

#include <cstddef>
#include <cstdint>

namespace megahost::hf {

enum CharClass : uint8_t { kOther = 0, kLetter = 1, kNumber = 2, kSpace = 3 };

// Class of a code point; kInvalidCodePoint and anything past U+10FFFF are kOther. [thread-safe]
CharClass char_class(uint32_t cp);

constexpr uint32_t kInvalidCodePoint = 0xFFFFFFFFu;

// Decodes one UTF-8 code point at s[0..n), n >= 1: returns its length (1..4) and writes it to
// *cp. A malformed, overlong, surrogate or truncated sequence is one byte with
// cp = kInvalidCodePoint, so any byte string still splits (and round-trips when byte-level).
inline size_t decode_utf8(const unsigned char* s, size_t n, uint32_t* cp) {
  const unsigned char b0 = s[0];
  if (b0 < 0x80) {
    *cp = b0;
    return 1;
  }
  size_t len = 0;
  uint32_t v = 0, min = 0;
  if ((b0 & 0xE0) == 0xC0) len = 2, v = b0 & 0x1Fu, min = 0x80;
  else if ((b0 & 0xF0) == 0xE0) len = 3, v = b0 & 0x0Fu, min = 0x800;
  else if ((b0 & 0xF8) == 0xF0) len = 4, v = b0 & 0x07u, min = 0x10000;
  *cp = kInvalidCodePoint;
  if (len == 0 || len > n) return 1;
  for (size_t k = 1; k < len; ++k) {
    if ((s[k] & 0xC0) != 0x80) return 1;
    v = (v << 6) | (s[k] & 0x3Fu);
  }
  if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 1;
  *cp = v;
  return len;
}

// True when every byte of s is part of a well-formed UTF-8 sequence.
inline bool is_valid_utf8(const char* s, size_t n) {
  const auto* u = reinterpret_cast<const unsigned char*>(s);
  for (size_t p = 0; p < n;) {
    uint32_t cp;
    p += decode_utf8(u + p, n - p, &cp);
    if (cp == kInvalidCodePoint) return false;
  }
  return true;
}

}  // namespace megahost::hf
