// megahost core — safetensors folders as at::Tensors: the SDK's libtorch-free reader and writer
// (megahost/sdk/safetensors.h, which the `hf` converter plugin uses too) with torch tensors in
// and out, for the core's tools and the conversion tests.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace megahost::sdk {
class StFolder;
class StWriter;
}  // namespace megahost::sdk

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
  ~SafetensorsFolder();
  bool has(const std::string& name) const { return entries_.count(name) != 0; }
  const SafetensorsEntry& entry(const std::string& name) const;  // throws naming the folder and tensor
  const std::map<std::string, SafetensorsEntry>& entries() const { return entries_; }
  at::Tensor read(const std::string& name) const;  // a fresh CPU tensor of the stored dtype and shape
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  std::unique_ptr<sdk::StFolder> st_;
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
  std::unique_ptr<sdk::StWriter> st_;
};

}  // namespace megahost::core
