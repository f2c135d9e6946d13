#include "file_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "megahost/sdk/error.h"

namespace megahost::mh_tensors {

using sdk::Error;
using sdk::str_cat;

std::string os_error() { return std::strerror(errno); }

File& File::operator=(File&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.fd_;
    path_ = std::move(o.path_);
    o.fd_ = -1;
  }
  return *this;
}

File::~File() {
  if (fd_ >= 0) ::close(fd_);
}

File File::create(const std::string& path) {
  int fd = ::open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
  MH_CHECK(fd >= 0, MH_ERR_UNAVAILABLE, "cannot create ", path, ": ", os_error(),
           ". HINT: check that the checkpoint folder is writable and the disk is not full");
  return File(fd, path);
}

File File::open_read(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    MH_CHECK(err != ENOENT, MH_ERR_NOT_FOUND, "missing file ", path,
             ". HINT: the checkpoint is incomplete; load an older checkpoint");
    throw Error(MH_ERR_UNAVAILABLE, str_cat("cannot open ", path, ": ", std::strerror(err)));
  }
  return File(fd, path);
}

void File::write_all(const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    // Linux writes at most ~2 GiB per call; loop for partial writes.
    ssize_t w = ::write(fd_, p, n);
    if (w < 0 && errno == EINTR) continue;
    MH_CHECK(w > 0, MH_ERR_UNAVAILABLE, "write to ", path_, " failed: ", os_error(),
             ". HINT: check free disk space");
    p += w;
    n -= size_t(w);
  }
}

void File::pread_all(void* data, size_t n, uint64_t offset) const {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    ssize_t r = ::pread(fd_, p, n, off_t(offset));
    if (r < 0 && errno == EINTR) continue;
    MH_CHECK(r >= 0, MH_ERR_UNAVAILABLE, "read from ", path_, " failed: ", os_error());
    MH_CHECK(r > 0, MH_ERR_DATA_LOSS, path_, " ends at byte ", offset, " before the data the index lists",
             ". HINT: the file is truncated; load an older checkpoint");
    p += r;
    n -= size_t(r);
    offset += uint64_t(r);
  }
}

uint64_t File::size() const {
  struct stat st {};
  MH_CHECK(::fstat(fd_, &st) == 0, MH_ERR_UNAVAILABLE, "cannot stat ", path_, ": ", os_error());
  return uint64_t(st.st_size);
}

void File::sync() {
  MH_CHECK(::fsync(fd_) == 0, MH_ERR_UNAVAILABLE, "fsync of ", path_, " failed: ", os_error());
}

void File::close() {
  if (fd_ < 0) return;
  int fd = fd_;
  fd_ = -1;
  MH_CHECK(::close(fd) == 0, MH_ERR_UNAVAILABLE, "close of ", path_, " failed: ", os_error());
}

void sync_dir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  MH_CHECK(fd >= 0, MH_ERR_UNAVAILABLE, "cannot open folder ", dir, ": ", os_error());
  File f(fd, dir);
  f.sync();
  f.close();
}

void rename_file(const std::string& from, const std::string& to) {
  MH_CHECK(::rename(from.c_str(), to.c_str()) == 0, MH_ERR_UNAVAILABLE, "cannot rename ", from, " to ", to,
           ": ", os_error());
}

void remove_quietly(const std::string& path) { ::unlink(path.c_str()); }

}  // namespace megahost::mh_tensors
