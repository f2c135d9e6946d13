#include "st_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "megahost/sdk/crc32.h"
#include "megahost/sdk/error.h"

namespace megahost::st_ckpt {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kHint = "HINT: the checkpoint is damaged; load an older checkpoint";
constexpr uint64_t kMaxHeader = 100u << 20;  // safetensors' own limit on the header size

std::string os_error() { return std::strerror(errno); }

// safetensors dtype names (the spec's table) <-> DLPack.
const std::pair<const char*, DLDataType> kDtypes[] = {
    {"F64", {kDLFloat, 64, 1}},  {"F32", {kDLFloat, 32, 1}}, {"F16", {kDLFloat, 16, 1}},
    {"BF16", {kDLBfloat, 16, 1}}, {"I64", {kDLInt, 64, 1}},   {"I32", {kDLInt, 32, 1}},
    {"I16", {kDLInt, 16, 1}},    {"I8", {kDLInt, 8, 1}},     {"U8", {kDLUInt, 8, 1}},
    {"BOOL", {kDLUInt, 1, 1}},   {"BOOL", {6, 8, 1}},        // torch's bool under DLPack 0.6 / >= 0.8
};

bool same(DLDataType a, DLDataType b) { return a.code == b.code && a.bits == b.bits && a.lanes == b.lanes; }

const char* dtype_name(DLDataType t) {
  for (const auto& [n, d] : kDtypes)
    if (same(d, t)) return n;
  return nullptr;
}

uint64_t itemsize(DLDataType t) { return (uint64_t(t.bits) * t.lanes + 7) / 8; }

void write_all(int fd, const void* data, uint64_t n, const std::string& path) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    MH_CHECK(w > 0, MH_ERR_UNAVAILABLE, "write to ", path, " failed: ", os_error(), ". HINT: check free disk space");
    p += w;
    n -= uint64_t(w);
  }
}

void pread_all(int fd, void* data, uint64_t n, uint64_t offset, const std::string& path) {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    const ssize_t r = ::pread(fd, p, n, off_t(offset));
    if (r < 0 && errno == EINTR) continue;
    MH_CHECK(r >= 0, MH_ERR_UNAVAILABLE, "read from ", path, " failed: ", os_error());
    MH_CHECK(r > 0, MH_ERR_DATA_LOSS, path, " ends at byte ", offset, " before the data its header lists. ", kHint);
    p += r;
    n -= uint64_t(r);
    offset += uint64_t(r);
  }
}

void fsync_path(const std::string& path, int flags) {
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  MH_CHECK(fd >= 0, MH_ERR_UNAVAILABLE, "cannot open ", path, ": ", os_error());
  const int rc = ::fsync(fd);
  ::close(fd);
  MH_CHECK(rc == 0, MH_ERR_UNAVAILABLE, "fsync of ", path, " failed: ", os_error());
}

}  // namespace

// ---- Writer ----

Writer::Writer(std::string dir) : dir_(std::move(dir)) {
  MH_CHECK(!dir_.empty(), MH_ERR_INVALID_ARG, "checkpoint folder is empty. HINT: set [checkpoint] save");
  std::error_code ec;
  fs::create_directories(dir_, ec);
  MH_CHECK(!ec, MH_ERR_UNAVAILABLE, "cannot create checkpoint folder ", dir_, ": ", ec.message());
  MH_CHECK(!fs::exists(dir_ + "/" + kFile), MH_ERR_INVALID_ARG, dir_, " already holds a committed checkpoint (",
           kFile, "). HINT: write each checkpoint into a fresh folder");
  const std::string payload = dir_ + "/" + kFile + ".payload";
  payload_fd_ = ::open(payload.c_str(), O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0644);
  MH_CHECK(payload_fd_ >= 0, MH_ERR_UNAVAILABLE, "cannot create ", payload, ": ", os_error(),
           ". HINT: check that the checkpoint folder is writable");
}

Writer::~Writer() {
  if (!done_) abort();
}

