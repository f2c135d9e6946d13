#include "mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "megahost/sdk/error.h"

namespace mmidx {

using megahost::sdk::Error;
using megahost::sdk::str_cat;

MappedFile::MappedFile(const std::string& path, const std::string& missing_hint) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT)
      throw Error(MH_ERR_NOT_FOUND, str_cat(path, ": file not found; HINT: ", missing_hint));
    throw Error(MH_ERR_UNAVAILABLE, str_cat(path, ": cannot open: ", std::strerror(err),
                                            "; HINT: check the file's permissions"));
  }
  struct stat st{};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    throw Error(MH_ERR_UNAVAILABLE, str_cat(path, ": cannot stat: ", std::strerror(err)));
  }
  size_ = static_cast<uint64_t>(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      throw Error(MH_ERR_UNAVAILABLE, str_cat(path, ": cannot mmap ", size_, " bytes: ",
                                              std::strerror(err),
                                              "; HINT: check `ulimit -v` and that the file "
                                              "system supports mmap"));
    }
    data_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);  // the mapping keeps the file alive
}

MappedFile::~MappedFile() { unmap(); }

MappedFile::MappedFile(MappedFile&& o) noexcept
    : path_(std::move(o.path_)), data_(std::exchange(o.data_, nullptr)),
      size_(std::exchange(o.size_, 0)) {}

MappedFile& MappedFile::operator=(MappedFile&& o) noexcept {
  if (this != &o) {
    unmap();
    path_ = std::move(o.path_);
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
  }
  return *this;
}

void MappedFile::unmap() {
  if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), size_);
  data_ = nullptr;
  size_ = 0;
}

}  // namespace mmidx
