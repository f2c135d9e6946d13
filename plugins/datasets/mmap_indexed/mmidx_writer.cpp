#include "mmidx_writer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>

#include "megahost/sdk/error.h"
#include "mmidx_format.h"
#include "mmidx_reader.h"

namespace mmidx {

using megahost::sdk::Error;
using megahost::sdk::str_cat;

namespace {

constexpr size_t kBufferBytes = size_t{8} << 20;  // large sequential writes
constexpr size_t kCopyChunk = size_t{64} << 20;   // merging shards

Error io_error(const std::string& path, const char* op, int err) {
  const char* hint = err == ENOSPC   ? "free disk space or write elsewhere"
                     : err == EACCES ? "check the permissions of the output folder"
                     : err == ENOENT ? "create the output folder first"
                                     : "check the output file system";
  return Error(MH_ERR_UNAVAILABLE, str_cat(path, ": ", op, " failed: ", std::strerror(err),
                                           "; HINT: ", hint));
}

std::string parent_dir(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

// Converts int32 tokens into `dtype` bytes, refusing values the dtype cannot hold.
template <typename T>
void encode(const int32_t* tokens, size_t n, uint8_t* out, int64_t lo, int64_t hi,
            mh_token_dtype dtype, const std::string& prefix) {
  for (size_t i = 0; i < n; ++i) {
    const int64_t v = tokens[i];
    if (v < lo || v > hi)
      throw Error(MH_ERR_INVALID_ARG,
                  str_cat(prefix, ".bin: token ", v, " does not fit the dataset dtype ",
                          dtype_name(dtype), " [", lo, ", ", hi, "]; HINT: vocabularies of "
                          "65500 or more tokens need int32 (Megatron's rule: uint16 below)"));
    const T t = static_cast<T>(v);
    std::memcpy(out + i * sizeof(T), &t, sizeof(T));
  }
}

}  // namespace

Writer::Writer(const std::string& prefix, mh_token_dtype dtype)
    : prefix_(prefix), dtype_(dtype), itemsize_(itemsize(dtype)),
      bin_tmp_(bin_path(prefix) + ".tmp"), idx_tmp_(idx_path(prefix) + ".tmp") {
  if (itemsize_ == 0)
    throw Error(MH_ERR_INVALID_ARG,
                str_cat(prefix, ": unknown token dtype code ", dtype,
                        "; HINT: use MH_DTYPE_UINT16 for vocabularies below 65500, else "
                        "MH_DTYPE_INT32"));
  bin_fd_ = ::open(bin_tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (bin_fd_ < 0) throw io_error(bin_tmp_, "create", errno);
  buffer_.resize(kBufferBytes);
}

Writer::~Writer() {
  if (!done_) abort();
}

void Writer::abort() noexcept {
  if (bin_fd_ >= 0) ::close(bin_fd_);
  bin_fd_ = -1;
  if (!done_) {
    ::unlink(bin_tmp_.c_str());
    ::unlink(idx_tmp_.c_str());
  }
  done_ = true;
}

void Writer::write_all(int fd, const void* data, size_t n, const std::string& path) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      throw io_error(path, "write", errno);
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
}

void Writer::flush() {
  if (buffered_ > 0) write_all(bin_fd_, buffer_.data(), buffered_, bin_tmp_);
  buffered_ = 0;
}

void Writer::add_sequence(const int32_t* tokens, size_t n) {
  if (done_) throw Error(MH_ERR_INVALID_ARG, str_cat(prefix_, ": writer already finished"));
  if (n > static_cast<size_t>(std::numeric_limits<int32_t>::max()))
    throw Error(MH_ERR_INVALID_ARG, str_cat(prefix_, ": sequence of ", n, " tokens; the .idx "
                                            "stores lengths as int32; HINT: split it"));
  if (n > 0 && tokens == nullptr) throw Error(MH_ERR_INVALID_ARG, "add_sequence: tokens is NULL");
  for (size_t done = 0; done < n;) {
    if (buffered_ + static_cast<size_t>(itemsize_) > buffer_.size()) flush();
    const size_t room = (buffer_.size() - buffered_) / static_cast<size_t>(itemsize_);
    const size_t k = std::min(n - done, room);
    uint8_t* out = buffer_.data() + buffered_;
    const int32_t* in = tokens + done;
    switch (dtype_) {
      case MH_DTYPE_UINT8: encode<uint8_t>(in, k, out, 0, 255, dtype_, prefix_); break;
      case MH_DTYPE_INT8: encode<int8_t>(in, k, out, -128, 127, dtype_, prefix_); break;
      case MH_DTYPE_INT16: encode<int16_t>(in, k, out, -32768, 32767, dtype_, prefix_); break;
      case MH_DTYPE_UINT16: encode<uint16_t>(in, k, out, 0, 65535, dtype_, prefix_); break;
      case MH_DTYPE_INT32:
        encode<int32_t>(in, k, out, std::numeric_limits<int32_t>::min(),
                        std::numeric_limits<int32_t>::max(), dtype_, prefix_);
        break;
      case MH_DTYPE_INT64:
        encode<int64_t>(in, k, out, std::numeric_limits<int32_t>::min(),
                        std::numeric_limits<int32_t>::max(), dtype_, prefix_);
        break;
      // Floats hold integers exactly up to 2^24 (float32) and beyond int32 (float64).
      case MH_DTYPE_FLOAT32: encode<float>(in, k, out, -(1 << 24), 1 << 24, dtype_, prefix_); break;
      case MH_DTYPE_FLOAT64:
        encode<double>(in, k, out, std::numeric_limits<int32_t>::min(),
                       std::numeric_limits<int32_t>::max(), dtype_, prefix_);
        break;
      default: throw Error(MH_ERR_INTERNAL, "unknown dtype");
    }
    buffered_ += k * static_cast<size_t>(itemsize_);
    done += k;
  }
  lengths_.push_back(static_cast<int32_t>(n));
}

void Writer::end_document() {
  if (done_) throw Error(MH_ERR_INVALID_ARG, str_cat(prefix_, ": writer already finished"));
  doc_indices_.push_back(static_cast<int64_t>(lengths_.size()));
}

void Writer::add_dataset(const std::string& other_prefix) {
  if (done_) throw Error(MH_ERR_INVALID_ARG, str_cat(prefix_, ": writer already finished"));
  const Reader other(other_prefix);  // validates the shard fully before anything is appended
  if (other.dtype() != dtype_)
    throw Error(MH_ERR_INVALID_ARG,
                str_cat(other_prefix, ".idx: dtype ", dtype_name(other.dtype()),
                        " differs from this dataset's ", dtype_name(dtype_),
                        "; HINT: write every shard with the same tokenizer (uint16 below 65500 "
                        "tokens, else int32)"));
  if (other.has_modes())
    throw Error(MH_ERR_UNSUPPORTED,
                str_cat(other_prefix, ".idx: carries sequence modes (a multimodal dataset); "
                                      "this writer does not write modes; HINT: merge it with "
                                      "Megatron's multimodal builder"));
  const uint64_t S = other.num_sequences();
  if (lengths_.size() + S > static_cast<uint64_t>(std::numeric_limits<int64_t>::max() / 16))
    throw Error(MH_ERR_INVALID_ARG, str_cat(other_prefix, ": too many sequences to merge"));

  // Copy the tokens first: on an I/O error the in-memory index is unchanged.
  flush();
  const uint8_t* bytes = other.bin().data();
  for (uint64_t done = 0, total = other.bin().size(); done < total;) {
    const uint64_t k = std::min<uint64_t>(kCopyChunk, total - done);
    write_all(bin_fd_, bytes + done, static_cast<size_t>(k), bin_tmp_);
    done += k;
  }
  const int64_t shift = static_cast<int64_t>(lengths_.size());
  const size_t old = lengths_.size();
  lengths_.resize(old + S);
  if (S > 0) std::memcpy(lengths_.data() + old, other.raw_lengths(), 4 * S);
  for (uint64_t i = 1; i < other.num_doc_entries(); ++i)
    doc_indices_.push_back(shift + other.document_index(i));
}

void Writer::finalize() {
  if (done_) throw Error(MH_ERR_INVALID_ARG, str_cat(prefix_, ": writer already finished"));
  const auto S = static_cast<uint64_t>(lengths_.size());
  if (static_cast<uint64_t>(doc_indices_.back()) != S)
    throw Error(MH_ERR_INVALID_ARG,
                str_cat(prefix_, ": ", S - static_cast<uint64_t>(doc_indices_.back()),
                        " sequence(s) after the last end_document; HINT: call end_document "
                        "after the last sequence of every document"));
  flush();
  if (::fsync(bin_fd_) != 0) throw io_error(bin_tmp_, "fsync", errno);
  if (::close(bin_fd_) != 0) {
    bin_fd_ = -1;
    throw io_error(bin_tmp_, "close", errno);
  }
  bin_fd_ = -1;

  const int fd = ::open(idx_tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw io_error(idx_tmp_, "create", errno);
  try {
    // Header: magic, version, dtype code, S, D (packed, little-endian).
    uint8_t header[kHeaderSize];
    std::memcpy(header, kMagic, sizeof(kMagic));
    std::memcpy(header + kOffVersion, &kVersion, 8);
    header[kOffDtype] = static_cast<uint8_t>(dtype_);
    const uint64_t D = doc_indices_.size();
    std::memcpy(header + kOffSequences, &S, 8);
    std::memcpy(header + kOffDocuments, &D, 8);
    write_all(fd, header, sizeof(header), idx_tmp_);
    write_all(fd, lengths_.data(), 4 * S, idx_tmp_);
    // Pointers: running byte offsets, written in chunks through the token buffer.
    auto* pointers = reinterpret_cast<int64_t*>(buffer_.data());
    const size_t per_chunk = buffer_.size() / 8;
    int64_t pointer = 0;
    for (size_t i = 0; i < S;) {
      const size_t k = std::min<size_t>(per_chunk, S - i);
      for (size_t j = 0; j < k; ++j) {
        pointers[j] = pointer;
        pointer += static_cast<int64_t>(lengths_[i + j]) * itemsize_;
      }
      write_all(fd, pointers, 8 * k, idx_tmp_);
      i += k;
    }
    write_all(fd, doc_indices_.data(), 8 * D, idx_tmp_);
    if (::fsync(fd) != 0) throw io_error(idx_tmp_, "fsync", errno);
  } catch (...) {
    ::close(fd);
    throw;
  }
  if (::close(fd) != 0) throw io_error(idx_tmp_, "close", errno);

  // Publish: .bin first, so a visible .idx always has its .bin beside it.
  const std::string bin_final = bin_path(prefix_), idx_final = idx_path(prefix_);
  if (std::rename(bin_tmp_.c_str(), bin_final.c_str()) != 0)
    throw io_error(bin_final, "rename", errno);
  if (std::rename(idx_tmp_.c_str(), idx_final.c_str()) != 0)
    throw io_error(idx_final, "rename", errno);
  done_ = true;
  // Make the renames durable.
  const int dir = ::open(parent_dir(idx_final).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
}

}  // namespace mmidx
