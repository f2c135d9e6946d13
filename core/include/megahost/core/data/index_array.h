// megahost core — a 1-D index array kept in the dtype Megatron would give it.
//
// Megatron stores its sample index as int32 and its shuffle index as uint32 until the values
// would not fit, then int64. Keeping the same dtypes halves the memory of the two largest arrays
// of a run and lets them be written or compared as Megatron's .npy caches are.
#pragma once

#include <cstddef>
#include <cstdint>
#include <variant>
#include <vector>

namespace megahost::core::data {

class IndexArray {
 public:
  enum class DType { Int32, UInt32, Int64 };

  IndexArray() = default;
  explicit IndexArray(std::vector<int32_t> v) : v_(std::move(v)) {}
  explicit IndexArray(std::vector<uint32_t> v) : v_(std::move(v)) {}
  explicit IndexArray(std::vector<int64_t> v) : v_(std::move(v)) {}

  DType dtype() const { return static_cast<DType>(v_.index()); }
  const char* dtype_name() const;  // numpy's name: "int32", "uint32", "int64"
  size_t size() const;
  const void* data() const;

  int64_t operator[](size_t i) const {
    switch (v_.index()) {
      case 0: return (*std::get_if<0>(&v_))[i];
      case 1: return (*std::get_if<1>(&v_))[i];
      default: return (*std::get_if<2>(&v_))[i];
    }
  }
  std::vector<int64_t> to_vector() const;

 private:
  std::variant<std::vector<int32_t>, std::vector<uint32_t>, std::vector<int64_t>> v_;
};

inline const char* IndexArray::dtype_name() const {
  switch (dtype()) {
    case DType::Int32: return "int32";
    case DType::UInt32: return "uint32";
    default: return "int64";
  }
}

inline size_t IndexArray::size() const {
  return std::visit([](const auto& v) { return v.size(); }, v_);
}

inline const void* IndexArray::data() const {
  return std::visit([](const auto& v) { return static_cast<const void*>(v.data()); }, v_);
}

inline std::vector<int64_t> IndexArray::to_vector() const {
  return std::visit([](const auto& v) { return std::vector<int64_t>(v.begin(), v.end()); }, v_);
}

}  // namespace megahost::core::data
