// megahost SDK — the CRC-32 (IEEE 802.3, as zlib) of a payload, for checkpoint formats. zlib's
// runs at several GB/s (boost::crc_32_type, a byte-at-a-time table, at ~0.35 GB/s made a
// GPT-1.3B save or load take over a minute on the H200 machine); boost's is the fallback where
// zlib's headers are missing. Both give the same value. A plugin gets zlib's by linking ZLIB::ZLIB
// and defining MH_SDK_WITH_ZLIB (megahost_use_zlib_crc32 in its CMakeLists.txt).
#pragma once

#include <cstdint>

#if defined(MH_SDK_WITH_ZLIB)
#include <zlib.h>
#else
#include <boost/crc.hpp>
#endif

namespace megahost::sdk {

inline uint32_t crc32_of(const void* data, uint64_t n) {
#if defined(MH_SDK_WITH_ZLIB)
  uLong crc = ::crc32(0L, Z_NULL, 0);
  const auto* p = static_cast<const Bytef*>(data);
  constexpr uint64_t kStep = uint64_t{1} << 30;  // zlib takes 32-bit lengths
  for (uint64_t off = 0; off < n; off += kStep)
    crc = ::crc32(crc, p + off, static_cast<uInt>(n - off < kStep ? n - off : kStep));
  return static_cast<uint32_t>(crc);
#else
  boost::crc_32_type crc;
  crc.process_bytes(data, n);
  return crc.checksum();
#endif
}

}  // namespace megahost::sdk
