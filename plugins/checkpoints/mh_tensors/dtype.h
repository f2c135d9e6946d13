// megahost-tensors — DLPack dtypes: readable names ("float32") and element sizes.
#pragma once

#include <dlpack/dlpack.h>

#include <cstdint>
#include <string>

namespace megahost::mh_tensors {

// DLPack >= 0.8 has kDLBool = 6; Debian's 0.6 lacks the enum name, so we use the number.
constexpr uint8_t kDLBoolCode = 6;

// Bytes per element as stored. Sub-byte types (torch's bool is {kDLUInt, 1, 1} under DLPack
// 0.6) take one byte per element, as in torch's own storage.
inline uint64_t itemsize(DLDataType t) { return (uint64_t(t.bits) * t.lanes + 7) / 8; }

// "float32", "bfloat16", "int64", "bool", ...; "dlpack(code=7,bits=8,lanes=1)" for the rest.
inline std::string dtype_name(DLDataType t) {
  std::string base;
  switch (t.code) {
    case kDLFloat: base = "float"; break;
    case kDLBfloat: base = "bfloat"; break;
    case kDLInt: base = "int"; break;
    case kDLUInt: base = t.bits == 1 ? "bool" : "uint"; break;
    case kDLComplex: base = "complex"; break;
    case kDLBoolCode: base = "bool"; break;
    default: break;
  }
  if (base.empty() || t.lanes != 1 || t.bits == 0)
    return "dlpack(code=" + std::to_string(t.code) + ",bits=" + std::to_string(t.bits) +
           ",lanes=" + std::to_string(t.lanes) + ")";
  if (base == "bool") return base;
  return base + std::to_string(t.bits);
}

inline bool same_dtype(DLDataType a, DLDataType b) {
  return a.code == b.code && a.bits == b.bits && a.lanes == b.lanes;
}

}  // namespace megahost::mh_tensors
