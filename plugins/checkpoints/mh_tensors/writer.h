// megahost-tensors — writing one checkpoint folder: payloads appended to tensors.bin, then
// index.json published atomically on commit.
#pragma once

#include <dlpack/dlpack.h>

#include <string>
#include <unordered_set>
#include <vector>

#include "file_io.h"
#include "index.h"

namespace megahost::mh_tensors {

class Writer {
 public:
  // Creates `dir` if needed and starts tensors.bin. Refuses a folder that already holds a
  // committed checkpoint (index.json).
  explicit Writer(std::string dir);
  ~Writer();  // an uncommitted writer aborts

  void tensor(const char* name, const DLTensor* t);  // host memory, contiguous, borrowed
  void blob(const char* name, const void* bytes, size_t len);
  // fsync tensors.bin; write index.json.tmp, fsync, rename to index.json, fsync the folder.
  void commit();
  // Removes what this writer created (files, then folders it made). Never throws.
  void abort() noexcept;

 private:
  void append(Entry e, const void* data);
  std::string path(const char* file) const { return dir_ + "/" + file; }

  std::string dir_;
  std::vector<std::string> created_dirs_;  // outermost first
  File data_;
  Index index_;
  std::unordered_set<std::string> names_;
  uint64_t offset_ = 0;   // end of tensors.bin so far
  bool broken_ = false;   // a failed write leaves tensors.bin in an unknown state
  bool published_ = false;  // index.json renamed into place by this writer
  bool done_ = false;     // committed or aborted
};

}  // namespace megahost::mh_tensors
