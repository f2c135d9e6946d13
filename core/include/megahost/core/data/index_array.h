// megahost core — a 1-D index array kept in the dtype Megatron would give it.
//
// Megatron stores its sample index as int32 and its shuffle index as uint32 until the values
// would not fit, then int64. Keeping the same dtypes halves the memory of the two largest arrays
// of a run and lets them be written or compared as Megatron's .npy caches are.
//
// The values live either in a vector this array owns or in a read-only memory mapping of a
// cached .npy file (from_mapped); copies share the storage.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace megahost::core::data {

class IndexArray {
 public:
  enum class DType { Int32, UInt32, Int64 };

  IndexArray() = default;
  explicit IndexArray(std::vector<int32_t> v) { own(std::move(v), DType::Int32); }
  explicit IndexArray(std::vector<uint32_t> v) { own(std::move(v), DType::UInt32); }
  explicit IndexArray(std::vector<int64_t> v) { own(std::move(v), DType::Int64); }
  // `size` values of `dtype` at `data`, kept valid by `owner` (e.g. a file mapping).
  static IndexArray from_mapped(const void* data, size_t size, DType dtype, std::shared_ptr<const void> owner) {
    IndexArray a;
    a.data_ = data;
    a.size_ = size;
    a.dtype_ = dtype;
    a.owner_ = std::move(owner);
    a.mapped_ = true;
    return a;
  }

  DType dtype() const { return dtype_; }
  const char* dtype_name() const;  // numpy's name: "int32", "uint32", "int64"
  size_t size() const { return size_; }
  const void* data() const { return data_; }
  bool is_mapped() const { return mapped_; }

  int64_t operator[](size_t i) const {
    switch (dtype_) {
      case DType::Int32: return static_cast<const int32_t*>(data_)[i];
      case DType::UInt32: return static_cast<const uint32_t*>(data_)[i];
      default: return static_cast<const int64_t*>(data_)[i];
    }
  }
  std::vector<int64_t> to_vector() const {
    std::vector<int64_t> out(size_);
    for (size_t i = 0; i < size_; ++i) out[i] = (*this)[i];
    return out;
  }

 private:
  template <typename T>
  void own(std::vector<T> v, DType t) {
    auto held = std::make_shared<std::vector<T>>(std::move(v));
    data_ = held->data();
    size_ = held->size();
    dtype_ = t;
    owner_ = std::move(held);
  }

  const void* data_ = nullptr;
  size_t size_ = 0;
  DType dtype_ = DType::Int32;
  std::shared_ptr<const void> owner_;
  bool mapped_ = false;
};

inline const char* IndexArray::dtype_name() const {
  switch (dtype_) {
    case DType::Int32: return "int32";
    case DType::UInt32: return "uint32";
    default: return "int64";
  }
}

}  // namespace megahost::core::data