void Writer::tensor(const char* name, const DLTensor* t) {
  MH_CHECK(name != nullptr && t != nullptr, MH_ERR_INVALID_ARG, "writer_tensor: null name or tensor");
  MH_CHECK(t->device.device_type == kDLCPU || t->device.device_type == kDLCUDAHost, MH_ERR_INVALID_ARG, "tensor '",
           name, "' is not in host memory. HINT: the core copies device tensors to the host first");
  MH_CHECK(dtype_name(t->dtype) != nullptr, MH_ERR_UNSUPPORTED, "tensor '", name, "': dtype (code ",
           int(t->dtype.code), ", bits ", int(t->dtype.bits), ") has no safetensors name",
           ". HINT: use the megahost-tensors format for this state");
  Entry e;
  e.name = name;
  e.dtype = t->dtype;
  e.shape.assign(t->shape, t->shape + t->ndim);
  uint64_t numel = 1;
  int64_t expected = 1;  // row-major contiguous only: the core passes contiguous host copies
  for (int32_t d = t->ndim - 1; d >= 0; --d) {
    MH_CHECK(t->shape[d] >= 0, MH_ERR_INVALID_ARG, "tensor '", name, "' has a negative dimension");
    MH_CHECK(t->strides == nullptr || t->shape[d] == 1 || t->strides[d] == expected, MH_ERR_INVALID_ARG, "tensor '",
             name, "' is not contiguous. HINT: pass a contiguous copy");
    expected *= t->shape[d];
    numel *= uint64_t(t->shape[d]);
  }
  append(std::move(e), static_cast<const char*>(t->data) + t->byte_offset, numel * itemsize(t->dtype));
}

void Writer::blob(const char* name, const void* bytes, size_t len) {
  MH_CHECK(name != nullptr && (bytes != nullptr || len == 0), MH_ERR_INVALID_ARG, "writer_blob: null name or bytes");
  Entry e;
  e.name = name;
  e.is_blob = true;
  e.shape = {int64_t(len)};
  append(std::move(e), bytes, len);
}

void Writer::append(Entry e, const void* data, uint64_t n) {
  MH_CHECK(!done_, MH_ERR_INVALID_ARG, "writer used after commit/abort");
  MH_CHECK(!e.name.empty() && e.name != "__metadata__", MH_ERR_INVALID_ARG, "entry name '", e.name,
           "' is not allowed in safetensors");
  MH_CHECK(names_.count(e.name) == 0, MH_ERR_INVALID_ARG, "entry '", e.name, "' was already written to ", dir_,
           ". HINT: names in one checkpoint must be unique");
  write_all(payload_fd_, data, n, dir_ + "/" + kFile + ".payload");
  e.begin = offset_;
  e.end = offset_ + n;  // safetensors packs payloads without gaps
  e.crc32 = sdk::crc32_of(data, n);
  offset_ = e.end;
  names_[e.name] = entries_.size();
  entries_.push_back(std::move(e));
}

