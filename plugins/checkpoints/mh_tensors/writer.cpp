#include "writer.h"

#include <filesystem>

#include "dtype.h"
#include "megahost/sdk/crc32.h"
#include "megahost/sdk/error.h"

namespace megahost::mh_tensors {

namespace fs = std::filesystem;
using sdk::str_cat;

static_assert(sizeof(void*) == 8, "megahost-tensors assumes a 64-bit host");

namespace {

bool is_little_endian() {
  const uint16_t one = 1;
  return *reinterpret_cast<const uint8_t*>(&one) == 1;
}

// Row-major and dense: strides NULL (DLPack's compact convention) or equal to compact strides.
bool is_compact(const DLTensor* t) {
  if (t->strides == nullptr) return true;
  int64_t expected = 1;
  for (int32_t d = t->ndim - 1; d >= 0; --d) {
    if (t->shape[d] != 1 && t->strides[d] != expected) return false;
    expected *= t->shape[d];
  }
  return true;
}

}  // namespace

Writer::Writer(std::string dir) : dir_(std::move(dir)) {
  MH_CHECK(is_little_endian(), MH_ERR_UNSUPPORTED, "megahost-tensors stores little-endian payloads only");
  MH_CHECK(!dir_.empty(), MH_ERR_INVALID_ARG, "checkpoint folder is empty. HINT: set [checkpoint] save");
  // Remember which folders we make, so abort can take them away again.
  for (fs::path p = fs::path(dir_); !p.empty() && !fs::exists(p); p = p.parent_path()) {
    created_dirs_.insert(created_dirs_.begin(), p.string());
    if (p == p.parent_path()) break;
  }
  std::error_code ec;
  fs::create_directories(dir_, ec);
  MH_CHECK(!ec, MH_ERR_UNAVAILABLE, "cannot create checkpoint folder ", dir_, ": ", ec.message());
  MH_CHECK(!fs::exists(path(kIndexFile)), MH_ERR_INVALID_ARG, dir_, " already holds a committed checkpoint (",
           kIndexFile, "). HINT: write each checkpoint into a fresh folder");
  data_ = File::create(path(kDataFile));
}

Writer::~Writer() {
  if (!done_) abort();
}

void Writer::tensor(const char* name, const DLTensor* t) {
  MH_CHECK(name != nullptr && t != nullptr, MH_ERR_INVALID_ARG, "writer_tensor: null name or tensor");
  MH_CHECK(t->device.device_type == kDLCPU || t->device.device_type == kDLCUDAHost, MH_ERR_INVALID_ARG,
           "tensor '", name, "' is on device type ", int(t->device.device_type),
           "; checkpoint formats take host memory. HINT: the core copies device tensors to the host first");
  MH_CHECK(is_compact(t), MH_ERR_INVALID_ARG, "tensor '", name, "' is not contiguous. HINT: pass a contiguous copy");
  MH_CHECK(t->ndim >= 0 && (t->ndim == 0 || t->shape != nullptr), MH_ERR_INVALID_ARG, "tensor '", name,
           "' has a bad shape");
  Entry e;
  e.name = name;
  e.dtype = t->dtype;
  e.shape.assign(t->shape, t->shape + t->ndim);
  uint64_t numel = 1;
  for (int64_t d : e.shape) {
    MH_CHECK(d >= 0, MH_ERR_INVALID_ARG, "tensor '", name, "' has a negative dimension in ",
             shape_str(t->shape, t->ndim));
    numel *= uint64_t(d);
  }
  e.nbytes = numel * itemsize(t->dtype);
  append(std::move(e), static_cast<const char*>(t->data) + t->byte_offset);
}

void Writer::blob(const char* name, const void* bytes, size_t len) {
  MH_CHECK(name != nullptr && (bytes != nullptr || len == 0), MH_ERR_INVALID_ARG, "writer_blob: null name or bytes");
  Entry e;
  e.name = name;
  e.is_blob = true;
  e.nbytes = len;
  append(std::move(e), bytes);
}

void Writer::append(Entry e, const void* data) {
  MH_CHECK(!done_, MH_ERR_INVALID_ARG, "writer used after commit/abort");
  MH_CHECK(!broken_, MH_ERR_UNAVAILABLE, "an earlier write to ", data_.path(),
           " failed; this checkpoint cannot be completed. HINT: abort it and save again");
  MH_CHECK(!e.name.empty(), MH_ERR_INVALID_ARG, "checkpoint entry names must not be empty");
  MH_CHECK(names_.count(e.name) == 0, MH_ERR_INVALID_ARG, "entry '", e.name, "' was already written to ", dir_,
           ". HINT: names in one checkpoint must be unique");
  broken_ = true;  // until the payload is fully written
  static const char kZeros[kAlignment] = {};
  const uint64_t pad = (kAlignment - offset_ % kAlignment) % kAlignment;
  data_.write_all(kZeros, pad);
  e.offset = offset_ + pad;
  data_.write_all(data, e.nbytes);
  e.crc32 = sdk::crc32_of(data, e.nbytes);
  offset_ = e.offset + e.nbytes;
  broken_ = false;
  names_.insert(e.name);
  index_.entries.push_back(std::move(e));
}

void Writer::commit() {
  MH_CHECK(!done_, MH_ERR_INVALID_ARG, "writer_commit called twice");
  MH_CHECK(!broken_, MH_ERR_UNAVAILABLE, "an earlier write to ", data_.path(),
           " failed; this checkpoint cannot be committed. HINT: save again");
  // The payloads must be durable before the index that points at them exists.
  data_.sync();
  data_.close();
  index_.data_file_size = offset_;
  const std::string text = index_to_json(index_);
  const std::string tmp = path("index.json.tmp");
  File f = File::create(tmp);
  f.write_all(text.data(), text.size());
  f.sync();
  f.close();
  rename_file(tmp, path(kIndexFile));
  published_ = true;
  sync_dir(dir_);  // makes the rename durable
  // Folders we created must be durable in their parents too.
  for (const std::string& d : created_dirs_) {
    const fs::path parent = fs::path(d).parent_path();
    sync_dir(parent.empty() ? "." : parent.string());
  }
  done_ = true;
}

void Writer::abort() noexcept {
  done_ = true;
  data_ = File();
  remove_quietly(path("index.json.tmp"));
  if (published_) remove_quietly(path(kIndexFile));  // commit failed after the rename
  remove_quietly(path(kDataFile));
  for (auto it = created_dirs_.rbegin(); it != created_dirs_.rend(); ++it) {
    std::error_code ec;
    fs::remove(*it, ec);  // only removes empty folders: never anything we did not create
  }
}

}  // namespace megahost::mh_tensors
