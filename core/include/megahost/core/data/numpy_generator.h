// megahost core — numpy.random.default_rng(seed) (SeedSequence + PCG64), bit for bit, for what
// Megatron draws with it: MockGPTLowLevelDataset's document lengths
// (default_rng(0).integers(1, 4096, size=100000, dtype=int32)).
//
// Only the integer seed, the raw 64 / 32-bit outputs and bounded int32 draws (numpy's default:
// Lemire's multiply-and-reject) are here; numpy 1.17+ gives the same stream on every platform.
#pragma once

#include <cstdint>
#include <vector>

namespace megahost::core::data {

// numpy.random.SeedSequence(seed).generate_state(n, uint64) for a non-negative integer seed below
// 2^32 and the default pool of 4 words.
std::vector<uint64_t> numpy_seed_sequence_state(uint32_t seed, int n_words64);

class NumpyPcg64 {
 public:
  // numpy.random.default_rng(seed) (PCG64 seeded through SeedSequence).
  explicit NumpyPcg64(uint32_t seed);

  uint64_t next_uint64();  // PCG-XSL-RR 128/64: step, then the output of the new state
  uint32_t next_uint32();  // the low half of a 64-bit output, then its high half (numpy's buffer)
  // Generator.integers(low, high, dtype=int32) one at a time, high exclusive: low + a Lemire
  // draw over [0, high - low - 1].
  int32_t integer_int32(int32_t low, int32_t high);

 private:
  unsigned __int128 state_ = 0, inc_ = 0;
  bool has_uint32_ = false;
  uint32_t uinteger_ = 0;
};

}  // namespace megahost::core::data
