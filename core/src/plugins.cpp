// Plugin discovery and loading (Boost.DLL), checks (ABI major, table sizes, fingerprint), and
// the typed handles for tokenizers and dataset formats.
#include "megahost/core/plugins.h"

#include <torch/version.h>

#include <boost/dll/runtime_symbol_info.hpp>
#include <boost/dll/shared_library.hpp>
#include <cstdlib>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>

#include "create_instance.h"
#include "megahost/core/error.h"
#include "megahost/core/host_services.h"
#include "megahost/core/schema.h"

#ifndef MEGAHOST_CUDA_VERSION
#define MEGAHOST_CUDA_VERSION ""
#endif

namespace megahost::core {

namespace fs = std::filesystem;

const char* kind_name(PluginKind k) {
  switch (k) {
    case PluginKind::Model: return "model";
    case PluginKind::Tokenizer: return "tokenizer";
    case PluginKind::Dataset: return "dataset";
    case PluginKind::Checkpoint: return "checkpoint";
    case PluginKind::Optimizer: return "optimizer";
    case PluginKind::Converter: return "converter";
  }
  return "?";
}

void throw_if_error(mh_error* err, const std::string& context) {
  if (err == nullptr) return;
  std::string msg = error_message(err);
  free_error(err);
  throw Error(context.empty() ? msg : cat(context, ": ", msg));
}

namespace {

// Every library ever loaded in this process, by canonical path. Never unloaded (DESIGN §2).
struct LoadedLibrary {
  boost::dll::shared_library lib;
  const mh_plugin_entry_v1* entry = nullptr;
  std::string refusal;  // non-empty: refused, with the reason
};
std::map<std::string, LoadedLibrary*>& loaded_libraries() {
  static auto* libs = new std::map<std::string, LoadedLibrary*>();
  return *libs;
}
std::mutex g_load_mutex;

std::string host_cuda_version() { return MEGAHOST_CUDA_VERSION; }

// Why a plugin's fingerprint does not match this host, or "" when it does.
std::string fingerprint_mismatch(const mh_build_fingerprint* fp) {
  if (fp == nullptr) return "it has no build fingerprint";
  if (fp->links_libtorch == 0) return "";
  const std::string torch = fp->torch_version ? fp->torch_version : "";
  const std::string cuda = fp->cuda_version ? fp->cuda_version : "";
  if (torch != TORCH_VERSION)
    return cat("fingerprint mismatch: plugin built against libtorch ", torch, ", host uses ", TORCH_VERSION,
               "; HINT: rebuild the plugin against the host's libtorch (one libtorch per process)");
  if (cuda != host_cuda_version())
    return cat("fingerprint mismatch: plugin built for CUDA '", cuda, "', host for CUDA '", host_cuda_version(),
               "'; HINT: rebuild the plugin with the host's libtorch");
#if defined(_GLIBCXX_USE_CXX11_ABI)
  if (fp->cxx11_abi != -1 && fp->cxx11_abi != _GLIBCXX_USE_CXX11_ABI)
    return cat("fingerprint mismatch: plugin _GLIBCXX_USE_CXX11_ABI=", fp->cxx11_abi, ", host ",
               _GLIBCXX_USE_CXX11_ABI, "; HINT: build with the same C++ ABI flag as libtorch");
#endif
  return "";
}

LoadedLibrary* load_once(const fs::path& path) {
  std::lock_guard<std::mutex> lock(g_load_mutex);
  std::error_code ec;
  const std::string key = fs::weakly_canonical(path, ec).string();
  auto& libs = loaded_libraries();
  if (auto it = libs.find(key); it != libs.end()) return it->second;
  auto* out = new LoadedLibrary();
  libs[key] = out;
  try {
    out->lib.load(path, boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local);
  } catch (const std::exception& e) {
    out->refusal = cat("cannot load: ", e.what());
    return out;
  }
  if (!out->lib.has(MH_PLUGIN_ENTRY_SYMBOL_V1)) {
    out->refusal = "missing symbol megahost_plugin_v1 (not a megahost plugin, or built for another ABI major)";
    return out;
  }
  const auto& entry = out->lib.get<const mh_plugin_entry_v1>(MH_PLUGIN_ENTRY_SYMBOL_V1);
  if (entry.hdr.abi.major != MH_ABI_VERSION_MAJOR) {
    out->refusal = cat("wrong ABI major: plugin speaks ", entry.hdr.abi.major, ".", entry.hdr.abi.minor,
                       ", host speaks ", MH_ABI_VERSION_MAJOR, ".", MH_ABI_VERSION_MINOR,
                       "; HINT: rebuild the plugin against this host's abi/ headers");
    return out;
  }
  if (entry.hdr.struct_size < offsetof(mh_plugin_entry_v1, get_factory) + sizeof(void*)) {
    out->refusal = cat("entry table too small (", entry.hdr.struct_size, " bytes)");
    return out;
  }
  if (std::string why = fingerprint_mismatch(entry.fingerprint); !why.empty()) {
    out->refusal = why;
    return out;
  }
  if (mh_error* err = entry.init(host_table(), path.string().c_str())) {
    out->refusal = cat("init failed: ", error_message(err));
    free_error(err);
    return out;
  }
  out->entry = &entry;
  return out;
}

// All kinds' factories share the prefix {hdr, count, descriptor}.
struct FactoryPrefix {
  mh_table_header hdr;
  uint32_t(MH_ABI* count)(void);
  const mh_plugin_descriptor*(MH_ABI* descriptor)(uint32_t i);
};

const std::pair<PluginKind, const char*> kFactoryIds[] = {
    {PluginKind::Model, MH_FACTORY_MODEL},           {PluginKind::Tokenizer, MH_FACTORY_TOKENIZER},
    {PluginKind::Dataset, MH_FACTORY_DATASET},       {PluginKind::Checkpoint, MH_FACTORY_CHECKPOINT},
    {PluginKind::Optimizer, MH_FACTORY_OPTIMIZER},   {PluginKind::Converter, MH_FACTORY_CONVERTER}};

std::string str_or_empty(const char* s) { return s ? s : ""; }

}  // namespace

std::vector<fs::path> PluginRegistry::default_search_path(const std::vector<fs::path>& extra) {
  std::vector<fs::path> dirs;
  dirs.emplace_back(MEGAHOST_PLUGIN_INSTALL_DIR);
  // An installed tree may have moved (cmake --install --prefix, a package): its plugins sit
  // beside the executable, and then the build tree's folder is not ours to load.
  std::error_code ec;
  const fs::path beside_exe = boost::dll::program_location(ec).parent_path().parent_path() / "lib/megahost/plugins";
  if (!ec && fs::is_directory(beside_exe, ec)) {
    dirs.push_back(beside_exe);
  } else {
    dirs.emplace_back(MEGAHOST_BUILD_PLUGIN_DIR);
  }
  if (const char* env = std::getenv("MEGAHOST_PLUGIN_PATH")) {
    std::string s(env);
    size_t start = 0;
    while (start <= s.size()) {
      const size_t colon = s.find(':', start);
      const std::string part = s.substr(start, colon == std::string::npos ? std::string::npos : colon - start);
      if (!part.empty()) dirs.emplace_back(part);
      if (colon == std::string::npos) break;
      start = colon + 1;
    }
  }
  dirs.insert(dirs.end(), extra.begin(), extra.end());
  return dirs;
}

PluginRegistry::PluginRegistry(const std::vector<fs::path>& search_dirs) {
  std::vector<std::string> seen;
  for (const auto& dir : search_dirs) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) continue;
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
      const std::string name = e.path().filename().string();
      if (e.is_regular_file() && name.rfind("lib", 0) == 0 && e.path().extension() == ".so") files.push_back(e.path());
    }
    std::sort(files.begin(), files.end());
    for (const auto& f : files) {
      const std::string key = fs::weakly_canonical(f, ec).string();
      if (std::find(seen.begin(), seen.end(), key) != seen.end()) continue;
      seen.push_back(key);
      load_library(f);
    }
  }
}

