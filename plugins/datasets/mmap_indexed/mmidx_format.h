// mmap-indexed — the layout of Megatron's PREFIX.idx (FORMATS.md §1) and small helpers.
//
//   offset        size        content
//   0             9           "MMIDIDX\0\0"
//   9             8           version = 1 (uint64)
//   17            1           dtype code (uint8)
//   18            8           S = number of sequences (uint64)
//   26            8           D = number of document-index entries (uint64)
//   34            4 S         sequence lengths (int32)
//   34 + 4S       8 S         sequence pointers, byte offsets in .bin (int64)
//   34 + 12S      8 D         document indices (int64)
//   34 + 12S + 8D S           sequence modes (int8), multimodal datasets only
//
// Everything is little-endian and packed: the int64 arrays start at unaligned offsets, so they
// are read with memcpy, never through a cast pointer into the mapping.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>

#include "megahost/megahost.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "mmap-indexed reads and writes little-endian files in place: big-endian hosts need byte swaps"
#endif

namespace mmidx {

inline constexpr char kMagic[9] = {'M', 'M', 'I', 'D', 'I', 'D', 'X', '\0', '\0'};
inline constexpr uint64_t kVersion = 1;
inline constexpr uint64_t kHeaderSize = 34;
inline constexpr uint64_t kOffVersion = 9;
inline constexpr uint64_t kOffDtype = 17;
inline constexpr uint64_t kOffSequences = 18;
inline constexpr uint64_t kOffDocuments = 26;

// Bytes per token of a dtype code; 0 for an unknown code.
inline int itemsize(mh_token_dtype code) {
  switch (code) {
    case MH_DTYPE_UINT8:
    case MH_DTYPE_INT8: return 1;
    case MH_DTYPE_INT16:
    case MH_DTYPE_UINT16: return 2;
    case MH_DTYPE_INT32:
    case MH_DTYPE_FLOAT32: return 4;
    case MH_DTYPE_INT64:
    case MH_DTYPE_FLOAT64: return 8;
    default: return 0;
  }
}

// numpy's name of a dtype code, for messages.
inline const char* dtype_name(mh_token_dtype code) {
  switch (code) {
    case MH_DTYPE_UINT8: return "uint8";
    case MH_DTYPE_INT8: return "int8";
    case MH_DTYPE_INT16: return "int16";
    case MH_DTYPE_INT32: return "int32";
    case MH_DTYPE_INT64: return "int64";
    case MH_DTYPE_FLOAT64: return "float64";
    case MH_DTYPE_FLOAT32: return "float32";
    case MH_DTYPE_UINT16: return "uint16";
    default: return "unknown";
  }
}

// An unaligned little-endian load.
template <typename T>
inline T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

inline std::string idx_path(const std::string& prefix) { return prefix + ".idx"; }
inline std::string bin_path(const std::string& prefix) { return prefix + ".bin"; }

}  // namespace mmidx
