#include "line_blocks.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "megahost/core/error.h"

namespace megahost::core::prep {

namespace {
constexpr size_t kReadBytes = size_t{256} << 10;
}

LineBlocks::LineBlocks(std::vector<std::string> files, size_t block_bytes)
    : files_(std::move(files)), block_bytes_(block_bytes) {
  for (const auto& f : files_) {
    struct stat st {};
    if (::stat(f.c_str(), &st) != 0)
      throw Error(cat(f, ": cannot open input: ", std::strerror(errno), "\nHINT: check the paths given to --input"));
    if (S_ISDIR(st.st_mode))
      throw Error(cat(f, ": cannot open input: a folder\nHINT: give its files, e.g. --input '", f, "/*.jsonl'"));
    if (S_ISREG(st.st_mode)) {
      total_bytes_ += static_cast<uint64_t>(st.st_size);
    } else {
      size_known_ = false;  // a pipe: no ETA
    }
  }
}

LineBlocks::~LineBlocks() = default;

bool LineBlocks::next(LineBlock& b) {
  for (;;) {
    if (!in_) {
      if (current_ >= files_.size()) return false;
      in_ = std::make_unique<InputStream>(files_[current_]);
      lines_ = 0;
      carry_.clear();
    }
    b.file = current_;
    b.first_line = lines_ + 1;
    b.text.assign(carry_);  // carry_ holds no '\n'
    carry_.clear();
    size_t last_newline = std::string::npos;
    bool eof = false;
    while (b.text.size() < block_bytes_ || last_newline == std::string::npos) {
      const size_t old = b.text.size();
      b.text.resize(old + kReadBytes);
      size_t got = 0;
      try {
        got = in_->read(b.text.data() + old, kReadBytes);
      } catch (const Error& e) {
        throw Error(cat(e.what(), "\n(after line ", lines_ + std::count(b.text.begin(), b.text.begin() + old, '\n'),
                        " of ", files_[current_], ")"));
      }
      b.text.resize(old + got);
      if (got == 0) {
        eof = true;
        break;
      }
      const void* nl = ::memrchr(b.text.data() + old, '\n', got);
      if (nl != nullptr) last_newline = static_cast<size_t>(static_cast<const char*>(nl) - b.text.data());
    }
    if (eof) {
      if (!b.text.empty() && b.text.back() != '\n') b.text.push_back('\n');
      done_bytes_ += in_->file_bytes_read();
      b.input_bytes_done = done_bytes_;
      in_.reset();
      ++current_;
      if (b.text.empty()) continue;  // an empty file
    } else {
      carry_.assign(b.text, last_newline + 1, std::string::npos);
      b.text.resize(last_newline + 1);
      b.input_bytes_done = done_bytes_ + in_->file_bytes_read();
    }
    lines_ += std::count(b.text.begin(), b.text.end(), '\n');
    return true;
  }
}

}  // namespace megahost::core::prep
