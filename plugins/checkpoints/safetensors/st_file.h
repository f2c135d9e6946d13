// safetensors checkpoint format — one folder = one model.safetensors (FORMAT.md). The writer
// streams payloads to a side file and assembles header + payloads on commit; the reader checks
// the header against the file size and every payload against its CRC-32.
#pragma once

#include <dlpack/dlpack.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "megahost/sdk/checkpoint_format.h"

namespace megahost::st_ckpt {

constexpr const char* kFile = "model.safetensors";

struct Entry {
  std::string name;
  bool is_blob = false;  // stored as a U8 tensor; listed in __metadata__ "megahost.blobs"
  DLDataType dtype{kDLUInt, 8, 1};
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte range in the data section
  uint32_t crc32 = 0;
};

class Writer {
 public:
  explicit Writer(std::string dir);  // creates dir; refuses one holding model.safetensors
  ~Writer();                         // uncommitted: removes what it wrote
  void tensor(const char* name, const DLTensor* t);
  void blob(const char* name, const void* bytes, size_t len);
  // header + payloads into model.safetensors.tmp, fsync, rename, fsync the folder.
  void commit();
  void abort() noexcept;

 private:
  void append(Entry e, const void* data, uint64_t n);
  std::string dir_;
  int payload_fd_ = -1;  // model.safetensors.payload: the data section so far
  std::vector<Entry> entries_;
  std::map<std::string, size_t> names_;
  uint64_t offset_ = 0;
  bool done_ = false;
};

class Reader {
 public:
  explicit Reader(std::string dir);  // parses the header, checks offsets and the file's size
  ~Reader();
  const std::vector<Entry>& entries() const { return entries_; }
  // visit(const mh_checkpoint_entry&) for every entry in file order; stops at the first error.
  template <class Visit>
  mh_error* for_each_entry(Visit&& visit) const {
    for (const Entry& e : entries_)
      if (mh_error* err = visit(sdk::checkpoint_entry(e.name, e.is_blob, e.dtype, e.shape, e.end - e.begin)))
        return err;
    return nullptr;
  }
  void tensor(const char* name, DLTensor* dst) const;
  size_t blob(const char* name, void* buf, size_t cap) const;

 private:
  const Entry& find(const char* name, bool blob) const;
  void read_checked(const Entry& e, void* out) const;
  std::string path_;
  int fd_ = -1;
  uint64_t data_start_ = 0;
  bool crc_checked_ = false;  // the header holds megahost.crc32
  std::vector<Entry> entries_;
  std::map<std::string, size_t> by_name_;
};

}  // namespace megahost::st_ckpt
