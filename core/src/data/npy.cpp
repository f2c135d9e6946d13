// .npy reading (mapped) and atomic writing, from numpy's documented format (numpy.lib.format).
#include "megahost/core/data/npy.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <random>
#include <utility>

#include "megahost/core/error.h"

namespace megahost::core::data {

namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicLen = 6;
constexpr size_t kAlign = 64;  // numpy.save aligns the data to 64 bytes

struct DTypeName {
  NpyDType t;
  const char* descr;  // as numpy writes it on a little-endian machine
  const char* name;
  size_t itemsize;
};
constexpr DTypeName kDTypes[] = {
    {NpyDType::Int16, "<i2", "int16", 2},  {NpyDType::Int32, "<i4", "int32", 4},
    {NpyDType::Int64, "<i8", "int64", 8},  {NpyDType::UInt32, "<u4", "uint32", 4},
    {NpyDType::UInt16, "<u2", "uint16", 2}, {NpyDType::UInt8, "|u1", "uint8", 1},
    {NpyDType::Int8, "|i1", "int8", 1},
};

const DTypeName& info(NpyDType t) {
  for (const auto& d : kDTypes)
    if (d.t == t) return d;
  throw Error("npy: unknown dtype");
}

// The text after `'key':` in a Python dict literal, or npos.
size_t value_of(const std::string& h, const char* key) {
  const std::string quoted1 = cat("'", key, "'"), quoted2 = cat("\"", key, "\"");
  size_t k = h.find(quoted1);
  size_t len = quoted1.size();
  if (k == std::string::npos) {
    k = h.find(quoted2);
    len = quoted2.size();
  }
  if (k == std::string::npos) return std::string::npos;
  size_t colon = h.find(':', k + len);
  if (colon == std::string::npos) return std::string::npos;
  size_t v = colon + 1;
  while (v < h.size() && h[v] == ' ') ++v;
  return v;
}

}  // namespace

const char* npy_dtype_name(NpyDType t) { return info(t).name; }
size_t npy_itemsize(NpyDType t) { return info(t).itemsize; }

int64_t NpyHeader::count() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

NpyHeader parse_npy_header(const char* bytes, size_t size, const std::string& what) {
  const std::string hint = "\nHINT: the file is not a .npy file or was cut short; delete it and it is rebuilt";
  MH_CORE_CHECK(size >= kMagicLen + 4 && std::memcmp(bytes, kMagic, kMagicLen) == 0, what,
                ": not a .npy file (bad magic)", hint);
  const auto major = static_cast<uint8_t>(bytes[6]);
  size_t header_len = 0, prefix = 0;
  if (major == 1) {
    header_len = static_cast<uint8_t>(bytes[8]) | (static_cast<size_t>(static_cast<uint8_t>(bytes[9])) << 8);
    prefix = kMagicLen + 4;
  } else if (major == 2 || major == 3) {
    MH_CORE_CHECK(size >= kMagicLen + 6, what, ": truncated .npy header", hint);
    for (int i = 3; i >= 0; --i) header_len = (header_len << 8) | static_cast<uint8_t>(bytes[8 + i]);
    prefix = kMagicLen + 6;
  } else {
    throw Error(cat(what, ": .npy format version ", int(major), ".", int(static_cast<uint8_t>(bytes[7])),
                    " is not supported (1.0, 2.0 and 3.0 are)"));
  }
  MH_CORE_CHECK(prefix + header_len <= size, what, ": truncated .npy header (", header_len,
                " header bytes announced, file has ", size, ")", hint);
  const std::string h(bytes + prefix, header_len);
  NpyHeader out;
  out.data_offset = prefix + header_len;

  const size_t d = value_of(h, "descr");
  MH_CORE_CHECK(d != std::string::npos && d < h.size() && (h[d] == '\'' || h[d] == '"'), what,
                ": .npy header has no 'descr': ", h);
  const size_t d_end = h.find(h[d], d + 1);
  MH_CORE_CHECK(d_end != std::string::npos, what, ": malformed 'descr' in .npy header: ", h);
  std::string descr = h.substr(d + 1, d_end - d - 1);
  if (descr.size() == 3 && descr[0] == '=') descr[0] = '<';  // native order on a little-endian host
  bool found = false;
  for (const auto& t : kDTypes) {
    const bool same = descr == t.descr || (t.itemsize == 1 && descr.size() == 3 && descr.substr(1) ==
                                                                std::string(t.descr).substr(1));
    if (same) {
      out.dtype = t.t;
      found = true;
    }
  }
  MH_CORE_CHECK(found, what, ": .npy dtype '", descr,
                "' is not supported (little-endian int8/16/32/64, uint8/16/32)");

  const size_t f = value_of(h, "fortran_order");
  MH_CORE_CHECK(f != std::string::npos, what, ": .npy header has no 'fortran_order': ", h);
  const bool fortran = h.compare(f, 4, "True") == 0;

  const size_t s = value_of(h, "shape");
  MH_CORE_CHECK(s != std::string::npos && h[s] == '(', what, ": .npy header has no 'shape': ", h);
  const size_t s_end = h.find(')', s);
  MH_CORE_CHECK(s_end != std::string::npos, what, ": malformed 'shape' in .npy header: ", h);
  const std::string dims = h.substr(s + 1, s_end - s - 1);
  size_t i = 0;
  while (i < dims.size()) {
    if (dims[i] == ' ' || dims[i] == ',') {
      ++i;
      continue;
    }
    MH_CORE_CHECK(dims[i] >= '0' && dims[i] <= '9', what, ": malformed 'shape' in .npy header: ", h);
    int64_t v = 0;
    while (i < dims.size() && dims[i] >= '0' && dims[i] <= '9') {
      MH_CORE_CHECK(v < (int64_t{1} << 58), what, ": absurd .npy shape: ", h);
      v = v * 10 + (dims[i++] - '0');
    }
    out.shape.push_back(v);
  }
  MH_CORE_CHECK(!fortran || out.shape.size() <= 1, what,
                ": .npy array in Fortran order is not supported (Megatron writes C order)");
  return out;
}