void PluginRegistry::load_library(const fs::path& path) {
  LoadedLibrary* lib = load_once(path);
  if (!lib->refusal.empty()) {
    refused_.push_back({path, lib->refusal});
    return;
  }
  for (const auto& [kind, factory_id] : kFactoryIds) {
    const auto* f = static_cast<const FactoryPrefix*>(lib->entry->get_factory(factory_id));
    if (f == nullptr) continue;
    if (f->hdr.abi.major != MH_ABI_VERSION_MAJOR || f->hdr.struct_size < sizeof(FactoryPrefix) + sizeof(void*)) {
      refused_.push_back({path, cat("factory ", factory_id, " has ABI ", f->hdr.abi.major, " / size ",
                                    f->hdr.struct_size, "; HINT: rebuild the plugin")});
      continue;
    }
    const uint32_t n = f->count();
    for (uint32_t i = 0; i < n; ++i) {
      const mh_plugin_descriptor* d = f->descriptor(i);
      if (d == nullptr || d->id == nullptr) continue;
      PluginInfo info;
      info.id = d->id;
      info.name = str_or_empty(d->name);
      info.vendor = str_or_empty(d->vendor);
      info.version = str_or_empty(d->version);
      info.description = str_or_empty(d->description);
      for (const char* const* a = d->aliases; a != nullptr && *a != nullptr; ++a) info.aliases.emplace_back(*a);
      info.config_schema = str_or_empty(d->config_schema);
      info.kind = kind;
      info.abi_version = cat(f->hdr.abi.major, ".", f->hdr.abi.minor, ".", f->hdr.abi.patch);
      info.path = path;
      info.index = i;
      info.factory = f;
      bool duplicate = false;
      for (const auto& p : plugins_)
        if (p.kind == kind && p.id == info.id) duplicate = true;
      if (duplicate) {
        refused_.push_back({path, cat(kind_name(kind), " '", info.id, "' is already provided by ",
                                      find(kind, info.id).path.string(), " (first in the search path wins)")});
        continue;
      }
      plugins_.push_back(std::move(info));
    }
  }
}

