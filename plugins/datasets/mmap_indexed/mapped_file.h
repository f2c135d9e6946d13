// mmap-indexed — a read-only POSIX memory mapping of a whole file (RAII).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace mmidx {

class MappedFile {
 public:
  MappedFile() = default;
  // Maps `path` read-only. Throws sdk::Error: MH_ERR_NOT_FOUND when missing, MH_ERR_UNAVAILABLE
  // on other I/O errors. An empty file maps to data() == nullptr, size() == 0.
  MappedFile(const std::string& path, const std::string& missing_hint);
  ~MappedFile();
  MappedFile(MappedFile&& o) noexcept;
  MappedFile& operator=(MappedFile&& o) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  void unmap();
  std::string path_;
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
};

}  // namespace mmidx
