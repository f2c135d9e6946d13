// megahost core — plugin discovery, loading and typed C++ handles over the C ABI.
//
// Libraries are found in the search path (installed plugin folder, the build tree's plugin
// folder, MEGAHOST_PLUGIN_PATH, the recipe's plugin_path), loaded once with Boost.DLL, checked
// (ABI major, struct sizes, build fingerprint) and never unloaded. Every refusal is kept with
// its reason for `megahost plugins`.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "megahost/core/config.h"
#include "megahost/megahost.h"

namespace megahost::core {

enum class PluginKind { Model, Tokenizer, Dataset, Checkpoint, Optimizer, Converter };
const char* kind_name(PluginKind k);  // "model", "tokenizer", ...

struct PluginInfo {
  std::string id, name, vendor, version, description;
  std::vector<std::string> aliases;
  std::string config_schema;  // JSON, may be empty
  PluginKind kind;
  std::string abi_version;  // "1.0.0"
  std::filesystem::path path;
  uint32_t index = 0;       // index within its factory
  const void* factory = nullptr;
};

struct RefusedLibrary {
  std::filesystem::path path;
  std::string reason;
};

// Throws core::Error carrying the plugin's message.
void throw_if_error(mh_error* err, const std::string& context);

class Tokenizer {
 public:
  // config_tree keeps the plugin's config nodes alive as long as the instance.
  Tokenizer(mh_tokenizer* t, const mh_tokenizer_api* api, std::string id, std::shared_ptr<void> config_tree);
  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  std::vector<int32_t> encode(std::string_view utf8) const;            // thread-safe
  void encode(std::string_view utf8, std::vector<int32_t>& out) const;  // reuses out's buffer
  std::string decode(const std::vector<int32_t>& ids) const;
  int64_t vocab_size() const;
  std::optional<int32_t> special_token(const char* name) const;
  const std::string& id() const { return id_; }

 private:
  mh_tokenizer* t_;
  const mh_tokenizer_api* api_;
  std::string id_;
  std::shared_ptr<void> config_tree_;
};

class DatasetReader {
 public:
  DatasetReader(mh_dataset_reader* r, const mh_dataset_api* api, std::string prefix);
  ~DatasetReader();
  DatasetReader(const DatasetReader&) = delete;
  DatasetReader& operator=(const DatasetReader&) = delete;

  uint64_t num_sequences() const { return info_.num_sequences; }
  uint64_t num_documents() const { return info_.num_documents; }
  uint64_t num_tokens() const { return info_.num_tokens; }
  mh_token_dtype dtype() const { return info_.dtype; }
  std::vector<int32_t> sequence_lengths() const;  // S entries
  std::vector<int64_t> document_indices() const;  // D + 1 entries
  // tokens [offset, offset + count) of sequence seq, widened to int64. thread-safe
  void read(uint64_t seq, uint64_t offset, uint64_t count, int64_t* out) const;
  const std::string& prefix() const { return prefix_; }

 private:
  mh_dataset_reader* r_;
  const mh_dataset_api* api_;
  std::string prefix_;
  mh_dataset_info info_{};
};

class DatasetWriter {
 public:
  DatasetWriter(mh_dataset_writer* w, const mh_dataset_api* api, std::string prefix);
  ~DatasetWriter();  // aborts (removes partial files) unless finalize() succeeded
  DatasetWriter(const DatasetWriter&) = delete;
  DatasetWriter& operator=(const DatasetWriter&) = delete;

  void add_sequence(const int32_t* tokens, size_t n);
  void end_document();
  void add_dataset(const std::string& other_prefix);
  void finalize();

 private:
  mh_dataset_writer* w_;
  const mh_dataset_api* api_;
  std::string prefix_;
};

class DatasetFormat {
 public:
  DatasetFormat(mh_dataset_format* f, const mh_dataset_api* api, std::string id, std::shared_ptr<void> config_tree);
  ~DatasetFormat();
  DatasetFormat(const DatasetFormat&) = delete;
  DatasetFormat& operator=(const DatasetFormat&) = delete;

  std::unique_ptr<DatasetReader> open_reader(const std::string& prefix);
  std::unique_ptr<DatasetWriter> open_writer(const std::string& prefix, mh_token_dtype dtype);
  const std::string& id() const { return id_; }

 private:
  mh_dataset_format* f_;
  const mh_dataset_api* api_;
  std::string id_;
  std::shared_ptr<void> config_tree_;
};

class PluginRegistry {
 public:
  // Loads every library in the given folders (non-recursive; files named lib*.so).
  explicit PluginRegistry(const std::vector<std::filesystem::path>& search_dirs);
  // The default search path: installed folder, build-tree folder, $MEGAHOST_PLUGIN_PATH, extra.
  static std::vector<std::filesystem::path> default_search_path(
      const std::vector<std::filesystem::path>& extra = {});

  const std::vector<PluginInfo>& plugins() const { return plugins_; }
  const std::vector<RefusedLibrary>& refused() const { return refused_; }
  // Finds a plugin of a kind by id or alias; throws with the list of known ids when absent.
  const PluginInfo& find(PluginKind kind, const std::string& id_or_alias) const;

  // Validates `cfg` against the plugin's schema (unknown keys, types, defaults) and creates it.
  // Keys listed in `host_keys` belong to the host and are skipped by validation.
  std::unique_ptr<Tokenizer> create_tokenizer(const std::string& id, const ConfigSection& cfg,
                                              const std::vector<std::string>& host_keys = {}) const;
  std::unique_ptr<DatasetFormat> create_dataset(const std::string& id, const ConfigSection& cfg,
                                                const std::vector<std::string>& host_keys = {}) const;

  // Model, optimizer and checkpoint handles live in core/engine headers.
  const mh_host* host() const;

 private:
  void load_library(const std::filesystem::path& path);
  std::vector<PluginInfo> plugins_;
  std::vector<RefusedLibrary> refused_;
};

// Applies a plugin's config schema to a section: rejects unknown keys (naming file:line and
// the closest known key), checks types, fills defaults. Throws core::Error.
void apply_config_schema(const PluginInfo& plugin, ConfigSection& cfg,
                         const std::vector<std::string>& host_keys);

}  // namespace megahost::core