const PluginInfo& PluginRegistry::find(PluginKind kind, const std::string& id) const {
  for (const auto& p : plugins_)
    if (p.kind == kind && p.id == id) return p;
  for (const auto& p : plugins_)
    if (p.kind == kind && std::find(p.aliases.begin(), p.aliases.end(), id) != p.aliases.end()) return p;
  std::string known;
  for (const auto& p : plugins_)
    if (p.kind == kind) known += (known.empty() ? "" : ", ") + p.id;
  throw Error(cat("no ", kind_name(kind), " plugin '", id, "'; known: ", known.empty() ? "(none)" : known,
                  "\nHINT: run `megahost plugins` to see what was found and why a library was refused; "
                  "add folders with MEGAHOST_PLUGIN_PATH or the recipe's plugin_path"));
}

const mh_host* PluginRegistry::host() const { return host_table(); }

// ---- tokenizer --------------------------------------------------------------------------------

Tokenizer::Tokenizer(mh_tokenizer* t, const mh_tokenizer_api* api, std::string id, std::shared_ptr<void> tree)
    : t_(t), api_(api), id_(std::move(id)), config_tree_(std::move(tree)) {}
Tokenizer::~Tokenizer() { api_->destroy(t_); }

void Tokenizer::encode(std::string_view text, std::vector<int32_t>& out) const {
  if (out.capacity() < text.size() / 2 + 16) out.reserve(text.size() / 2 + 16);
  out.resize(out.capacity());
  size_t n = 0;
  // The error context is built only on failure: this runs once per document in preprocessing.
  if (mh_error* e = api_->encode(t_, text.data(), text.size(), out.data(), out.size(), &n))
    throw_if_error(e, "tokenizer " + id_);
  if (n > out.size()) {
    out.resize(n);
    if (mh_error* e = api_->encode(t_, text.data(), text.size(), out.data(), out.size(), &n))
      throw_if_error(e, "tokenizer " + id_);
  }
  out.resize(n);
}
std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  std::vector<int32_t> out;
  encode(text, out);
  return out;
}
std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string out(ids.size() * 4 + 16, '\0');
  size_t n = 0;
  throw_if_error(api_->decode(t_, ids.data(), ids.size(), out.data(), out.size(), &n), "tokenizer " + id_);
  if (n > out.size()) {
    out.resize(n);
    throw_if_error(api_->decode(t_, ids.data(), ids.size(), out.data(), out.size(), &n), "tokenizer " + id_);
  }
  out.resize(n);
  return out;
}
int64_t Tokenizer::vocab_size() const { return api_->vocab_size(t_); }
std::optional<int32_t> Tokenizer::special_token(const char* name) const {
  int32_t id = -1;
  mh_error* err = api_->special_token(t_, name, &id);
  if (err != nullptr) {
    free_error(err);
    return std::nullopt;
  }
  return id;
}

