#include "nfc.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <iterator>
#include <vector>

#include "bpe_model.h"  // append_utf8
#include "unicode_classes.h"

namespace megahost::hf {
namespace {

struct CccRange {
  uint32_t lo, hi;
  uint8_t ccc;
};
struct Decomposition {
  uint32_t cp, first, second;  // second 0: a singleton
};
struct Composition {
  uint32_t first, second, composite;
};
struct Range {
  uint32_t lo, hi;
};

constexpr CccRange kCombiningClass[] = {
#define NFC_COMBINING_CLASS
#include "nfc_tables.inc"
#undef NFC_COMBINING_CLASS
};
constexpr Decomposition kDecomposition[] = {
#define NFC_DECOMPOSITION
#include "nfc_tables.inc"
#undef NFC_DECOMPOSITION
};
constexpr Composition kComposition[] = {
#define NFC_COMPOSITION
#include "nfc_tables.inc"
#undef NFC_COMPOSITION
};
constexpr Range kMaybeChanged[] = {
#define NFC_MAYBE_CHANGED
#include "nfc_tables.inc"
#undef NFC_MAYBE_CHANGED
};

// Hangul syllables, by formula (Unicode §3.12).
constexpr uint32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr uint32_t kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount, kSCount = kLCount * kNCount;

// A malformed byte b is carried as kRawByte | b: not a code point, class 0, composes with nothing.
constexpr uint32_t kRawByte = 0x80000000u;

uint8_t ccc(uint32_t cp) {
  if (cp < 0x300 || cp >= kRawByte) return 0;
  const CccRange* it = std::lower_bound(std::begin(kCombiningClass), std::end(kCombiningClass), cp,
                                        [](const CccRange& r, uint32_t v) { return r.hi < v; });
  return (it != std::end(kCombiningClass) && it->lo <= cp) ? it->ccc : 0;
}

bool maybe_changed(uint32_t cp) {
  if (cp < 0x300) return false;
  const Range* it = std::lower_bound(std::begin(kMaybeChanged), std::end(kMaybeChanged), cp,
                                     [](const Range& r, uint32_t v) { return r.hi < v; });
  return it != std::end(kMaybeChanged) && it->lo <= cp;
}

void decompose(uint32_t cp, std::vector<uint32_t>& out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    const uint32_t s = cp - kSBase;
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount != 0) out.push_back(kTBase + s % kTCount);
    return;
  }
  const Decomposition* it = std::lower_bound(std::begin(kDecomposition), std::end(kDecomposition), cp,
                                             [](const Decomposition& d, uint32_t v) { return d.cp < v; });
  if (it == std::end(kDecomposition) || it->cp != cp) {
    out.push_back(cp);
    return;
  }
  decompose(it->first, out);
  if (it->second != 0) decompose(it->second, out);
}

// The primary composite of (first, second), or 0.
uint32_t compose(uint32_t first, uint32_t second) {
  if (first >= kLBase && first < kLBase + kLCount && second >= kVBase && second < kVBase + kVCount)
    return kSBase + ((first - kLBase) * kVCount + (second - kVBase)) * kTCount;
  if (first >= kSBase && first < kSBase + kSCount && (first - kSBase) % kTCount == 0 && second > kTBase &&
      second < kTBase + kTCount)
    return first + (second - kTBase);
  const Composition key{first, second, 0};
  const Composition* it = std::lower_bound(std::begin(kComposition), std::end(kComposition), key,
                                           [](const Composition& a, const Composition& b) {
                                             return a.first != b.first ? a.first < b.first : a.second < b.second;
                                           });
  return (it != std::end(kComposition) && it->first == first && it->second == second) ? it->composite : 0;
}

}  // namespace

void nfc(std::string_view text, std::string& out) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  bool fast = true;
  for (size_t p = 0; p < text.size() && fast;) {
    if (s[p] < 0x80) {
      ++p;
      continue;
    }
    uint32_t cp;
    p += decode_utf8(s + p, text.size() - p, &cp);
    if (cp != kInvalidCodePoint && maybe_changed(cp)) fast = false;
  }
  if (fast) {
    out.append(text);
    return;
  }

  // 1. Canonical decomposition.
  thread_local std::vector<uint32_t> cps;
  cps.clear();
  for (size_t p = 0; p < text.size();) {
    uint32_t cp;
    const size_t len = decode_utf8(s + p, text.size() - p, &cp);
    if (cp == kInvalidCodePoint) cps.push_back(kRawByte | s[p]);
    else decompose(cp, cps);
    p += len;
  }
  // 2. Canonical ordering: each run of non-starters sorted by class, stably.
  for (size_t i = 0; i < cps.size();) {
    if (ccc(cps[i]) == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < cps.size() && ccc(cps[j]) != 0) ++j;
    std::stable_sort(cps.begin() + static_cast<std::ptrdiff_t>(i), cps.begin() + static_cast<std::ptrdiff_t>(j),
                     [](uint32_t a, uint32_t b) { return ccc(a) < ccc(b); });
    i = j;
  }
  // 3. Canonical composition: a character joins the last starter unless a character between
  // them is blocking (same or higher class, or a starter).
  size_t starter = SIZE_MAX, w = 0;
  int last_ccc = -1;
  for (size_t i = 0; i < cps.size(); ++i) {
    const uint32_t c = cps[i];
    const int cc = ccc(c);
    if (starter != SIZE_MAX && c < kRawByte && cps[starter] < kRawByte &&
        (last_ccc < cc || (last_ccc == 0 && w == starter + 1))) {
      if (const uint32_t composite = compose(cps[starter], c)) {
        cps[starter] = composite;
        continue;
      }
    }
    if (cc == 0) starter = w;
    last_ccc = cc;
    cps[w++] = c;
  }
  cps.resize(w);
  for (uint32_t c : cps) {
    if (c >= kRawByte) out.push_back(static_cast<char>(c & 0xFF));
    else append_utf8(c, out);
  }
}

}  // namespace megahost::hf
