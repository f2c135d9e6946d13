// megahost SDK — safetensors reading and writing, one tensor at a time, without libtorch
// (header-only: the hf converter plugin and the core's test-facing reader both use it).
//
// The format: 8-byte little-endian header length N, N bytes of JSON
// {"name": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, ..., "__metadata__": {...}},
// then the raw little-endian bytes (offsets relative to the end of the header). A sharded folder
// adds model.safetensors.index.json {"weight_map": {"name": "file", ...}}.
#pragma once

#include <dlpack/dlpack.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "megahost/sdk/dl_shape.h"
#include "megahost/sdk/error.h"

namespace megahost::sdk {

struct StEntry {
  std::string name, file;  // file: the .safetensors file holding it
  DLDataType dtype{kDLFloat, 32, 1};
  std::string dtype_name;  // as written: "F32", "BF16", ...
  std::vector<int64_t> shape;
  uint64_t offset = 0, nbytes = 0;  // absolute offset in file
};

// A model folder's tensors: model.safetensors, or the shards model.safetensors.index.json names.
// Only headers are read up front.
class StFolder {
 public:
  explicit StFolder(const std::string& dir);
  bool has(const std::string& name) const { return entries_.count(name) != 0; }
  const StEntry& entry(const std::string& name) const;  // throws naming the folder and tensor
  const std::map<std::string, StEntry>& entries() const { return entries_; }
  // Copies the stored bytes into dst (host, contiguous), which must have the stored dtype and shape.
  void read(const std::string& name, DLTensor* dst) const;

 private:
  void read_header(const std::string& file);
  std::string source_;  // model.safetensors or model.safetensors.index.json: what errors name
  std::map<std::string, StEntry> entries_;
};

// Writes one .safetensors file: the header from the specs given up front, then each tensor in the
// order of the specs (streamed). Removes the file unless close() succeeded.
class StWriter {
 public:
  struct Spec {
    std::string name;
    DLDataType dtype;
    std::vector<int64_t> shape;
  };
  StWriter(std::string file, std::vector<Spec> specs, const std::map<std::string, std::string>& metadata);
  ~StWriter();
  void write(const std::string& name, const DLTensor* t);  // must be the next spec's tensor
  void close();                                            // checks every tensor was written

