#include "unicode_classes.h"

#include <algorithm>
#include <array>
#include <iterator>

namespace megahost::tokenizers {
namespace {

struct Range {
  uint32_t lo, hi;
  CharClass cls;
};

constexpr Range kRanges[] = {
#include "unicode_classes.inc"
};

CharClass lookup_ranges(uint32_t cp) {
  // First range whose hi >= cp; cp belongs to it when lo <= cp.
  const Range* it = std::lower_bound(std::begin(kRanges), std::end(kRanges), cp,
                                     [](const Range& r, uint32_t v) { return r.hi < v; });
  return (it != std::end(kRanges) && it->lo <= cp) ? it->cls : kOther;
}

// The Basic Multilingual Plane as a flat table (64 KiB, built once): almost all text lives
// there, so the common case is one load instead of a binary search.
struct BmpTable {
  std::array<uint8_t, 0x10000> cls{};
  BmpTable() {
    for (const Range& r : kRanges) {
      if (r.lo >= 0x10000) break;
      for (uint32_t cp = r.lo; cp <= r.hi && cp < 0x10000; ++cp) cls[cp] = r.cls;
    }
  }
};

}  // namespace

CharClass char_class(uint32_t cp) {
  static const BmpTable bmp;  // thread-safe one-time init (C++11 magic static)
  if (cp < 0x10000) return static_cast<CharClass>(bmp.cls[cp]);
  return lookup_ranges(cp);
}

}  // namespace megahost::tokenizers
