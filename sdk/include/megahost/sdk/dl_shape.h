// megahost SDK — small helpers on DLPack shapes, without libtorch.
#pragma once

#include <dlpack/dlpack.h>

#include <cstdint>
#include <string>
#include <vector>

namespace megahost::sdk {

// "[64, 150]": shapes in error messages, as the core prints them.
inline std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// Bytes of a contiguous tensor of this dtype and shape.
inline uint64_t dense_nbytes(DLDataType dtype, const std::vector<int64_t>& shape) {
  uint64_t n = (dtype.bits * dtype.lanes + 7) / 8;
  for (int64_t d : shape) n *= static_cast<uint64_t>(d);
  return n;
}

}  // namespace megahost::sdk
