// Internal to preprocessing: the input files cut into blocks of whole lines, in order.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "megahost/core/preprocess/input.h"

namespace megahost::core::prep {

struct LineBlock {
  size_t file = 0;             // index into the file list
  int64_t first_line = 1;      // 1-based line number (in its file) of the block's first line
  std::string text;            // whole lines, each ending in '\n'; never spans two files
  uint64_t input_bytes_done = 0;  // bytes on disk consumed (all files) when the block was cut
};

class LineBlocks {
 public:
  // Checks that every file can be opened (core::Error "cannot open input" naming it) and sums
  // their sizes. Blocks hold about block_bytes (more only for a longer line).
  LineBlocks(std::vector<std::string> files, size_t block_bytes);
  ~LineBlocks();
  // The next block (reusing b's buffer); false at the end of the last file. A file's last line
  // gets a '\n' when it has none, so files never run together.
  bool next(LineBlock& b);
  // Sum of the file sizes; 0 when one of them is not a regular file (a pipe).
  uint64_t total_input_bytes() const { return size_known_ ? total_bytes_ : 0; }
  const std::string& file(size_t i) const { return files_[i]; }

 private:
  std::vector<std::string> files_;
  size_t block_bytes_;
  uint64_t total_bytes_ = 0, done_bytes_ = 0;  // done: files finished
  bool size_known_ = true;
  size_t current_ = 0;
  std::unique_ptr<InputStream> in_;
  int64_t lines_ = 0;  // lines of the current file handed out
  std::string carry_;  // a partial line read past the last block
};

}  // namespace megahost::core::prep
