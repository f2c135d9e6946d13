#include "reader.h"

#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "dtype.h"
#include "megahost/sdk/crc32.h"
#include "megahost/sdk/error.h"

namespace megahost::mh_tensors {

namespace fs = std::filesystem;
using sdk::str_cat;

namespace {

constexpr const char* kOlderHint = "HINT: the checkpoint is damaged; load an older checkpoint";

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  MH_CHECK(in.good(), MH_ERR_UNAVAILABLE, "cannot open ", path);
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

}  // namespace

Reader::Reader(std::string dir) : dir_(std::move(dir)) {
  MH_CHECK(fs::is_directory(dir_), MH_ERR_NOT_FOUND, "checkpoint folder ", dir_,
           " does not exist. HINT: check [checkpoint] load");
  const std::string index_path = dir_ + "/" + kIndexFile;
  MH_CHECK(fs::exists(index_path), MH_ERR_NOT_FOUND, "no ", kIndexFile, " in ", dir_,
           ": the checkpoint was never committed (a crash during save?) or is not a megahost-tensors checkpoint. ",
           "HINT: load an older checkpoint");
  index_ = index_from_json(read_text(index_path), index_path);
  for (size_t i = 0; i < index_.entries.size(); ++i) by_name_.emplace(index_.entries[i].name, i);

  data_ = File::open_read(dir_ + "/" + kDataFile);
  const uint64_t size = data_.size();
  if (size < index_.data_file_size) {
    for (const Entry& e : index_.entries)
      MH_CHECK(e.offset + e.nbytes <= size, MH_ERR_DATA_LOSS, data_.path(), " is truncated: ", size,
               " bytes, but entry '", e.name, "' needs bytes [", e.offset, ", ", e.offset + e.nbytes, ") and ",
               kIndexFile, " expects ", index_.data_file_size, " bytes. ", kOlderHint);
    throw sdk::Error(MH_ERR_DATA_LOSS, str_cat(data_.path(), " is truncated: ", size, " bytes, ", kIndexFile,
                                               " expects ", index_.data_file_size, ". ", kOlderHint));
  }
  MH_CHECK(size == index_.data_file_size, MH_ERR_DATA_LOSS, data_.path(), " has ", size, " bytes, but ", kIndexFile,
           " expects ", index_.data_file_size, ": the two files do not belong together. ", kOlderHint);
}

const Entry& Reader::find(const char* name, bool blob) const {
  MH_CHECK(name != nullptr, MH_ERR_INVALID_ARG, "null entry name");
  auto it = by_name_.find(name);
  MH_CHECK(it != by_name_.end(), MH_ERR_NOT_FOUND, "checkpoint ", dir_, " has no entry '", name, "' (",
           index_.entries.size(), " entries). HINT: list the entries (", kIndexFile,
           ") to see the stored names; was it saved with another model or optimizer configuration?");
  const Entry& e = index_.entries[it->second];
  MH_CHECK(e.is_blob == blob, MH_ERR_INVALID_ARG, "entry '", name, "' in ", dir_, " is a ",
           e.is_blob ? "blob" : "tensor", ", not a ", blob ? "blob" : "tensor",
           ". HINT: tensors are read with reader_tensor, blobs with reader_blob");
  return e;
}

void Reader::verify(const Entry& e, const void* payload) const {
  const uint32_t crc = sdk::crc32_of(payload, e.nbytes);
  MH_CHECK(crc == e.crc32, MH_ERR_DATA_LOSS, "checksum mismatch for entry '", e.name, "' in ",
           data_.path(), " (bytes [", e.offset, ", ", e.offset + e.nbytes, "), crc32 ", crc,
           ", index says ", e.crc32, "). ", kOlderHint);
}

void Reader::tensor(const char* name, DLTensor* dst) const {
  const Entry& e = find(name, /*blob=*/false);
  MH_CHECK(dst != nullptr, MH_ERR_INVALID_ARG, "reader_tensor: null destination for '", name, "'");
  MH_CHECK(dst->device.device_type == kDLCPU || dst->device.device_type == kDLCUDAHost, MH_ERR_INVALID_ARG,
           "reader_tensor: destination for '", name, "' must be host memory");
  MH_CHECK(same_dtype(dst->dtype, e.dtype), MH_ERR_INVALID_ARG, "entry '", name, "' in ", dir_, " is ",
           dtype_name(e.dtype), " but the destination is ", dtype_name(dst->dtype),
           ". HINT: was the checkpoint saved with another precision?");
  const bool same_shape = dst->ndim == int32_t(e.shape.size()) &&
                          std::equal(e.shape.begin(), e.shape.end(), dst->shape);
  MH_CHECK(same_shape, MH_ERR_INVALID_ARG, "entry '", name, "' in ", dir_, " has shape ",
           shape_str(e.shape.data(), int32_t(e.shape.size())), " but the destination has shape ",
           shape_str(dst->shape, dst->ndim), ". HINT: was the checkpoint saved with another model configuration?");
  if (dst->strides != nullptr) {
    int64_t expected = 1;
    for (int32_t d = dst->ndim - 1; d >= 0; --d) {
      MH_CHECK(dst->shape[d] == 1 || dst->strides[d] == expected, MH_ERR_INVALID_ARG, "reader_tensor: destination for '",
               name, "' is not contiguous");
      expected *= dst->shape[d];
    }
  }
  char* out = static_cast<char*>(dst->data) + dst->byte_offset;
  data_.pread_all(out, e.nbytes, e.offset);
  verify(e, out);
}

size_t Reader::blob(const char* name, void* buf, size_t cap) const {
  const Entry& e = find(name, /*blob=*/true);
  if (cap == 0) return e.nbytes;  // a size query copies nothing, so there is nothing to verify
  MH_CHECK(buf != nullptr, MH_ERR_INVALID_ARG, "reader_blob: null buffer with cap ", cap);
  if (cap >= e.nbytes) {
    data_.pread_all(buf, e.nbytes, e.offset);
    verify(e, buf);
  } else {
    std::vector<char> whole(e.nbytes);
    data_.pread_all(whole.data(), e.nbytes, e.offset);
    verify(e, whole.data());
    std::copy(whole.begin(), whole.begin() + std::ptrdiff_t(cap), static_cast<char*>(buf));
  }
  return e.nbytes;
}

}  // namespace megahost::mh_tensors
