// megahost core — numpy's legacy RandomState(seed), bit for bit, for Megatron-compatible shuffles.
//
// Megatron's GPTDataset shuffles its document and shuffle indices with
// numpy.random.RandomState(seed).shuffle. Identical samples need the identical stream:
// MT19937 seeded with init_genrand(seed), and numpy's legacy bounded draw ("random_interval":
// masked rejection sampling, 32-bit draws up to 2^32-1, 64-bit draws above).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace megahost::core::data {

class NumpyRandomState {
 public:
  // numpy.random.RandomState(seed) for an integer seed in [0, 2^32 - 1].
  explicit NumpyRandomState(uint32_t seed);

  uint32_t next_uint32();  // MT19937 genrand_int32
  uint64_t next_uint64();  // two 32-bit draws, the first one is the high word (numpy's order)
  // Uniform integer in [0, max], as numpy's legacy random_interval draws it.
  uint64_t random_interval(uint64_t max);

  // numpy's RandomState.shuffle of a 1-D array: Fisher-Yates from the last index down to 1,
  // j = random_interval(i). The element type does not change the stream.
  template <typename T>
  void shuffle(T* data, size_t n) {
    if (n < 2) return;
    // The draws do not depend on the data, and on large arrays the random swaps wait on
    // memory: draw kAhead positions early (same order) and prefetch the slots they will swap.
    constexpr size_t kAhead = 16;
    size_t ahead[kAhead];
    size_t next = n - 1;  // the i whose j is drawn next
    auto draw = [&] {
      const auto j = static_cast<size_t>(random_interval(next));
      ahead[next % kAhead] = j;
#if defined(__GNUC__)
      __builtin_prefetch(data + j, 1);
#endif
      --next;
    };
    for (size_t k = 0; k < kAhead && next >= 1; ++k) draw();
    for (size_t i = n - 1; i >= 1; --i) {
      const size_t j = ahead[i % kAhead];
      if (next >= 1) draw();
      const T tmp = data[i];
      data[i] = data[j];
      data[j] = tmp;
    }
  }
  template <typename T>
  void shuffle(std::vector<T>& v) {
    shuffle(v.data(), v.size());
  }

 private:
  void twist();
  std::array<uint32_t, 624> state_{};
  size_t pos_ = 624;
};

}  // namespace megahost::core::data
