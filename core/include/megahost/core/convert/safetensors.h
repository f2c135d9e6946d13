// megahost core — native safetensors reading and writing, one tensor at a time, as at::Tensors.
// Conversion itself goes through the `hf` converter plugin (plugins/converters/hf, its own
// libtorch-free reader and writer); this one is the core's independent view of such files
// (tests compare the plugin's output with it byte by byte).
//
// The format: 8-byte little-endian header length N, N bytes of JSON
// {"name": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, ..., "__metadata__": {...}},
// then the raw little-endian bytes (offsets relative to the end of the header). A sharded
// checkpoint adds model.safetensors.index.json {"weight_map": {"name": "file", ...}}.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace megahost::core {

struct SafetensorsEntry {
  std::string name, file;  // file: the path of the .safetensors file holding it
  at::ScalarType dtype = at::kFloat;
  std::string dtype_name;  // as written: "F32", "BF16", ...
  std::vector<int64_t> shape;
  uint64_t offset = 0, nbytes = 0;  // absolute offset in file
};

// A Hugging Face model folder's tensors: model.safetensors, or the shards that
// model.safetensors.index.json names. Only headers are read up front.
class SafetensorsFolder {
 public:
  explicit SafetensorsFolder(const std::string& dir);
  bool has(const std::string& name) const { return entries_.count(name) != 0; }
  const SafetensorsEntry& entry(const std::string& name) const;  // throws naming the folder and tensor
  const std::map<std::string, SafetensorsEntry>& entries() const { return entries_; }
  at::Tensor read(const std::string& name) const;  // a fresh CPU tensor of the stored dtype and shape
  const std::string& dir() const { return dir_; }

 private:
  void read_header(const std::string& file);
  std::string dir_;
  std::string source_;  // model.safetensors or model.safetensors.index.json: what errors name
  std::map<std::string, SafetensorsEntry> entries_;
};

// Writes one .safetensors file: the header is written from the specs given up front, then each
// tensor in the order of the specs (streamed; nothing is held back).
class SafetensorsWriter {
 public:
  struct Spec {
    std::string name;
    at::ScalarType dtype;
    std::vector<int64_t> shape;
  };
  SafetensorsWriter(const std::string& file, const std::vector<Spec>& specs,
                    const std::map<std::string, std::string>& metadata);
  ~SafetensorsWriter();
  void write(const std::string& name, const at::Tensor& t);  // must be the next spec's tensor
  void close();                                             // checks every tensor was written

 private:
  std::string file_;
  std::vector<Spec> specs_;
  size_t next_ = 0;
  std::FILE* f_ = nullptr;
};

std::string safetensors_dtype_name(at::ScalarType t);  // throws for types safetensors lacks

}  // namespace megahost::core
