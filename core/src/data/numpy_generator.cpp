// numpy's SeedSequence and PCG64 (O'Neill's permuted congruential generator, 128-bit state,
// XSL-RR output) with numpy's bounded draw, as numpy/random/{bit_generator.pyx,_pcg64.pyx,
// src/distributions} define them.
#include "megahost/core/data/numpy_generator.h"

#include <cstddef>
#include <limits>

namespace megahost::core::data {

namespace {

// SeedSequence's hash constants (Melissa O'Neill's seed_seq_fe).
constexpr uint32_t kInitA = 0x43b0d7e5u, kMultA = 0x931e8875u;
constexpr uint32_t kInitB = 0x8b51f9ddu, kMultB = 0x58f38dedu;
constexpr uint32_t kMixMultL = 0xca01f9ddu, kMixMultR = 0x4973f715u;
constexpr int kXShift = 16;
constexpr int kPoolSize = 4;

uint32_t hashmix(uint32_t value, uint32_t& hash_const) {
  value ^= hash_const;
  hash_const *= kMultA;
  value *= hash_const;
  value ^= value >> kXShift;
  return value;
}

uint32_t mix(uint32_t x, uint32_t y) {
  uint32_t r = kMixMultL * x - kMixMultR * y;
  r ^= r >> kXShift;
  return r;
}

constexpr unsigned __int128 kPcgMultiplier =
    (static_cast<unsigned __int128>(2549297995355413924ULL) << 64) | 4865540595714422341ULL;

}  // namespace

std::vector<uint64_t> numpy_seed_sequence_state(uint32_t seed, int n_words64) {
  // The entropy as 32-bit words: an integer below 2^32 is one word (0 included).
  const uint32_t entropy[1] = {seed};
  uint32_t pool[kPoolSize];
  uint32_t hash_const = kInitA;
  for (int i = 0; i < kPoolSize; ++i) pool[i] = hashmix(i < 1 ? entropy[i] : 0u, hash_const);
  for (int src = 0; src < kPoolSize; ++src)
    for (int dst = 0; dst < kPoolSize; ++dst)
      if (src != dst) pool[dst] = mix(pool[dst], hashmix(pool[src], hash_const));
  // generate_state: 32-bit words cycling over the pool, paired little-endian into 64-bit ones.
  std::vector<uint64_t> out(static_cast<size_t>(n_words64));
  uint32_t hb = kInitB;
  for (int i = 0; i < 2 * n_words64; ++i) {
    uint32_t v = pool[i % kPoolSize];
    v ^= hb;
    hb *= kMultB;
    v *= hb;
    v ^= v >> kXShift;
    if (i % 2 == 0) out[i / 2] = v;
    else out[i / 2] |= static_cast<uint64_t>(v) << 32;
  }
  return out;
}

NumpyPcg64::NumpyPcg64(uint32_t seed) {
  const std::vector<uint64_t> s = numpy_seed_sequence_state(seed, 4);
  const unsigned __int128 init_state = (static_cast<unsigned __int128>(s[0]) << 64) | s[1];
  const unsigned __int128 init_seq = (static_cast<unsigned __int128>(s[2]) << 64) | s[3];
  // pcg_setseq_128_srandom_r
  state_ = 0;
  inc_ = (init_seq << 1) | 1;
  state_ = state_ * kPcgMultiplier + inc_;
  state_ += init_state;
  state_ = state_ * kPcgMultiplier + inc_;
}

uint64_t NumpyPcg64::next_uint64() {
  state_ = state_ * kPcgMultiplier + inc_;
  const uint64_t xored = static_cast<uint64_t>(state_ >> 64) ^ static_cast<uint64_t>(state_);
  const unsigned rot = static_cast<unsigned>(state_ >> 122);
  return (xored >> rot) | (xored << ((64u - rot) & 63u));
}

uint32_t NumpyPcg64::next_uint32() {
  if (has_uint32_) {
    has_uint32_ = false;
    return uinteger_;
  }
  const uint64_t next = next_uint64();
  has_uint32_ = true;
  uinteger_ = static_cast<uint32_t>(next >> 32);
  return static_cast<uint32_t>(next);
}

int32_t NumpyPcg64::integer_int32(int32_t low, int32_t high) {
  // random_bounded_uint32_fill's Lemire path with rng = high - low - 1 (0 and 2^32 - 1 are special
  // cases there; neither arises for a non-empty int32 range below 2^31).
  const uint32_t rng = static_cast<uint32_t>(static_cast<int64_t>(high) - low - 1);
  if (rng == 0) return low;
  const uint32_t rng_excl = rng + 1;
  uint64_t m = static_cast<uint64_t>(next_uint32()) * rng_excl;
  uint32_t leftover = static_cast<uint32_t>(m);
  if (leftover < rng_excl) {
    const uint32_t threshold = (std::numeric_limits<uint32_t>::max() - rng) % rng_excl;
    while (leftover < threshold) {
      m = static_cast<uint64_t>(next_uint32()) * rng_excl;
      leftover = static_cast<uint32_t>(m);
    }
  }
  return low + static_cast<int32_t>(m >> 32);
}

}  // namespace megahost::core::data