// ---- dataset ----------------------------------------------------------------------------------

DatasetReader::DatasetReader(mh_dataset_reader* r, const mh_dataset_api* api, std::string prefix)
    : r_(r), api_(api), prefix_(std::move(prefix)) {
  info_.struct_size = sizeof(info_);
  mh_error* err = api_->reader_info(r_, &info_);
  if (err != nullptr) {
    api_->reader_close(r_);
    throw_if_error(err, prefix_);
  }
}
DatasetReader::~DatasetReader() { api_->reader_close(r_); }
std::vector<int32_t> DatasetReader::sequence_lengths() const {
  std::vector<int32_t> out(info_.num_sequences);
  throw_if_error(api_->reader_sequence_lengths(r_, 0, out.size(), out.data()), prefix_);
  return out;
}
std::vector<int64_t> DatasetReader::document_indices() const {
  std::vector<int64_t> out(info_.num_documents + 1);
  throw_if_error(api_->reader_document_indices(r_, 0, out.size(), out.data()), prefix_);
  return out;
}
void DatasetReader::read(uint64_t seq, uint64_t offset, uint64_t count, int64_t* out) const {
  throw_if_error(api_->reader_read(r_, seq, offset, count, out), prefix_);
}

DatasetWriter::DatasetWriter(mh_dataset_writer* w, const mh_dataset_api* api, std::string prefix)
    : w_(w), api_(api), prefix_(std::move(prefix)) {}
DatasetWriter::~DatasetWriter() {
  if (w_ != nullptr) api_->writer_abort(w_);
}
void DatasetWriter::add_sequence(const int32_t* tokens, size_t n) {
  throw_if_error(api_->writer_add_sequence(w_, tokens, n), prefix_);
}
void DatasetWriter::end_document() { throw_if_error(api_->writer_end_document(w_), prefix_); }
void DatasetWriter::add_dataset(const std::string& other) {
  throw_if_error(api_->writer_add_dataset(w_, other.c_str()), prefix_);
}
void DatasetWriter::finalize() {
  mh_dataset_writer* w = w_;
  w_ = nullptr;  // finalize frees the writer, also on error
  throw_if_error(api_->writer_finalize(w), prefix_);
}

DatasetFormat::DatasetFormat(mh_dataset_format* f, const mh_dataset_api* api, std::string id,
                             std::shared_ptr<void> tree)
    : f_(f), api_(api), id_(std::move(id)), config_tree_(std::move(tree)) {}
DatasetFormat::~DatasetFormat() { api_->destroy(f_); }
std::unique_ptr<DatasetReader> DatasetFormat::open_reader(const std::string& prefix) {
  mh_dataset_reader* r = nullptr;
  throw_if_error(api_->open_reader(f_, prefix.c_str(), &r), "");
  return std::make_unique<DatasetReader>(r, api_, prefix);
}
std::unique_ptr<DatasetWriter> DatasetFormat::open_writer(const std::string& prefix, mh_token_dtype dtype) {
  mh_dataset_writer* w = nullptr;
  throw_if_error(api_->open_writer(f_, prefix.c_str(), dtype, &w), "");
  return std::make_unique<DatasetWriter>(w, api_, prefix);
}

// ---- creation ---------------------------------------------------------------------------------

std::unique_ptr<Tokenizer> PluginRegistry::create_tokenizer(const std::string& id, const ConfigSection& cfg,
                                                            const std::vector<std::string>& host_keys) const {
  return create_instance<Tokenizer, mh_tokenizer_factory, mh_tokenizer, mh_tokenizer_api>(
      find(PluginKind::Tokenizer, id), cfg, host_keys, mh_tokenizer_create_args{}, "tokenizer");
}

std::unique_ptr<DatasetFormat> PluginRegistry::create_dataset(const std::string& id, const ConfigSection& cfg,
                                                              const std::vector<std::string>& host_keys) const {
  return create_instance<DatasetFormat, mh_dataset_factory, mh_dataset_format, mh_dataset_api>(
      find(PluginKind::Dataset, id), cfg, host_keys, mh_dataset_create_args{}, "dataset format");
}

}  // namespace megahost::core
