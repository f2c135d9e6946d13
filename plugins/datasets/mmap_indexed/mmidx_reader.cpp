#include "mmidx_reader.h"

#include <cstring>
#include <limits>

#include "megahost/sdk/error.h"

namespace mmidx {

using megahost::sdk::Error;
using megahost::sdk::str_cat;

namespace {

constexpr const char* kMissingHint =
    "data_path takes the prefix without extension (\"corpus_text_document\" for "
    "corpus_text_document.bin and corpus_text_document.idx); check the path and that "
    "preprocessing finished (no corpus at hand: mock_data = true runs on Megatron's mock documents)";
constexpr const char* kRerunHint = "the preprocessing run was interrupted or the file was "
                                   "copied partially; re-run it (or copy the file again)";

[[noreturn]] void corrupt(const std::string& path, const std::string& what, const char* hint) {
  throw Error(MH_ERR_DATA_LOSS, str_cat(path, ": ", what, "; HINT: ", hint));
}

}  // namespace

Reader::Reader(const std::string& prefix)
    : prefix_(prefix), idx_(idx_path(prefix), kMissingHint), bin_(bin_path(prefix), kMissingHint) {
  validate_header();
  validate_arrays();
}

void Reader::validate_header() {
  const std::string& path = idx_.path();
  const uint8_t* p = idx_.data();
  const uint64_t size = idx_.size();
  if (size < kHeaderSize)
    corrupt(path, str_cat("truncated .idx: expected at least ", kHeaderSize,
                          " bytes of header, found ", size),
            kRerunHint);
  if (std::memcmp(p, kMagic, sizeof(kMagic)) != 0) {
    if (std::memcmp(p, "TNTIDX\0\0", 8) == 0)
      corrupt(path, "this is Megatron's old 'lazy'/'cached' index format (magic TNTIDX), not "
                    "mmap",
              "re-run preprocessing with --dataset-impl mmap (the default) or `megahost "
              "preprocess`");
    corrupt(path, "not a Megatron mmap index: the file does not start with \"MMIDIDX\\0\\0\"",
            "data_path must name files written by Megatron's preprocess_data.py or `megahost "
            "preprocess`");
  }
  const uint64_t version = load<uint64_t>(p + kOffVersion);
  if (version != kVersion)
    corrupt(path, str_cat("index version ", version, ", this reader knows version 1"),
            "the file was written by a newer or different tool; re-run preprocessing");
  dtype_ = static_cast<mh_token_dtype>(p[kOffDtype]);
  itemsize_ = mmidx::itemsize(dtype_);
  if (itemsize_ == 0)
    corrupt(path, str_cat("unknown dtype code ", static_cast<int>(p[kOffDtype]),
                          " (known: 1 uint8, 2 int8, 3 int16, 4 int32, 5 int64, 6 float64, "
                          "7 float32, 8 uint16)"),
            "the file is corrupt or not a Megatron index");
  num_sequences_ = load<uint64_t>(p + kOffSequences);
  num_doc_entries_ = load<uint64_t>(p + kOffDocuments);

  // Expected size 34 + 12 S + 8 D; plus S bytes of sequence modes in multimodal datasets.
  const uint64_t S = num_sequences_, D = num_doc_entries_;
  constexpr uint64_t kLimit = uint64_t{1} << 56;  // far above any real file, keeps sums exact
  if (S >= kLimit || D >= kLimit)
    corrupt(path, str_cat("header claims ", S, " sequences and ", D,
                          " document indices, more than any file can hold"),
            "the header is corrupt; re-run preprocessing");
  const uint64_t expected = kHeaderSize + 12 * S + 8 * D;
  if (size < expected)
    corrupt(path, str_cat("truncated .idx: expected ", expected, " bytes for ", S,
                          " sequences and ", D, " document indices, found ", size),
            kRerunHint);
  if (size == expected + S && S > 0) {
    has_modes_ = true;
  } else if (size != expected) {
    corrupt(path, str_cat(".idx is ", size, " bytes, expected ", expected, " for ", S,
                          " sequences and ", D, " document indices (or ", expected + S,
                          " with sequence modes)"),
            "the header does not match the arrays: the file is corrupt or was written by "
            "another tool; re-run preprocessing");
  }
  if (D == 0)
    corrupt(path, "no document indices (a valid index has at least the leading 0)",
            "the file is corrupt; re-run preprocessing");
  lengths_ = p + kHeaderSize;
  pointers_ = lengths_ + 4 * S;
  doc_indices_ = pointers_ + 8 * S;
}

void Reader::validate_arrays() {
  const std::string& path = idx_.path();
  const uint64_t S = num_sequences_, D = num_doc_entries_;
  // Pointers are contiguous: pointer[0] = 0, pointer[i+1] = pointer[i] + length[i] * itemsize.
  uint64_t expected_pointer = 0;
  for (uint64_t i = 0; i < S; ++i) {
    const int32_t length = sequence_length(i);
    if (length < 0)
      corrupt(path, str_cat("sequence ", i, " has negative length ", length),
              "the file is corrupt; re-run preprocessing");
    const int64_t pointer = sequence_pointer(i);
    if (pointer < 0 || static_cast<uint64_t>(pointer) != expected_pointer)
      corrupt(path, str_cat("sequence pointer ", i, " is ", pointer, ", expected ",
                            expected_pointer, " (the previous pointer plus its length times ",
                            itemsize_, " bytes)"),
              "the file is corrupt; re-run preprocessing");
    expected_pointer += static_cast<uint64_t>(length) * static_cast<uint64_t>(itemsize_);
    num_tokens_ += static_cast<uint64_t>(length);
  }
  // Document indices: boundaries in sequence space, starting at 0, never decreasing, <= S.
  int64_t previous = 0;
  for (uint64_t i = 0; i < D; ++i) {
    const int64_t d = document_index(i);
    if (i == 0 && d != 0)
      corrupt(path, str_cat("document index 0 is ", d, ", expected 0"),
              "the file is corrupt; re-run preprocessing");
    if (d < previous || static_cast<uint64_t>(d) > S)
      corrupt(path, str_cat("document index ", i, " is ", d, " (previous ", previous,
                            "): entries must not decrease and not exceed the ", S,
                            " sequences"),
              "the file is corrupt; re-run preprocessing");
    previous = d;
  }
  // The .bin holds exactly the tokens the index describes.
  const uint64_t bin_size = bin_.size();
  if (bin_size < expected_pointer)
    corrupt(bin_.path(), str_cat("truncated .bin: expected ", expected_pointer, " bytes (",
                                 num_tokens_, " ", dtype_name(dtype_), " tokens), found ",
                                 bin_size),
            kRerunHint);
  if (bin_size > expected_pointer)
    corrupt(bin_.path(), str_cat(".bin is ", bin_size, " bytes but ", idx_.path(),
                                 " describes ", expected_pointer, " (", num_tokens_, " ",
                                 dtype_name(dtype_), " tokens)"),
            "the .bin and .idx come from different runs (or the dtype is wrong); re-run "
            "preprocessing");
}

void Reader::copy_sequence_lengths(uint64_t first, uint64_t count, int32_t* out) const {
  if (first > num_sequences_ || count > num_sequences_ - first)
    throw Error(MH_ERR_INVALID_ARG, str_cat(prefix_, ": sequence lengths [", first, ", ",
                                            first + count, ") out of range, the dataset has ",
                                            num_sequences_, " sequences"));
  if (count > 0) std::memcpy(out, lengths_ + 4 * first, 4 * count);
}

void Reader::copy_document_indices(uint64_t first, uint64_t count, int64_t* out) const {
  if (first > num_doc_entries_ || count > num_doc_entries_ - first)
    throw Error(MH_ERR_INVALID_ARG, str_cat(prefix_, ": document indices [", first, ", ",
                                            first + count, ") out of range, the index has ",
                                            num_doc_entries_, " entries"));
  if (count > 0) std::memcpy(out, doc_indices_ + 8 * first, 8 * count);
}

namespace {

template <typename T>
void widen(const uint8_t* src, uint64_t count, int64_t* out) {
  for (uint64_t i = 0; i < count; ++i) out[i] = static_cast<int64_t>(load<T>(src + i * sizeof(T)));
}

}  // namespace

void Reader::read_tokens(uint64_t seq, uint64_t offset, uint64_t count, int64_t* out) const {
  if (seq >= num_sequences_)
    throw Error(MH_ERR_INVALID_ARG, str_cat(prefix_, ": sequence ", seq,
                                            " out of range, the dataset has ", num_sequences_));
  const auto length = static_cast<uint64_t>(sequence_length(seq));
  if (offset > length || count > length - offset)
    throw Error(MH_ERR_INVALID_ARG, str_cat(prefix_, ": tokens [", offset, ", ", offset + count,
                                            ") of sequence ", seq, " out of range, it has ",
                                            length));
  if (count == 0) return;
  const uint8_t* src = bin_.data() + static_cast<uint64_t>(sequence_pointer(seq)) +
                       offset * static_cast<uint64_t>(itemsize_);
  switch (dtype_) {
    case MH_DTYPE_UINT8: widen<uint8_t>(src, count, out); break;
    case MH_DTYPE_INT8: widen<int8_t>(src, count, out); break;
    case MH_DTYPE_INT16: widen<int16_t>(src, count, out); break;
    case MH_DTYPE_UINT16: widen<uint16_t>(src, count, out); break;
    case MH_DTYPE_INT32: widen<int32_t>(src, count, out); break;
    case MH_DTYPE_INT64: widen<int64_t>(src, count, out); break;
    case MH_DTYPE_FLOAT32: widen<float>(src, count, out); break;
    case MH_DTYPE_FLOAT64: widen<double>(src, count, out); break;
    default: throw Error(MH_ERR_INTERNAL, "unknown dtype after validation");
  }
}

}  // namespace mmidx
