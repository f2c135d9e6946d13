/* megahost ABI — the plugin entry point, build fingerprint and descriptors.
 *
 * A plugin library exports exactly one data symbol per ABI major it speaks:
 *
 *     MH_EXPORT const mh_plugin_entry_v1 megahost_plugin_v1 = {...};
 *
 * The host resolves it, checks hdr.abi.major == 1 and the fingerprint, calls init once, then
 * asks get_factory for each kind ("mh.model/1", ...). A library may hold several plugins of
 * several kinds. Libraries are never unloaded while the process runs.
 */
#ifndef MEGAHOST_MH_PLUGIN_H
#define MEGAHOST_MH_PLUGIN_H

#include "megahost/mh_error.h"
#include "megahost/mh_host.h"
#include "megahost/mh_platform.h"
#include "megahost/mh_version.h"

MH_EXTERN_C_BEGIN

#define MH_PLUGIN_ENTRY_SYMBOL_V1 "megahost_plugin_v1"

/* Factory ids; each factory table is declared in megahost/kinds/. */
#define MH_FACTORY_MODEL "mh.model/1"
#define MH_FACTORY_TOKENIZER "mh.tokenizer/1"
#define MH_FACTORY_DATASET "mh.dataset/1"
#define MH_FACTORY_CHECKPOINT "mh.checkpoint/1"
#define MH_FACTORY_OPTIMIZER "mh.optimizer/1"
#define MH_FACTORY_CONVERTER "mh.converter/1" /* since ABI 1.3 */

/* What the plugin was built against. The host refuses a plugin that links libtorch when its
 * torch version, CUDA version or C++11-ABI flag differ from the host's: one libtorch per process. */
typedef struct mh_build_fingerprint {
  uint32_t struct_size;
  int32_t links_libtorch; /* 0 for plugins that use only C/C++ runtime (tokenizers, formats) */
  const char* torch_version; /* e.g. "1.13.1"; "" when links_libtorch == 0 */
  const char* cuda_version;  /* e.g. "13.0"; "" for CPU-only builds */
  int32_t cxx11_abi;         /* _GLIBCXX_USE_CXX11_ABI of the build; -1 when not C++ */
  const char* compiler;      /* informational, e.g. "gcc 12.2.0" */
} mh_build_fingerprint;

/* Describes one plugin (one creatable id). All strings are static UTF-8 owned by the plugin,
 * valid until deinit. */
typedef struct mh_plugin_descriptor {
  uint32_t struct_size;
  const char* id;          /* used in recipes: plugin = "gpt2-bpe"; third parties: "com.vendor.name" */
  const char* name;        /* human-readable */
  const char* vendor;
  const char* version;     /* the plugin's own version, e.g. "0.1.0" */
  const char* description; /* one line */
  /* Other names the host accepts for this id, NULL-terminated (may be NULL), e.g. Megatron's
   * --tokenizer-type "GPT2BPETokenizer". */
  const char* const* aliases;
  /* JSON object describing the keys of the plugin's recipe table; the host rejects unknown
   * keys and wrong types, and fills defaults, before create:
   *   {"vocab_file": {"type": "path", "required": true, "doc": "GPT-2 encoder.json"},
   *    "lowercase":  {"type": "bool", "default": false, "doc": "..."}}
   * types: "int" "float" "bool" "string" "path" "array" "table". NULL = accepts no keys. */
  const char* config_schema;
} mh_plugin_descriptor;

typedef struct mh_plugin_entry_v1 {
  mh_table_header hdr;
  const mh_build_fingerprint* fingerprint;

  /* Called once, before any factory is used. host is valid for the process; library_path
   * (borrowed) is where the library was loaded from, to find files beside it. Fast: no
   * collectives, no device work. [main-thread] \since 1.0 */
  mh_error*(MH_ABI* init)(const mh_host* host, const char* library_path);

  /* Called once at process exit after every instance is destroyed. [main-thread] \since 1.0 */
  void(MH_ABI* deinit)(void);

  /* Returns the factory table for a factory id (MH_FACTORY_*), or NULL if this library has
   * no plugin of that kind. The table is plugin-owned, valid until deinit. [thread-safe] \since 1.0 */
  const void*(MH_ABI* get_factory)(const char* factory_id);
} mh_plugin_entry_v1;

MH_EXTERN_C_END

#endif /* MEGAHOST_MH_PLUGIN_H */
