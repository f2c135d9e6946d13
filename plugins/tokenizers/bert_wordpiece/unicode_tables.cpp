#include "unicode_tables.h"

#include <algorithm>
#include <array>
#include <iterator>

namespace megahost::tokenizers::bert {
namespace {

struct FlagRange {
  uint32_t lo, hi;
  uint8_t flags;
};
struct LowerEntry {
  uint32_t cp, l0, l1;  // l1 == 0: lower-cases to one code point
};
struct DecompEntry {
  uint32_t cp;
  uint8_t n;
  uint32_t d[4];
};
struct CccRange {
  uint32_t lo, hi;
  uint8_t ccc;
};

#include "unicode_tables.inc"

// Last range with lo <= cp, if it reaches cp.
template <typename R, size_t N>
const R* find_range(const R (&ranges)[N], uint32_t cp) {
  const R* it = std::upper_bound(std::begin(ranges), std::end(ranges), cp,
                                 [](uint32_t v, const R& r) { return v < r.lo; });
  if (it == std::begin(ranges)) return nullptr;
  --it;
  return it->hi >= cp ? it : nullptr;
}

template <typename E, size_t N>
const E* find_entry(const E (&entries)[N], uint32_t cp) {
  const E* it = std::lower_bound(std::begin(entries), std::end(entries), cp,
                                 [](const E& e, uint32_t v) { return e.cp < v; });
  return (it != std::end(entries) && it->cp == cp) ? it : nullptr;
}

// Flags of the Basic Multilingual Plane as a flat table (64 KiB, built once): one load for
// almost all text instead of a binary search.
struct BmpFlags {
  std::array<uint8_t, 0x10000> flags{};
  BmpFlags() {
    for (const FlagRange& r : kFlagRanges) {
      if (r.lo >= 0x10000) break;
      for (uint32_t cp = r.lo; cp <= r.hi && cp < 0x10000; ++cp) flags[cp] = r.flags;
    }
  }
};

// Hangul syllables decompose by formula (Unicode 3.12), not by table.
constexpr uint32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr uint32_t kTCount = 28, kNCount = 21 * 28, kSCount = 19 * 21 * 28;

}  // namespace

uint8_t char_flags(uint32_t cp) {
  static const BmpFlags bmp;  // thread-safe one-time init
  if (cp < 0x10000) return bmp.flags[cp];
  const FlagRange* r = find_range(kFlagRanges, cp);
  return r != nullptr ? r->flags : 0;
}

void append_lower(uint32_t cp, std::vector<uint32_t>& out) {
  if (cp < 0x80) {
    out.push_back(cp >= 'A' && cp <= 'Z' ? cp + 32 : cp);
    return;
  }
  const LowerEntry* e = find_entry(kLowerMap, cp);
  if (e == nullptr) {
    out.push_back(cp);
    return;
  }
  out.push_back(e->l0);
  if (e->l1 != 0) out.push_back(e->l1);
}

void append_decomposition(uint32_t cp, std::vector<uint32_t>& out) {
  if (cp < 0xC0) {  // nothing below U+00C0 decomposes
    out.push_back(cp);
    return;
  }
  if (cp >= kSBase && cp < kSBase + kSCount) {
    const uint32_t s = cp - kSBase;
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount != 0) out.push_back(kTBase + s % kTCount);
    return;
  }
  const DecompEntry* e = find_entry(kDecomp, cp);
  if (e == nullptr) {
    out.push_back(cp);
    return;
  }
  out.insert(out.end(), e->d, e->d + e->n);
}

uint8_t combining_class(uint32_t cp) {
  if (cp < 0x300) return 0;
  const CccRange* r = find_range(kCccRanges, cp);
  return r != nullptr ? r->ccc : 0;
}

}  // namespace megahost::tokenizers::bert
