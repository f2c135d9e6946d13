// megahost core — preprocessing input: --input arguments expanded to files, and each file read as
// a stream of decompressed bytes (plain, gzip or zstd, detected by magic bytes).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace megahost::core::prep {

// Each argument is a path, or a glob(3) pattern when it holds * ? or [; a pattern's matches are
// sorted by name, and a pattern matching nothing is an error naming it. Order otherwise as given.
std::vector<std::string> expand_inputs(const std::vector<std::string>& args);

enum class Compression { None, Gzip, Zstd };
const char* compression_name(Compression c);

// Reads one file's decompressed bytes in order, never holding the whole file. Throws core::Error
// naming the file (and what went wrong: cannot open, corrupt or truncated stream).
class InputStream {
 public:
  explicit InputStream(const std::string& path);
  ~InputStream();
  InputStream(const InputStream&) = delete;
  InputStream& operator=(const InputStream&) = delete;

  // Up to n decompressed bytes into out; 0 only at the end of the file.
  size_t read(char* out, size_t n);
  // Bytes of the file on disk consumed so far (for progress on compressed input).
  uint64_t file_bytes_read() const { return file_bytes_read_; }
  Compression compression() const { return compression_; }
  const std::string& path() const { return path_; }

 private:
  bool fill();  // more raw bytes into in_; false at end of file

  struct Codec;
  std::string path_;
  int fd_ = -1;
  Compression compression_ = Compression::None;
  std::vector<char> in_;
  size_t in_pos_ = 0, in_end_ = 0;
  uint64_t file_bytes_read_ = 0;
  bool eof_ = false;
  std::unique_ptr<Codec> codec_;
};

}  // namespace megahost::core::prep