void Writer::commit() {
  MH_CHECK(!done_, MH_ERR_INVALID_ARG, "writer_commit called twice");
  json header = json::object();
  json blobs = json::array(), crcs = json::object();
  for (const Entry& e : entries_) {
    header[e.name] = {{"dtype", dtype_name(e.dtype)}, {"shape", e.shape}, {"data_offsets", {e.begin, e.end}}};
    if (e.is_blob) blobs.push_back(e.name);
    crcs[e.name] = e.crc32;
  }
  // __metadata__ holds strings only (the spec): the blob list and the checksums as JSON text.
  header["__metadata__"] = {{"format", "megahost-checkpoint"}, {"megahost.blobs", blobs.dump()},
                            {"megahost.crc32", crcs.dump()}};
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // the data section starts 8-byte aligned
  const std::string tmp = dir_ + "/" + kFile + ".tmp";
  const int fd = ::open(tmp.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
  MH_CHECK(fd >= 0, MH_ERR_UNAVAILABLE, "cannot create ", tmp, ": ", os_error());
  try {
    uint8_t len[8];
    for (int i = 0; i < 8; ++i) len[i] = uint8_t(uint64_t(text.size()) >> (8 * i));  // little-endian u64
    write_all(fd, len, 8, tmp);
    write_all(fd, text.data(), text.size(), tmp);
    std::vector<char> buf(8u << 20);  // the payloads, copied in 8 MB pieces: never the whole model
    for (uint64_t off = 0; off < offset_;) {
      const uint64_t n = std::min<uint64_t>(buf.size(), offset_ - off);
      pread_all(payload_fd_, buf.data(), n, off, dir_ + "/" + kFile + ".payload");
      write_all(fd, buf.data(), n, tmp);
      off += n;
    }
    MH_CHECK(::fsync(fd) == 0, MH_ERR_UNAVAILABLE, "fsync of ", tmp, " failed: ", os_error());
  } catch (...) {
    ::close(fd);
    throw;
  }
  MH_CHECK(::close(fd) == 0, MH_ERR_UNAVAILABLE, "close of ", tmp, " failed: ", os_error());
  MH_CHECK(::rename(tmp.c_str(), (dir_ + "/" + kFile).c_str()) == 0, MH_ERR_UNAVAILABLE, "cannot rename ", tmp, ": ",
           os_error());
  ::close(payload_fd_);
  payload_fd_ = -1;
  ::unlink((dir_ + "/" + kFile + ".payload").c_str());
  fsync_path(dir_, O_RDONLY | O_DIRECTORY);
  done_ = true;
}

void Writer::abort() noexcept {
  done_ = true;
  if (payload_fd_ >= 0) ::close(payload_fd_);
  payload_fd_ = -1;
  ::unlink((dir_ + "/" + kFile + ".payload").c_str());
  ::unlink((dir_ + "/" + kFile + ".tmp").c_str());
}

// ---- Reader ----

Reader::Reader(std::string dir) : path_(std::move(dir) + "/" + kFile) {
  fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  MH_CHECK(fd_ >= 0 || errno != ENOENT, MH_ERR_NOT_FOUND, "no ", path_,
           ": the checkpoint was never committed (a crash during save?) or is not a safetensors checkpoint. ",
           "HINT: load an older checkpoint");
  MH_CHECK(fd_ >= 0, MH_ERR_UNAVAILABLE, "cannot open ", path_, ": ", os_error());
  struct stat st {};
  MH_CHECK(::fstat(fd_, &st) == 0, MH_ERR_UNAVAILABLE, "cannot stat ", path_, ": ", os_error());
  const uint64_t size = uint64_t(st.st_size);
  MH_CHECK(size >= 8, MH_ERR_DATA_LOSS, path_, " is ", size, " bytes: shorter than the header length. ", kHint);
  uint8_t len[8];
  pread_all(fd_, len, 8, 0, path_);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t(len[i]) << (8 * i);
  MH_CHECK(n <= kMaxHeader && 8 + n <= size, MH_ERR_DATA_LOSS, path_, ": header length ", n, " does not fit the ", size,
           "-byte file. ", kHint);
  std::string text(n, '\0');
  pread_all(fd_, text.data(), n, 8, path_);
  data_start_ = 8 + n;
  json header;
  try {
    header = json::parse(text);
  } catch (const json::exception& e) {
    throw sdk::Error(MH_ERR_DATA_LOSS, sdk::str_cat(path_, ": the header is not JSON (", e.what(), "). ", kHint));
  }
  MH_CHECK(header.is_object(), MH_ERR_DATA_LOSS, path_, ": the header is not a JSON object. ", kHint);
  json blobs = json::array(), crcs = json::object();
  if (header.contains("__metadata__")) {
    const json& meta = header["__metadata__"];
    if (meta.contains("megahost.blobs")) blobs = json::parse(meta["megahost.blobs"].get<std::string>());
    if (meta.contains("megahost.crc32")) crcs = json::parse(meta["megahost.crc32"].get<std::string>());
  }
  uint64_t data_end = 0;
  for (const auto& [name, v] : header.items()) {
    if (name == "__metadata__") continue;
    Entry e;
    e.name = name;
    const std::string dt = v.at("dtype").get<std::string>();
    bool known = false;
    for (const auto& [dn, d] : kDtypes)
      if (!known && dt == dn) e.dtype = d, known = true;
    MH_CHECK(known, MH_ERR_UNSUPPORTED, path_, ": tensor '", name, "' has dtype ", dt, " this format does not read");
    e.shape = v.at("shape").get<std::vector<int64_t>>();
    e.begin = v.at("data_offsets").at(0).get<uint64_t>();
    e.end = v.at("data_offsets").at(1).get<uint64_t>();
    uint64_t numel = 1;
    for (int64_t d : e.shape) numel *= uint64_t(d);
    MH_CHECK(e.begin <= e.end && e.end - e.begin == numel * itemsize(e.dtype), MH_ERR_DATA_LOSS, path_, ": tensor '",
             name, "' has ", e.end - e.begin, " bytes for its shape and dtype's ", numel * itemsize(e.dtype), ". ",
             kHint);
    e.is_blob = std::find(blobs.begin(), blobs.end(), name) != blobs.end();
    if (crcs.contains(name)) e.crc32 = crcs[name].get<uint32_t>();
    data_end = std::max(data_end, e.end);
    entries_.push_back(std::move(e));
  }
  // Completeness without reading a payload: the file is exactly header + data section.
  MH_CHECK(data_start_ + data_end == size, MH_ERR_DATA_LOSS, path_, " has ", size, " bytes, its header promises ",
           data_start_ + data_end, ". ", kHint);
  // The writer's order (the core reads meta.json and the tensors by name, but listing keeps it).
  std::sort(entries_.begin(), entries_.end(), [](const Entry& a, const Entry& b) { return a.begin < b.begin; });
  for (size_t i = 0; i < entries_.size(); ++i) by_name_[entries_[i].name] = i;
  crc_checked_ = crcs.is_object() && !crcs.empty();
}

Reader::~Reader() {
  if (fd_ >= 0) ::close(fd_);
}

const Entry& Reader::find(const char* name, bool blob) const {
  MH_CHECK(name != nullptr, MH_ERR_INVALID_ARG, "null entry name");
  auto it = by_name_.find(name);
  MH_CHECK(it != by_name_.end(), MH_ERR_NOT_FOUND, path_, " has no entry '", name, "' (", entries_.size(),
           " entries). HINT: was it saved with another model or optimizer configuration?");
  const Entry& e = entries_[it->second];
  MH_CHECK(e.is_blob == blob, MH_ERR_INVALID_ARG, "entry '", name, "' in ", path_, " is a ",
           e.is_blob ? "blob" : "tensor", ", not a ", blob ? "blob" : "tensor");
  return e;
}

void Reader::read_checked(const Entry& e, void* out) const {
  pread_all(fd_, out, e.end - e.begin, data_start_ + e.begin, path_);
  if (!crc_checked_) return;  // a safetensors file from elsewhere has no checksums
  const uint32_t crc = sdk::crc32_of(out, e.end - e.begin);
  MH_CHECK(crc == e.crc32, MH_ERR_DATA_LOSS, "checksum mismatch for entry '", e.name, "' in ", path_, " (crc32 ", crc,
           ", header says ", e.crc32, "). ", kHint);
}

void Reader::tensor(const char* name, DLTensor* dst) const {
  const Entry& e = find(name, /*blob=*/false);
  MH_CHECK(dst != nullptr && (dst->device.device_type == kDLCPU || dst->device.device_type == kDLCUDAHost),
           MH_ERR_INVALID_ARG, "reader_tensor: destination for '", name, "' must be host memory");
  MH_CHECK(same(dst->dtype, e.dtype), MH_ERR_INVALID_ARG, "entry '", name, "' in ", path_, " is ",
           dtype_name(e.dtype), " but the destination is not. HINT: was it saved with another precision?");
  MH_CHECK(dst->ndim == int32_t(e.shape.size()) && std::equal(e.shape.begin(), e.shape.end(), dst->shape),
           MH_ERR_INVALID_ARG, "entry '", name, "' in ", path_,
           " has another shape than the destination. HINT: was it saved with another model configuration?");
  read_checked(e, static_cast<char*>(dst->data) + dst->byte_offset);
}

size_t Reader::blob(const char* name, void* buf, size_t cap) const {
  const Entry& e = find(name, /*blob=*/true);
  const uint64_t n = e.end - e.begin;
  if (cap == 0) return n;
  MH_CHECK(buf != nullptr, MH_ERR_INVALID_ARG, "reader_blob: null buffer with cap ", cap);
  std::vector<char> whole(n);
  read_checked(e, whole.data());
  std::memcpy(buf, whole.data(), std::min<uint64_t>(cap, n));
  return n;
}

}  // namespace megahost::st_ckpt
