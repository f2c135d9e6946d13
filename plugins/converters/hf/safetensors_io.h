// Hugging Face safetensors reading and writing, one tensor at a time, without libtorch.
//
// The format: 8-byte little-endian header length N, N bytes of JSON
// {"name": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, ..., "__metadata__": {...}},
// then the raw little-endian bytes (offsets relative to the end of the header). A sharded folder
// adds model.safetensors.index.json {"weight_map": {"name": "file", ...}}.
#pragma once

#include <dlpack/dlpack.h>

#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

namespace megahost::hf {

struct StEntry {
  std::string name, file;  // file: the .safetensors file holding it
  DLDataType dtype{kDLFloat, 32, 1};
  std::string dtype_name;  // as written: "F32", "BF16", ...
  std::vector<int64_t> shape;
  uint64_t offset = 0, nbytes = 0;  // absolute offset in file
};

// A model folder's tensors: model.safetensors, or the shards model.safetensors.index.json names.
// Only headers are read up front.
class StFolder {
 public:
  explicit StFolder(const std::string& dir);
  bool has(const std::string& name) const { return entries_.count(name) != 0; }
  const StEntry& entry(const std::string& name) const;  // throws naming the folder and tensor
  const std::map<std::string, StEntry>& entries() const { return entries_; }
  // Copies the stored bytes into dst (host, contiguous), which must have the stored dtype and shape.
  void read(const std::string& name, DLTensor* dst) const;

 private:
  void read_header(const std::string& file);
  std::string source_;  // model.safetensors or model.safetensors.index.json: what errors name
  std::map<std::string, StEntry> entries_;
};

// Writes one .safetensors file: the header from the specs given up front, then each tensor in the
// order of the specs (streamed). Removes the file unless close() succeeded.
class StWriter {
 public:
  struct Spec {
    std::string name;
    DLDataType dtype;
    std::vector<int64_t> shape;
  };
  StWriter(std::string file, std::vector<Spec> specs, const std::map<std::string, std::string>& metadata);
  ~StWriter();
  void write(const std::string& name, const DLTensor* t);  // must be the next spec's tensor
  void close();                                            // checks every tensor was written

 private:
  std::string file_;
  std::vector<Spec> specs_;
  size_t next_ = 0;
  std::FILE* f_ = nullptr;
  bool closed_ = false;
};

}  // namespace megahost::hf
