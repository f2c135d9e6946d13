// Code-point classes for GPT-2's pre-tokenizer: letter (\p{L}), number (\p{N}), whitespace
// (\s = Unicode White_Space) or other. Data: unicode_classes.inc, from gen_unicode_classes.py.
#pragma once

#include <cstddef>
#include <cstdint>

namespace megahost::tokenizers {

enum CharClass : uint8_t { kOther = 0, kLetter = 1, kNumber = 2, kSpace = 3 };

// Class of a code point; anything past U+10FFFF is kOther. [thread-safe]
CharClass char_class(uint32_t cp);

// Decodes one UTF-8 code point at s[0..n) (n >= 1). Returns its byte length (1..4) and writes
// the code point. A malformed or truncated sequence counts as one byte of class kOther
// (written as cp = 0xFFFFFFFF), so arbitrary bytes still split and round-trip.
inline size_t decode_utf8(const unsigned char* s, size_t n, uint32_t* cp) {
  const unsigned char b0 = s[0];
  if (b0 < 0x80) {
    *cp = b0;
    return 1;
  }
  size_t len;
  uint32_t v, min;
  if ((b0 & 0xE0) == 0xC0) len = 2, v = b0 & 0x1F, min = 0x80;
  else if ((b0 & 0xF0) == 0xE0) len = 3, v = b0 & 0x0F, min = 0x800;
  else if ((b0 & 0xF8) == 0xF0) len = 4, v = b0 & 0x07, min = 0x10000;
  else len = 0, v = 0, min = 0;
  if (len == 0 || len > n) {
    *cp = 0xFFFFFFFFu;
    return 1;
  }
  for (size_t k = 1; k < len; ++k) {
    if ((s[k] & 0xC0) != 0x80) {
      *cp = 0xFFFFFFFFu;
      return 1;
    }
    v = (v << 6) | (s[k] & 0x3F);
  }
  // Overlong forms, surrogates and values past U+10FFFF are not valid UTF-8.
  if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) {
    *cp = 0xFFFFFFFFu;
    return 1;
  }
  *cp = v;
  return len;
}

}  // namespace megahost::tokenizers
