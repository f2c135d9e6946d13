// megahost-tensors — small POSIX file helpers: whole writes/reads, fsync, atomic publish.
// Every failure throws sdk::Error naming the path and the OS reason.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace megahost::mh_tensors {

// An owned file descriptor; closes on destruction (errors on close are ignored there; call
// close() to see them).
class File {
 public:
  File() = default;
  File(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  File(File&& o) noexcept : fd_(o.fd_), path_(std::move(o.path_)) { o.fd_ = -1; }
  File& operator=(File&& o) noexcept;
  File(const File&) = delete;
  File& operator=(const File&) = delete;
  ~File();

  static File create(const std::string& path);     // O_CREAT | O_TRUNC | O_WRONLY
  static File open_read(const std::string& path);  // O_RDONLY; MH_ERR_NOT_FOUND when absent

  void write_all(const void* data, size_t n);                        // appends
  void pread_all(void* data, size_t n, uint64_t offset) const;       // reads exactly n bytes
  uint64_t size() const;
  void sync();   // fsync
  void close();  // reports errors

  bool is_open() const { return fd_ >= 0; }
  const std::string& path() const { return path_; }

 private:
  int fd_ = -1;
  std::string path_;
};

// fsync of a directory, so a rename or a new file inside it is durable.
void sync_dir(const std::string& dir);
// rename(2); call sync_dir on the folder afterwards to make it durable.
void rename_file(const std::string& from, const std::string& to);
// Removes a file if it exists; never throws.
void remove_quietly(const std::string& path);
// "strerror(errno)" for messages.
std::string os_error();

}  // namespace megahost::mh_tensors
