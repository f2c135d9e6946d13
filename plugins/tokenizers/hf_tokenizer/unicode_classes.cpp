#include "unicode_classes.h"

#include <algorithm>
#include <array>
#include <iterator>

namespace megahost::hf {
namespace {

struct Range {
  uint32_t lo, hi;
  CharClass cls;
};

constexpr Range kRanges[] = {
#include "unicode_classes.inc"
};

// The Basic Multilingual Plane as a flat 64 KiB table: one load for almost all text; the
// other planes use a binary search over the ranges.
struct BmpTable {
  std::array<uint8_t, 0x10000> cls{};
  BmpTable() {
    for (const Range& r : kRanges)
      for (uint32_t cp = r.lo; cp <= r.hi && cp < 0x10000; ++cp) cls[cp] = r.cls;
  }
};

}  // namespace

CharClass char_class(uint32_t cp) {
  static const BmpTable bmp;  // built once, thread-safe (magic static)
  if (cp < 0x10000) return static_cast<CharClass>(bmp.cls[cp]);
  const Range* it = std::lower_bound(std::begin(kRanges), std::end(kRanges), cp,
                                     [](const Range& r, uint32_t v) { return r.hi < v; });
  return (it != std::end(kRanges) && it->lo <= cp) ? it->cls : kOther;
}

}  // namespace megahost::hf
