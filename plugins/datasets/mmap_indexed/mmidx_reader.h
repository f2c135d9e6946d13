// mmap-indexed — reader of PREFIX.bin + PREFIX.idx: maps both files and validates all of the
// index up front, so that a bad file fails at open with the file and the problem named, not
// later in the middle of training.
#pragma once

#include <cstdint>
#include <string>

#include "mapped_file.h"
#include "megahost/megahost.h"
#include "mmidx_format.h"

namespace mmidx {

class Reader {
 public:
  // Throws sdk::Error (NOT_FOUND, DATA_LOSS, UNAVAILABLE) naming the file and a HINT.
  explicit Reader(const std::string& prefix);

  const std::string& prefix() const { return prefix_; }
  mh_token_dtype dtype() const { return dtype_; }
  int itemsize() const { return itemsize_; }
  uint64_t num_sequences() const { return num_sequences_; }
  uint64_t num_doc_entries() const { return num_doc_entries_; }  // D = documents + 1
  uint64_t num_tokens() const { return num_tokens_; }
  bool has_modes() const { return has_modes_; }

  int32_t sequence_length(uint64_t i) const { return load<int32_t>(lengths_ + 4 * i); }
  int64_t sequence_pointer(uint64_t i) const { return load<int64_t>(pointers_ + 8 * i); }
  int64_t document_index(uint64_t i) const { return load<int64_t>(doc_indices_ + 8 * i); }

  // Range copies; throw sdk::Error(MH_ERR_INVALID_ARG) when out of range. Thread-safe.
  void copy_sequence_lengths(uint64_t first, uint64_t count, int32_t* out) const;
  void copy_document_indices(uint64_t first, uint64_t count, int64_t* out) const;
  void read_tokens(uint64_t seq, uint64_t offset, uint64_t count, int64_t* out) const;

  // The raw bytes of the .bin and of the length / document-index arrays (for merging).
  const MappedFile& bin() const { return bin_; }
  const uint8_t* raw_lengths() const { return lengths_; }

 private:
  void validate_header();
  void validate_arrays();

  std::string prefix_;
  MappedFile idx_;
  MappedFile bin_;
  mh_token_dtype dtype_ = 0;
  int itemsize_ = 0;
  uint64_t num_sequences_ = 0;
  uint64_t num_doc_entries_ = 0;
  uint64_t num_tokens_ = 0;
  bool has_modes_ = false;
  const uint8_t* lengths_ = nullptr;      // S x int32, unaligned
  const uint8_t* pointers_ = nullptr;     // S x int64, unaligned
  const uint8_t* doc_indices_ = nullptr;  // D x int64, unaligned
};

}  // namespace mmidx
