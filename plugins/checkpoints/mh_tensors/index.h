// megahost-tensors — the index (index.json): what is stored where in tensors.bin.
// FORMAT.md is the normative description; keep the two in step.
#pragma once

#include <dlpack/dlpack.h>

#include <cstdint>
#include <string>
#include <vector>

namespace megahost::mh_tensors {

constexpr const char* kFormatName = "megahost-tensors";
constexpr int64_t kFormatVersion = 1;
constexpr uint64_t kAlignment = 64;  // every payload starts at a multiple of this offset
constexpr const char* kDataFile = "tensors.bin";
constexpr const char* kIndexFile = "index.json";

struct Entry {
  std::string name;
  bool is_blob = false;
  DLDataType dtype{};          // tensors only
  std::vector<int64_t> shape;  // tensors only; [] for a scalar
  uint64_t offset = 0;         // byte offset of the payload in tensors.bin
  uint64_t nbytes = 0;         // payload size
  uint32_t crc32 = 0;          // CRC-32 (IEEE 802.3, as zlib.crc32) of the payload
};

struct Index {
  std::vector<Entry> entries;  // in write order
  uint64_t data_file_size = 0;
};

// Serialises the index as pretty JSON text.
std::string index_to_json(const Index& index);

// Parses and validates index.json text; `path` names the file in errors. Throws sdk::Error
// (MH_ERR_DATA_LOSS for malformed content, MH_ERR_UNSUPPORTED for newer versions).
Index index_from_json(const std::string& text, const std::string& path);

// "[2, 3]" for messages.
std::string shape_str(const int64_t* shape, int32_t ndim);

}  // namespace megahost::mh_tensors