 private:
  std::string file_;
  std::vector<Spec> specs_;
  size_t next_ = 0;
  std::FILE* f_ = nullptr;
  bool closed_ = false;
};



namespace safetensors_detail {

struct DtypeName {
  const char* name;
  DLDataType type;
};
inline const DtypeName kDtypes[] = {{"F64", {kDLFloat, 64, 1}}, {"F32", {kDLFloat, 32, 1}}, {"F16", {kDLFloat, 16, 1}},
                                    {"BF16", {kDLBfloat, 16, 1}}, {"I64", {kDLInt, 64, 1}}, {"I32", {kDLInt, 32, 1}},
                             {"I16", {kDLInt, 16, 1}},   {"I8", {kDLInt, 8, 1}},   {"U8", {kDLUInt, 8, 1}},
                             {"BOOL", {kDLUInt, 1, 1}}};  // DLPack 0.6 has no kDLBool

inline bool same_dtype(DLDataType a, DLDataType b) { return a.code == b.code && a.bits == b.bits && a.lanes == b.lanes; }

inline std::string dtype_name(DLDataType t) {
  for (const auto& d : kDtypes)
    if (same_dtype(d.type, t)) return d.name;
  throw sdk::Error(MH_ERR_UNSUPPORTED, sdk::str_cat("safetensors: no dtype name for DLPack code ", int(t.code), " bits ",
                                                    int(t.bits), "\nHINT: safetensors stores F64/F32/F16/BF16 and "
                                                    "integer types"));
}

// The header is the one untrusted length we allocate from: cap it (real headers are a few MB).
constexpr uint64_t kMaxHeader = uint64_t{100} << 20;

}  // namespace safetensors_detail

using safetensors_detail::dtype_name;
using safetensors_detail::kDtypes;
using safetensors_detail::kMaxHeader;
using safetensors_detail::same_dtype;

inline StFolder::StFolder(const std::string& dir) {
  const std::filesystem::path index = std::filesystem::path(dir) / "model.safetensors.index.json";
  const std::filesystem::path single = std::filesystem::path(dir) / "model.safetensors";
  source_ = (std::filesystem::exists(index) ? index : single).string();
  if (std::filesystem::exists(index)) {
    std::ifstream in(index);
    nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
    MH_CHECK(j.is_object() && j.contains("weight_map") && j["weight_map"].is_object(), MH_ERR_DATA_LOSS,
             index.string(), ": not a safetensors index (no \"weight_map\" object)\nHINT: the file must map tensor "
             "names to shard files");
    std::vector<std::string> files;
    for (const auto& [name, file] : j["weight_map"].items())
      if (std::find(files.begin(), files.end(), file.get<std::string>()) == files.end())
        files.push_back(file.get<std::string>());
    for (const auto& f : files) read_header((std::filesystem::path(dir) / f).string());
    for (const auto& [name, file] : j["weight_map"].items())
      MH_CHECK(entries_.count(name) != 0, MH_ERR_DATA_LOSS, index.string(), ": names tensor '", name, "' in ",
               file.get<std::string>(), " but that shard lacks it\nHINT: the download is incomplete");
  } else {
    MH_CHECK(std::filesystem::exists(single), MH_ERR_NOT_FOUND, dir, ": no model.safetensors nor model.safetensors.index.json",
             "\nHINT: point --load-dir at a Hugging Face model folder with safetensors weights (convert "
             "pytorch_model.bin with safetensors' convert script first)");
    read_header(single.string());
  }
}

inline void StFolder::read_header(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  MH_CHECK(in.good(), MH_ERR_NOT_FOUND, file, ": cannot open\nHINT: check the path and permissions");
  unsigned char len_bytes[8];
  in.read(reinterpret_cast<char*>(len_bytes), 8);
  MH_CHECK(in.gcount() == 8, MH_ERR_DATA_LOSS, file,
           ": shorter than the 8-byte header length\nHINT: the file is truncated");
  uint64_t len = 0;
  for (int i = 7; i >= 0; --i) len = (len << 8) | len_bytes[i];
  const uint64_t size = std::filesystem::file_size(file);
  MH_CHECK(len <= kMaxHeader && 8 + len <= size, MH_ERR_DATA_LOSS, file, ": header length ", len,
           " does not fit the file (", size, " bytes)\nHINT: not a safetensors file, or truncated");
  std::string text(len, '\0');
  in.read(text.data(), static_cast<std::streamsize>(len));
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  MH_CHECK(j.is_object(), MH_ERR_DATA_LOSS, file, ": the header is not a JSON object\nHINT: not a safetensors file");
  const uint64_t data_start = 8 + len;
  for (const auto& [name, v] : j.items()) {
    if (name == "__metadata__") continue;
    auto bad = [&](const std::string& why) {
      return sdk::Error(MH_ERR_DATA_LOSS, sdk::str_cat(file, ": tensor '", name, "': ", why, "\nHINT: the header is corrupt"));
    };
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets"))
      throw bad("needs dtype, shape and data_offsets");
    StEntry e;
    e.name = name;
    e.file = file;
    e.dtype_name = v["dtype"].get<std::string>();
    bool known = false;
    for (const auto& d : kDtypes)
      if (e.dtype_name == d.name) e.dtype = d.type, known = true;
    if (!known) throw bad(sdk::str_cat("dtype ", e.dtype_name, " is not supported"));
    for (const auto& s : v["shape"]) e.shape.push_back(s.get<int64_t>());
    const uint64_t begin = v["data_offsets"].at(0).get<uint64_t>(), end = v["data_offsets"].at(1).get<uint64_t>();
    e.offset = data_start + begin;
    e.nbytes = end - begin;
    if (end < begin || data_start + end > size) throw bad("data_offsets lie outside the file");
    const uint64_t need = sdk::dense_nbytes(e.dtype, e.shape);
    if (e.nbytes != need) throw bad(sdk::str_cat("holds ", e.nbytes, " bytes but shape and dtype need ", need));
    MH_CHECK(entries_.count(name) == 0, MH_ERR_DATA_LOSS, file, ": tensor '", name,
             "' appears in two shards\nHINT: the index or the shards are inconsistent");
    entries_[name] = std::move(e);
  }
}

inline const StEntry& StFolder::entry(const std::string& name) const {
  auto it = entries_.find(name);
  MH_CHECK(it != entries_.end(), MH_ERR_NOT_FOUND, source_, ": missing tensor '", name,
           "'\nHINT: the weights do not match config.json (wrong architecture or an incomplete download)");
  return it->second;
}

inline void StFolder::read(const std::string& name, DLTensor* dst) const {
  const StEntry& e = entry(name);
  const std::vector<int64_t> shape(dst->shape, dst->shape + dst->ndim);
  MH_CHECK(same_dtype(dst->dtype, e.dtype) && shape == e.shape && dst->device.device_type == kDLCPU,
           MH_ERR_INVALID_ARG, e.file, ": tensor '", name, "' is ", e.dtype_name, " ", sdk::shape_text(e.shape),
           "; the caller asked for another dtype or shape\nHINT: internal: read with the plan's dtype and shape");
  std::ifstream in(e.file, std::ios::binary);
  in.seekg(static_cast<std::streamoff>(e.offset));
  in.read(static_cast<char*>(dst->data) + dst->byte_offset, static_cast<std::streamsize>(e.nbytes));
  MH_CHECK(in.good(), MH_ERR_DATA_LOSS, e.file, ": cannot read tensor '", name, "'\nHINT: the file is truncated");
}  // little-endian on disk = host order on every machine megahost runs on

inline StWriter::StWriter(std::string file, std::vector<Spec> specs, const std::map<std::string, std::string>& metadata)
    : file_(std::move(file)), specs_(std::move(specs)) {
  nlohmann::ordered_json header;
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const Spec& s : specs_) {
    const uint64_t nbytes = sdk::dense_nbytes(s.dtype, s.shape);
    header[s.name] = {{"dtype", dtype_name(s.dtype)}, {"shape", s.shape}, {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // data 8-byte aligned, as safetensors pads
  f_ = std::fopen(file_.c_str(), "wb");
  MH_CHECK(f_ != nullptr, MH_ERR_UNAVAILABLE, file_, ": cannot write\nHINT: check permissions and free space");
  unsigned char len_bytes[8];
  const uint64_t len = text.size();
  for (int i = 0; i < 8; ++i) len_bytes[i] = static_cast<unsigned char>(len >> (8 * i));
  MH_CHECK(std::fwrite(len_bytes, 1, 8, f_) == 8 && std::fwrite(text.data(), 1, text.size(), f_) == text.size(),
           MH_ERR_UNAVAILABLE, file_, ": write failed\nHINT: check free space");
}

inline StWriter::~StWriter() {
  if (f_ != nullptr) std::fclose(f_);
  if (!closed_) {
    std::error_code ec;
    std::filesystem::remove(file_, ec);  // never leave a file whose header promises tensors it lacks
  }
}

inline void StWriter::write(const std::string& name, const DLTensor* t) {
  MH_CHECK(next_ < specs_.size() && specs_[next_].name == name, MH_ERR_INVALID_ARG, file_, ": tensor '", name,
           "' written out of order\nHINT: internal: write in the order of the plan");
  const Spec& s = specs_[next_++];
  const std::vector<int64_t> shape(t->shape, t->shape + t->ndim);
  MH_CHECK(same_dtype(t->dtype, s.dtype) && shape == s.shape, MH_ERR_INVALID_ARG, file_, ": tensor '", name, "' has ",
           sdk::shape_text(shape), ", the header says ", dtype_name(s.dtype), " ", sdk::shape_text(s.shape),
           "\nHINT: internal conversion error");
  const size_t n = sdk::dense_nbytes(s.dtype, s.shape);
  MH_CHECK(std::fwrite(static_cast<const char*>(t->data) + t->byte_offset, 1, n, f_) == n, MH_ERR_UNAVAILABLE, file_,
           ": write failed\nHINT: check free space");
}

inline void StWriter::close() {
  MH_CHECK(next_ == specs_.size(), MH_ERR_INVALID_ARG, file_, ": only ", next_, " of ", specs_.size(),
           " tensors were written\nHINT: internal conversion error");
  const bool ok = std::fflush(f_) == 0 && std::fclose(f_) == 0;
  f_ = nullptr;
  MH_CHECK(ok, MH_ERR_UNAVAILABLE, file_, ": write failed\nHINT: check free space");
  closed_ = true;
}

}  // namespace megahost::sdk
