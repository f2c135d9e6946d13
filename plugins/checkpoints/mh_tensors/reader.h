// megahost-tensors — reading one checkpoint folder, verifying every payload's CRC-32.
#pragma once

#include <dlpack/dlpack.h>

#include <string>
#include <unordered_map>

#include "file_io.h"
#include "index.h"

namespace megahost::mh_tensors {

class Reader {
 public:
  // Parses and validates index.json and checks tensors.bin's size against it.
  explicit Reader(std::string dir);

  const Index& index() const { return index_; }
  // Copies tensor `name` into dst (host memory, contiguous) after checking dtype and shape.
  // dst's contents are unspecified when the checksum fails.
  void tensor(const char* name, DLTensor* dst) const;
  // Copies the first min(size, cap) bytes of blob `name` into buf; returns its size.
  size_t blob(const char* name, void* buf, size_t cap) const;

 private:
  const Entry& find(const char* name, bool blob) const;
  void verify(const Entry& e, const void* payload) const;

  std::string dir_;
  Index index_;
  std::unordered_map<std::string, size_t> by_name_;
  File data_;
};

}  // namespace megahost::mh_tensors
