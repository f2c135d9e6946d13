// mmap-indexed — writer of PREFIX.bin + PREFIX.idx, byte-identical to Megatron's
// IndexedDatasetBuilder. Tokens stream to PREFIX.bin.tmp through a large buffer; the small
// arrays (lengths, document indices) stay in memory. finalize writes PREFIX.idx.tmp, fsyncs
// both and renames them into place, so nothing appears under the final names until the data
// is complete. A writer destroyed before finalize removes its temporary files.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "megahost/megahost.h"

namespace mmidx {

class Writer {
 public:
  // Throws sdk::Error naming the file when the temporary .bin cannot be created.
  Writer(const std::string& prefix, mh_token_dtype dtype);
  ~Writer();  // removes the temporaries unless finalize() succeeded
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  // One sequence; every token must fit the dtype (MH_ERR_INVALID_ARG names it otherwise).
  // An empty sequence is recorded with length 0, as Megatron's builder does.
  void add_sequence(const int32_t* tokens, size_t n);
  // Closes a document: pushes the running sequence count. An empty document (no sequence since
  // the last boundary) still gets its entry, as Megatron's builder gives it.
  void end_document();
  // Appends a whole dataset (a shard): its .bin bytes, its lengths, its document indices
  // shifted by the current sequence count without their leading 0. Same dtype required.
  void add_dataset(const std::string& other_prefix);
  // Writes the index and publishes both files.
  void finalize();
  // Removes the temporaries (idempotent).
  void abort() noexcept;

 private:
  void flush();
  void write_all(int fd, const void* data, size_t n, const std::string& path);

  std::string prefix_;
  mh_token_dtype dtype_;
  int itemsize_;
  std::string bin_tmp_, idx_tmp_;
  int bin_fd_ = -1;
  std::vector<uint8_t> buffer_;  // pending .bin bytes
  size_t buffered_ = 0;
  std::vector<int32_t> lengths_;
  std::vector<int64_t> doc_indices_{0};
  bool done_ = false;
};

}  // namespace mmidx