std::string npy_header(NpyDType dtype, const std::vector<int64_t>& shape) {
  std::string dims;
  for (size_t i = 0; i < shape.size(); ++i) dims += cat(i ? ", " : "", shape[i]);
  if (shape.size() == 1) dims += ",";
  // numpy.save: keys sorted, Python reprs, trailing ", ", then room for the first axis to grow
  // to 21 digits in place, spaces and '\n' up to the alignment.
  std::string dict = cat("{'descr': '", info(dtype).descr, "', 'fortran_order': False, 'shape': (", dims, "), }");
  const size_t grow = shape.empty() ? 0 : 21 - std::min<size_t>(21, std::to_string(shape[0]).size());
  dict += std::string(grow, ' ');
  const size_t unpadded = kMagicLen + 4 + dict.size() + 1;
  dict += std::string((kAlign - unpadded % kAlign) % kAlign, ' ') + "\n";
  MH_CORE_CHECK(dict.size() <= 65535, "npy: header too long for format 1.0");
  std::string out(kMagic, kMagicLen);
  out += '\x01';
  out += '\x00';
  out += static_cast<char>(dict.size() & 0xff);
  out += static_cast<char>((dict.size() >> 8) & 0xff);
  return out + dict;
}

std::shared_ptr<const NpyFile> NpyFile::map(const std::string& path) {
  std::shared_ptr<NpyFile> f(new NpyFile());
  f->path_ = path;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  MH_CORE_CHECK(fd >= 0, path, ": cannot open: ", std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    throw Error(cat(path, ": cannot stat: ", std::strerror(errno)));
  }
  const auto size = static_cast<size_t>(st.st_size);
  if (size > 0) {
    f->map_ = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
    if (f->map_ == MAP_FAILED) f->map_ = nullptr;
  }
  ::close(fd);
  MH_CORE_CHECK(size == 0 || f->map_ != nullptr, path, ": cannot map: ", std::strerror(errno));
  f->map_size_ = size;
  const char* bytes = static_cast<const char*>(f->map_);
  f->header_ = parse_npy_header(size ? bytes : "", size, path);
  const NpyHeader& h = f->header_;
  MH_CORE_CHECK(h.count() >= 0, path, ": negative .npy size");
  const size_t item = npy_itemsize(h.dtype);
  const size_t want = h.data_offset + static_cast<size_t>(h.count()) * item;
  MH_CORE_CHECK(size >= want, path, ": truncated .npy file: ", size, " bytes, the header (", npy_dtype_name(h.dtype),
                ", ", h.count(), " values) needs ", want,
                "\nHINT: the file was cut short; delete it and it is rebuilt");
  const char* values = bytes + h.data_offset;
  if (reinterpret_cast<uintptr_t>(values) % item == 0) {
    f->data_ = values;
  } else {  // numpy aligns to 64 bytes; other writers may not
    f->copy_.assign(values, values + static_cast<size_t>(h.count()) * item);
    f->data_ = f->copy_.data();  // vector<char> storage is aligned for any scalar type
  }
  return f;
}

NpyFile::~NpyFile() {
  if (map_ != nullptr) ::munmap(map_, map_size_);
}

namespace {

// Writes the chunks to a unique temporary name beside `path`, then renames it: readers see the
// old file or the whole new one, never a part (rename() is atomic within one file system).
void write_chunks_atomic(const std::string& path, const std::vector<std::pair<const void*, size_t>>& chunks) {
  std::random_device rd;
  const std::string tmp = cat(path, ".tmp.", ::getpid(), ".", rd());
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  MH_CORE_CHECK(f != nullptr, tmp, ": cannot create: ", std::strerror(errno),
                "\nHINT: is the cache folder writable? set [data] data_cache_path to a writable folder");
  bool ok = true;
  for (const auto& [p, n] : chunks) ok = ok && std::fwrite(p, 1, n, f) == n;
  const bool closed = std::fclose(f) == 0;
  if (!ok || !closed || std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    std::remove(tmp.c_str());
    throw Error(cat(path, ": cannot write: ", why, "\nHINT: check free space and permissions of the folder"));
  }
}

}  // namespace

void write_file_atomic(const std::string& path, const std::string& text) {
  write_chunks_atomic(path, {{text.data(), text.size()}});
}

void write_npy_atomic(const std::string& path, NpyDType dtype, const std::vector<int64_t>& shape,
                      const void* data) {
  const std::string header = npy_header(dtype, shape);
  int64_t count = 1;
  for (int64_t d : shape) count *= d;
  // Little-endian host: the values go out as they are in memory.
  write_chunks_atomic(path, {{header.data(), header.size()},
                             {data, static_cast<size_t>(count) * npy_itemsize(dtype)}});
}

}  // namespace megahost::core::data
