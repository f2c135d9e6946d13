#include "index.h"

#include <nlohmann/json.hpp>

#include <unordered_set>

#include "dtype.h"
#include "megahost/sdk/error.h"

namespace megahost::mh_tensors {

using json = nlohmann::json;
using sdk::Error;
using sdk::str_cat;

std::string shape_str(const int64_t* shape, int32_t ndim) {
  std::string s = "[";
  for (int32_t i = 0; i < ndim; ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

std::string index_to_json(const Index& index) {
  using ojson = nlohmann::ordered_json;  // keeps the field order of FORMAT.md, for human readers
  ojson entries = ojson::array();
  for (const Entry& e : index.entries) {
    ojson j;
    j["name"] = e.name;
    j["kind"] = e.is_blob ? "blob" : "tensor";
    if (!e.is_blob) {
      j["dtype"] = dtype_name(e.dtype);
      j["dlpack_dtype"] = {{"code", e.dtype.code}, {"bits", e.dtype.bits}, {"lanes", e.dtype.lanes}};
      j["shape"] = e.shape;
    }
    j["offset"] = e.offset;
    j["nbytes"] = e.nbytes;
    j["crc32"] = e.crc32;
    entries.push_back(std::move(j));
  }
  ojson root;
  root["format"] = kFormatName;
  root["version"] = kFormatVersion;
  root["byte_order"] = "little";
  root["alignment"] = kAlignment;
  root["data_file"] = kDataFile;
  root["data_file_size"] = index.data_file_size;
  root["entries"] = std::move(entries);
  return root.dump(1) + "\n";
}

namespace {

// Field access that names the file, the entry and the field when something is off.
struct Reader {
  const std::string& path;

  [[noreturn]] void fail(const std::string& where, const std::string& what) const {
    throw Error(MH_ERR_DATA_LOSS, str_cat(path, ": ", where, what,
                                          ". HINT: the index is damaged; load an older checkpoint"));
  }
  const json& field(const json& obj, const char* key, const std::string& where) const {
    auto it = obj.find(key);
    if (it == obj.end()) fail(where, str_cat("missing field \"", key, "\""));
    return *it;
  }
  uint64_t u64(const json& obj, const char* key, const std::string& where) const {
    const json& v = field(obj, key, where);
    if (!v.is_number_unsigned()) fail(where, str_cat("field \"", key, "\" must be a non-negative integer, got ", v.dump()));
    return v.get<uint64_t>();
  }
  std::string str(const json& obj, const char* key, const std::string& where) const {
    const json& v = field(obj, key, where);
    if (!v.is_string()) fail(where, str_cat("field \"", key, "\" must be a string, got ", v.dump()));
    return v.get<std::string>();
  }
};

Entry parse_entry(const Reader& rd, const json& j, size_t i) {
  std::string where = str_cat("entries[", i, "]: ");
  if (!j.is_object()) rd.fail(where, "must be an object");
  Entry e;
  e.name = rd.str(j, "name", where);
  where = str_cat("entry '", e.name, "' (entries[", i, "]): ");
  const std::string kind = rd.str(j, "kind", where);
  if (kind != "tensor" && kind != "blob") rd.fail(where, str_cat("kind must be \"tensor\" or \"blob\", got \"", kind, "\""));
  e.is_blob = kind == "blob";
  e.offset = rd.u64(j, "offset", where);
  e.nbytes = rd.u64(j, "nbytes", where);
  const uint64_t crc = rd.u64(j, "crc32", where);
  if (crc > 0xffffffffull) rd.fail(where, "crc32 does not fit in 32 bits");
  e.crc32 = uint32_t(crc);
  if (e.offset + e.nbytes < e.offset) rd.fail(where, "offset + nbytes overflows");
  if (e.is_blob) return e;

  const json& dl = rd.field(j, "dlpack_dtype", where);
  if (!dl.is_object()) rd.fail(where, "dlpack_dtype must be an object {code, bits, lanes}");
  const uint64_t code = rd.u64(dl, "code", where), bits = rd.u64(dl, "bits", where), lanes = rd.u64(dl, "lanes", where);
  if (code > 255 || bits == 0 || bits > 255 || lanes == 0 || lanes > 65535) rd.fail(where, "dlpack_dtype out of range");
  e.dtype = DLDataType{uint8_t(code), uint8_t(bits), uint16_t(lanes)};

  const json& shape = rd.field(j, "shape", where);
  if (!shape.is_array()) rd.fail(where, "shape must be an array of integers");
  uint64_t numel = 1;
  for (const json& d : shape) {
    if (!d.is_number_unsigned()) rd.fail(where, str_cat("shape must hold non-negative integers, got ", shape.dump()));
    e.shape.push_back(d.get<int64_t>());
    numel *= d.get<uint64_t>();
  }
  if (numel * itemsize(e.dtype) != e.nbytes)
    rd.fail(where, str_cat("nbytes = ", e.nbytes, " but shape ", shape.dump(), " of ", dtype_name(e.dtype), " needs ",
                           numel * itemsize(e.dtype)));
  // "global_shape" and "slice" are reserved (FORMAT.md) and ignored by this version.
  return e;
}

}  // namespace

Index index_from_json(const std::string& text, const std::string& path) {
  json root;
  try {
    root = json::parse(text);
  } catch (const json::parse_error& e) {
    throw Error(MH_ERR_DATA_LOSS, str_cat(path, " is not valid JSON (", e.what(),
                                          "). HINT: the index is damaged; load an older checkpoint"));
  }
  const Reader rd{path};
  if (!root.is_object()) rd.fail("", "the top level must be a JSON object");
  const std::string format = rd.str(root, "format", "");
  MH_CHECK(format == kFormatName, MH_ERR_INVALID_ARG, path, ": format is \"", format, "\", not \"", kFormatName,
           "\". HINT: set [checkpoint] plugin to the format that wrote this folder");
  const uint64_t version = rd.u64(root, "version", "");
  MH_CHECK(version >= 1 && int64_t(version) <= kFormatVersion, MH_ERR_UNSUPPORTED, path, ": format version ", version,
           " is newer than this reader (", kFormatVersion, "). HINT: upgrade megahost to read this checkpoint");
  auto bo = root.find("byte_order");
  if (bo != root.end() && *bo != "little") rd.fail("", str_cat("byte_order ", bo->dump(), " is not supported"));

  Index index;
  index.data_file_size = rd.u64(root, "data_file_size", "");
  const json& entries = rd.field(root, "entries", "");
  if (!entries.is_array()) rd.fail("", "entries must be an array");
  std::unordered_set<std::string> names;
  for (size_t i = 0; i < entries.size(); ++i) {
    Entry e = parse_entry(rd, entries[i], i);
    if (!names.insert(e.name).second) rd.fail("", str_cat("entry name '", e.name, "' appears twice"));
    if (e.offset + e.nbytes > index.data_file_size)
      rd.fail("", str_cat("entry '", e.name, "' ends at byte ", e.offset + e.nbytes, ", past data_file_size ",
                          index.data_file_size));
    index.entries.push_back(std::move(e));
  }
  return index;
}

}  // namespace megahost::mh_tensors
