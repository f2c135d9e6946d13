// megahost-tensors — reading one checkpoint folder, verifying every payload's CRC-32.
#pragma once

#include <dlpack/dlpack.h>

#include <string>
#include <unordered_map>

#include "file_io.h"
#include "index.h"
#include "megahost/sdk/checkpoint_format.h"

namespace megahost::mh_tensors {

class Reader {
 public:
  // Parses and validates index.json and checks tensors.bin's size against it.
  explicit Reader(std::string dir);

  const Index& index() const { return index_; }
  // visit(const mh_checkpoint_entry&) for every entry in index order; stops at the first error.
  template <class Visit>
  mh_error* for_each_entry(Visit&& visit) const {
    for (const Entry& e : index_.entries)
      if (mh_error* err = visit(sdk::checkpoint_entry(e.name, e.is_blob, e.dtype, e.shape, e.nbytes))) return err;
    return nullptr;
  }
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
