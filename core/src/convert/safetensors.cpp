// Native safetensors reading and writing (see megahost/core/convert/safetensors.h).
#include "megahost/core/convert/safetensors.h"

#include <ATen/ops/empty.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "megahost/core/error.h"

namespace megahost::core {

namespace fs = std::filesystem;

namespace {

struct DtypeName {
  const char* name;
  at::ScalarType type;
};
constexpr DtypeName kDtypes[] = {{"F64", at::kDouble}, {"F32", at::kFloat},  {"F16", at::kHalf},
                                 {"BF16", at::kBFloat16}, {"I64", at::kLong}, {"I32", at::kInt},
                                 {"I16", at::kShort},  {"I8", at::kChar},    {"U8", at::kByte},
                                 {"BOOL", at::kBool}};

// The header is the one untrusted length we allocate from: cap it (real headers are a few MB).
constexpr uint64_t kMaxHeader = uint64_t{100} << 20;

}  // namespace

std::string safetensors_dtype_name(at::ScalarType t) {
  for (const auto& d : kDtypes)
    if (d.type == t) return d.name;
  throw Error(cat("safetensors: no dtype name for ", c10::toString(t),
                  "\nHINT: safetensors stores F64/F32/F16/BF16 and integer types"));
}

SafetensorsFolder::SafetensorsFolder(const std::string& dir) : dir_(dir) {
  const fs::path index = fs::path(dir) / "model.safetensors.index.json";
  const fs::path single = fs::path(dir) / "model.safetensors";
  source_ = (fs::exists(index) ? index : single).string();
  if (fs::exists(index)) {
    std::ifstream in(index);
    nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
    MH_CORE_CHECK(j.is_object() && j.contains("weight_map") && j["weight_map"].is_object(), index.string(),
                  ": not a safetensors index (no \"weight_map\" object)\nHINT: the file must map tensor names "
                  "to shard files");
    std::vector<std::string> files;
    for (const auto& [name, file] : j["weight_map"].items())
      if (std::find(files.begin(), files.end(), file.get<std::string>()) == files.end())
        files.push_back(file.get<std::string>());
    for (const auto& f : files) read_header((fs::path(dir) / f).string());
    for (const auto& [name, file] : j["weight_map"].items())
      MH_CORE_CHECK(entries_.count(name) != 0, index.string(), ": names tensor '", name, "' in ",
                    file.get<std::string>(), " but that shard lacks it\nHINT: the download is incomplete");
  } else {
    MH_CORE_CHECK(fs::exists(single), dir, ": no model.safetensors nor model.safetensors.index.json",
                  "\nHINT: point --load-dir at a Hugging Face model folder with safetensors weights (convert "
                  "pytorch_model.bin with safetensors' convert script first)");
    read_header(single.string());
  }
}

void SafetensorsFolder::read_header(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  MH_CORE_CHECK(in.good(), file, ": cannot open\nHINT: check the path and permissions");
  unsigned char len_bytes[8];
  in.read(reinterpret_cast<char*>(len_bytes), 8);
  MH_CORE_CHECK(in.gcount() == 8, file, ": shorter than the 8-byte header length\nHINT: the file is truncated");
  uint64_t len = 0;
  for (int i = 7; i >= 0; --i) len = (len << 8) | len_bytes[i];
  const uint64_t size = fs::file_size(file);
  MH_CORE_CHECK(len <= kMaxHeader && 8 + len <= size, file, ": header length ", len, " does not fit the file (",
                size, " bytes)\nHINT: not a safetensors file, or truncated");
  std::string text(len, '\0');
  in.read(text.data(), static_cast<std::streamsize>(len));
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  MH_CORE_CHECK(j.is_object(), file, ": the header is not a JSON object\nHINT: not a safetensors file");
  const uint64_t data_start = 8 + len;
  for (const auto& [name, v] : j.items()) {
    if (name == "__metadata__") continue;
    auto bad = [&](const std::string& why) {
      return Error(cat(file, ": tensor '", name, "': ", why, "\nHINT: the header is corrupt"));
    };
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets"))
      throw bad("needs dtype, shape and data_offsets");
    SafetensorsEntry e;
    e.name = name;
    e.file = file;
    e.dtype_name = v["dtype"].get<std::string>();
    bool known = false;
    for (const auto& d : kDtypes)
      if (e.dtype_name == d.name) e.dtype = d.type, known = true;
    if (!known) throw bad(cat("dtype ", e.dtype_name, " is not supported"));
    int64_t numel = 1;
    for (const auto& s : v["shape"]) {
      e.shape.push_back(s.get<int64_t>());
      numel *= e.shape.back();
    }
    const uint64_t begin = v["data_offsets"].at(0).get<uint64_t>(), end = v["data_offsets"].at(1).get<uint64_t>();
    e.offset = data_start + begin;
    e.nbytes = end - begin;
    if (end < begin || data_start + end > size) throw bad("data_offsets lie outside the file");
    if (e.nbytes != static_cast<uint64_t>(numel) * c10::elementSize(e.dtype))
      throw bad(cat("holds ", e.nbytes, " bytes but shape and dtype need ", numel * c10::elementSize(e.dtype)));
    MH_CORE_CHECK(entries_.count(name) == 0, file, ": tensor '", name,
                  "' appears in two shards\nHINT: the index or the shards are inconsistent");
    entries_[name] = std::move(e);
  }
}

const SafetensorsEntry& SafetensorsFolder::entry(const std::string& name) const {
  auto it = entries_.find(name);
  MH_CORE_CHECK(it != entries_.end(), source_, ": missing tensor '", name,
                "'\nHINT: the weights do not match config.json (wrong architecture or an incomplete download)");
  return it->second;
}

at::Tensor SafetensorsFolder::read(const std::string& name) const {
  const SafetensorsEntry& e = entry(name);
  at::Tensor t = at::empty(e.shape, at::TensorOptions().dtype(e.dtype));
  std::ifstream in(e.file, std::ios::binary);
  in.seekg(static_cast<std::streamoff>(e.offset));
  in.read(static_cast<char*>(t.data_ptr()), static_cast<std::streamsize>(e.nbytes));
  MH_CORE_CHECK(in.good(), e.file, ": cannot read tensor '", name, "'\nHINT: the file is truncated");
  return t;  // little-endian on disk = host order on every machine megahost runs on
}

SafetensorsWriter::SafetensorsWriter(const std::string& file, const std::vector<Spec>& specs,
                                     const std::map<std::string, std::string>& metadata)
    : file_(file), specs_(specs) {
  nlohmann::ordered_json header;
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const Spec& s : specs) {
    int64_t numel = 1;
    for (int64_t d : s.shape) numel *= d;
    const uint64_t nbytes = static_cast<uint64_t>(numel) * c10::elementSize(s.dtype);
    header[s.name] = {{"dtype", safetensors_dtype_name(s.dtype)}, {"shape", s.shape}, {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // data 8-byte aligned, as safetensors pads
  f_ = std::fopen(file.c_str(), "wb");
  MH_CORE_CHECK(f_ != nullptr, file, ": cannot write\nHINT: check permissions and free space");
  unsigned char len_bytes[8];
  uint64_t len = text.size();
  for (int i = 0; i < 8; ++i) len_bytes[i] = static_cast<unsigned char>(len >> (8 * i));
  MH_CORE_CHECK(std::fwrite(len_bytes, 1, 8, f_) == 8 && std::fwrite(text.data(), 1, text.size(), f_) == text.size(),
                file, ": write failed\nHINT: check free space");
}

SafetensorsWriter::~SafetensorsWriter() {
  if (f_ != nullptr) std::fclose(f_);
}

void SafetensorsWriter::write(const std::string& name, const at::Tensor& t) {
  MH_CORE_CHECK(next_ < specs_.size() && specs_[next_].name == name, file_, ": tensor '", name,
                "' written out of order\nHINT: internal: write in the order of the specs");
  const Spec& s = specs_[next_++];
  MH_CORE_CHECK(t.scalar_type() == s.dtype && t.sizes().vec() == s.shape, file_, ": tensor '", name,
                "' has ", c10::toString(t.scalar_type()), " ", t.sizes(), ", the header says ",
                c10::toString(s.dtype), " ", at::IntArrayRef(s.shape), "\nHINT: internal conversion error");
  const at::Tensor c = t.cpu().contiguous();
  const size_t n = c.numel() * c.element_size();
  MH_CORE_CHECK(std::fwrite(c.data_ptr(), 1, n, f_) == n, file_, ": write failed\nHINT: check free space");
}

void SafetensorsWriter::close() {
  MH_CORE_CHECK(next_ == specs_.size(), file_, ": only ", next_, " of ", specs_.size(),
                " tensors were written\nHINT: internal conversion error");
  const bool ok = std::fflush(f_) == 0 && std::fclose(f_) == 0;
  f_ = nullptr;
  MH_CORE_CHECK(ok, file_, ": write failed\nHINT: check free space");
}

}  // namespace megahost::core
