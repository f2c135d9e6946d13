#include "pretokenizer.h"

#include <cstdint>

#include "unicode_classes.h"

namespace megahost::tokenizers {
namespace {

struct Char {
  CharClass cls;
  size_t len;  // bytes
};

// Class and byte length of the character at p (< n).
inline Char char_at(const unsigned char* s, size_t p, size_t n) {
  const unsigned char b = s[p];
  if (b < 0x80) {
    // ASCII fast path: same answer as the table, without decoding.
    if ((b | 0x20) >= 'a' && (b | 0x20) <= 'z') return {kLetter, 1};
    if (b >= '0' && b <= '9') return {kNumber, 1};
    if (b == ' ' || (b >= '\t' && b <= '\r')) return {kSpace, 1};
    return {kOther, 1};
  }
  uint32_t cp;
  const size_t len = decode_utf8(s + p, n - p, &cp);
  return {char_class(cp), len};
}

// End of the run of characters of class `cls` starting at p. For kOther the run is
// [^\s\p{L}\p{N}]+, i.e. exactly the characters whose class is kOther.
inline size_t run_end(const unsigned char* s, size_t p, size_t n, CharClass cls) {
  while (p < n) {
    const Char c = char_at(s, p, n);
    if (c.cls != cls) break;
    p += c.len;
  }
  return p;
}

}  // namespace

size_t gpt2_next_piece(std::string_view text, size_t pos) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();

  // 's 't 're 've 'm 'll 'd (ASCII apostrophe, lower case only, as in GPT-2).
  if (s[pos] == '\'' && pos + 1 < n) {
    const unsigned char c1 = s[pos + 1];
    if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return pos + 2;
    if (pos + 2 < n) {
      const unsigned char c2 = s[pos + 2];
      if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l'))
        return pos + 3;
    }
  }

  // " ?\p{L}+", " ?\p{N}+", " ?[^\s\p{L}\p{N}]+": one optional U+0020, then a run of one
  // class. The space is taken only when a non-space character follows it.
  if (s[pos] == ' ' && pos + 1 < n) {
    const Char next = char_at(s, pos + 1, n);
    if (next.cls != kSpace) return run_end(s, pos + 1, n, next.cls);
  }
  const Char first = char_at(s, pos, n);
  if (first.cls != kSpace) return run_end(s, pos, n, first.cls);

  // "\s+(?!\S)|\s+": a whitespace run. At the end of the text it is taken whole; before a
  // non-space character the greedy match backs off by one character (so that " word" keeps
  // its space), unless the run is a single character, which the plain \s+ then takes.
  size_t last_start = pos;  // start of the last whitespace character of the run
  size_t end = pos + first.len;
  while (end < n) {
    const Char c = char_at(s, end, n);
    if (c.cls != kSpace) break;
    last_start = end;
    end += c.len;
  }
  if (end == n || last_start == pos) return end;
  return last_start;
}

}  // namespace megahost::tokenizers
