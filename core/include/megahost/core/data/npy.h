// megahost core — numpy's .npy files: the format Megatron caches its GPT indices in.
//
//   bytes 0-5   "\x93NUMPY"
//   bytes 6-7   format version (major, minor): 1.0 (uint16 header length) or 2.0 (uint32)
//   then        the header length, little-endian, and the header: a Python dict literal
//               {'descr': '<i4', 'fortran_order': False, 'shape': (N, 2), } padded with spaces
//               and a final '\n' so that the data starts at a multiple of 64 bytes
//   then        the values, C order
//
// Written as version 1.0, little-endian, 64-byte aligned (numpy.save's output for these arrays).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace megahost::core::data {

enum class NpyDType { Int16, Int32, Int64, UInt32, UInt16, UInt8, Int8 };
const char* npy_dtype_name(NpyDType t);   // numpy's name: "int32", ...
size_t npy_itemsize(NpyDType t);

struct NpyHeader {
  NpyDType dtype = NpyDType::Int32;
  std::vector<int64_t> shape;
  int64_t count() const;        // product of the shape (1 for a 0-d array)
  size_t data_offset = 0;       // where the values start in the file
};

// Parses the header at the start of `bytes` (the file's first `size` bytes, or all of it).
// Throws core::Error naming `what` (usually the path) and the problem: bad magic, version,
// dtype (only little-endian integers), fortran order of a >1-D array, malformed dict.
NpyHeader parse_npy_header(const char* bytes, size_t size, const std::string& what);

// The header bytes numpy.save writes (format 1.0) for this dtype and shape.
std::string npy_header(NpyDType dtype, const std::vector<int64_t>& shape);

// A .npy file mapped read-only. Throws core::Error when the file cannot be read, the header is
// bad, or the file is shorter than the header says (truncated).
class NpyFile {
 public:
  static std::shared_ptr<const NpyFile> map(const std::string& path);
  ~NpyFile();
  NpyFile(const NpyFile&) = delete;
  NpyFile& operator=(const NpyFile&) = delete;

  const NpyHeader& header() const { return header_; }
  const void* data() const { return data_; }  // aligned to the item size
  const std::string& path() const { return path_; }

 private:
  NpyFile() = default;
  std::string path_;
  NpyHeader header_;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  const void* data_ = nullptr;
  std::vector<char> copy_;  // used only when the data offset is not aligned to the item size
};

// Writes `data` (count = product of shape items of dtype) as a .npy file atomically: a
// temporary file in the same folder, then rename. Throws core::Error naming the path.
void write_npy_atomic(const std::string& path, NpyDType dtype, const std::vector<int64_t>& shape,
                      const void* data);

// Writes `text` to `path` atomically (temporary file, then rename).
void write_file_atomic(const std::string& path, const std::string& text);

}  // namespace megahost::core::data
