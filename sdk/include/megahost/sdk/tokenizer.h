// megahost SDK — write a tokenizer plugin as one C++ class; this header does the ABI.
//
// A tokenizer derives from sdk::TokenizerImpl (vocab_size, encode, decode, special_token) and the
// library lists its descriptors and one create function:
//
//     std::unique_ptr<sdk::TokenizerImpl> create(int which, const mh_host* host, const sdk::Config& cfg) {
//       return std::make_unique<MyTokenizer>(cfg.get_string("vocab_file"));  // which: index in kDescriptors
//     }
//     const mh_plugin_descriptor* const kDescriptors[] = {&kMine};
//     const void* get_factory(const char* id) {
//       return std::strcmp(id, MH_FACTORY_TOKENIZER) == 0 ? &sdk::tokenizer_factory<kDescriptors, create>() : nullptr;
//     }
//     MH_SDK_PLUGIN_ENTRY(get_factory)
//
// The helper supplies the mh_tokenizer_api table: MH_SDK_TRY / MH_SDK_CATCH with the instance's
// host at every entry point, null-argument checks naming the plugin id, the two-call buffer
// protocol over per-thread scratch (the instance is shared by workers), out-params untouched on
// error; and the mh_tokenizer_factory table: count / descriptor / create by id or alias.
#pragma once

#include <algorithm>
#include <cstring>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "megahost/megahost.h"
#include "megahost/sdk/error.h"
#include "megahost/sdk/host.h"
#include "megahost/sdk/plugin.h"

namespace megahost::sdk {

// One tokenizer. Immutable after construction: every method may run on many threads at once.
// Methods may throw (sdk::Error, cfg.error(...), std::exception); the helper turns that into an
// mh_error*. vocab_size() must not throw.
class TokenizerImpl {
 public:
  virtual ~TokenizerImpl() = default;
  virtual int64_t vocab_size() const = 0;
  // Appends the ids of `text` to `ids` (empty on entry).
  virtual void encode(std::string_view text, std::vector<int32_t>& ids) const = 0;
  // Appends the UTF-8 of n ids to `text` (empty on entry); unknown ids throw MH_ERR_INVALID_ARG.
  virtual void decode(const int32_t* ids, size_t n, std::string& text) const = 0;
  // The id of special token `name` (MH_TOKEN_*), or nullopt when this tokenizer has none.
  virtual std::optional<int32_t> special_token(std::string_view name) const = 0;
  // The HINT of the MH_ERR_NOT_FOUND for an unknown special token: which names exist.
  virtual std::string special_token_hint() const { return "see the plugin's documentation"; }
  // Optional capabilities by id (mh_tokenizer_api.get_extension); nullptr when unsupported.
  virtual const void* get_extension(std::string_view /*extension_id*/) const { return nullptr; }
};

using TokenizerCreateFn = std::unique_ptr<TokenizerImpl> (*)(int descriptor_index, const mh_host* host,
                                                             const Config& config);

namespace tokenizer_detail {

// What an mh_tokenizer* points at.
struct Instance {
  const mh_host* host;
  const char* id;  // the descriptor's id, for messages
  std::unique_ptr<TokenizerImpl> impl;
};

inline const Instance* as_instance(const mh_tokenizer* t) { return reinterpret_cast<const Instance*>(t); }
inline const mh_host* host_of(const mh_tokenizer* t) { return t != nullptr ? as_instance(t)->host : library_host(); }
inline const char* id_of(const mh_tokenizer* t) { return t != nullptr ? as_instance(t)->id : "tokenizer"; }

inline void MH_ABI destroy(mh_tokenizer* t) { delete reinterpret_cast<Instance*>(t); }

inline int64_t MH_ABI vocab_size(const mh_tokenizer* t) { return as_instance(t)->impl->vocab_size(); }

inline mh_error* MH_ABI encode(const mh_tokenizer* t, const char* utf8, size_t len, int32_t* ids, size_t cap,
                               size_t* n_ids) {
  const mh_host* host = host_of(t);
  MH_SDK_TRY {
    MH_CHECK(t != nullptr && n_ids != nullptr && (utf8 != nullptr || len == 0) && (ids != nullptr || cap == 0),
             MH_ERR_INVALID_ARG, id_of(t), " encode: null argument HINT: pass the instance, the text and n_ids");
    // A short buffer means the caller encodes again; tokenizers with a piece cache make that cheap.
    thread_local std::vector<int32_t> scratch;
    scratch.clear();
    as_instance(t)->impl->encode(std::string_view(utf8 == nullptr ? "" : utf8, len), scratch);
    if (!scratch.empty() && cap > 0) std::memcpy(ids, scratch.data(), std::min(cap, scratch.size()) * sizeof(int32_t));
    *n_ids = scratch.size();
    return nullptr;
  }
  MH_SDK_CATCH(host)
}

inline mh_error* MH_ABI decode(const mh_tokenizer* t, const int32_t* ids, size_t n, char* buf, size_t cap,
                               size_t* n_bytes) {
  const mh_host* host = host_of(t);
  MH_SDK_TRY {
    MH_CHECK(t != nullptr && n_bytes != nullptr && (ids != nullptr || n == 0) && (buf != nullptr || cap == 0),
             MH_ERR_INVALID_ARG, id_of(t), " decode: null argument HINT: pass the instance, the ids and n_bytes");
    thread_local std::string scratch;
    scratch.clear();
    as_instance(t)->impl->decode(ids, n, scratch);
    if (!scratch.empty() && cap > 0) std::memcpy(buf, scratch.data(), std::min(cap, scratch.size()));
    *n_bytes = scratch.size();
    return nullptr;
  }
  MH_SDK_CATCH(host)
}

inline mh_error* MH_ABI special_token(const mh_tokenizer* t, const char* name, int32_t* out_id) {
  const mh_host* host = host_of(t);
  MH_SDK_TRY {
    MH_CHECK(t != nullptr && name != nullptr && out_id != nullptr, MH_ERR_INVALID_ARG, id_of(t),
             " special_token: null argument HINT: pass the instance, a name (MH_TOKEN_*) and out_id");
    const TokenizerImpl& impl = *as_instance(t)->impl;
    const std::optional<int32_t> id = impl.special_token(name);
    MH_CHECK(id.has_value(), MH_ERR_NOT_FOUND, id_of(t), " has no special token '", name,
             "' HINT: ", impl.special_token_hint());
    *out_id = *id;
    return nullptr;
  }
  MH_SDK_CATCH(host)
}

inline const void* MH_ABI get_extension(const mh_tokenizer* t, const char* extension_id) {
  if (t == nullptr || extension_id == nullptr) return nullptr;
  try {
    return as_instance(t)->impl->get_extension(extension_id);
  } catch (...) {
    return nullptr;  // get_extension has no error channel
  }
}

inline const mh_tokenizer_api kApi = {
    MH_TABLE_HEADER(mh_tokenizer_api), destroy, vocab_size, encode, decode, special_token, get_extension,
};

// '"a" (alias "A"), "b" and "c"': the ids a library provides, for the unknown-id hint.
inline std::string list_ids(const mh_plugin_descriptor* const* descs, size_t n) {
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    if (i > 0) out += i + 1 == n ? " and " : ", ";
    out += str_cat("\"", descs[i]->id, "\"");
    const char* const* a = descs[i]->aliases;
    if (a == nullptr || *a == nullptr) continue;
    out += " (alias";
    for (const char* sep = " "; *a != nullptr; ++a, sep = ", ") out += str_cat(sep, "\"", *a, "\"");
    out += ")";
  }
  return out;
}

// The factory table of one library: descriptors kDescs (an array of descriptor pointers) and kCreate.
template <auto& kDescs, TokenizerCreateFn kCreate>
struct Factory {
  static constexpr size_t kCount = std::size(kDescs);

  static uint32_t MH_ABI count(void) { return static_cast<uint32_t>(kCount); }
  static const mh_plugin_descriptor* MH_ABI descriptor(uint32_t i) { return i < kCount ? kDescs[i] : nullptr; }

  static mh_error* MH_ABI create(const char* id, const mh_host* host, const mh_tokenizer_create_args* args,
                                 mh_tokenizer** out, const mh_tokenizer_api** out_api) {
    MH_SDK_TRY {
      MH_CHECK(id != nullptr && args != nullptr && out != nullptr && out_api != nullptr, MH_ERR_INVALID_ARG,
               kDescs[0]->id, " create: null argument HINT: pass the id, the create args, out and out_api");
      const int which = find_descriptor(kDescs, static_cast<int>(kCount), id);
      MH_CHECK(which >= 0, MH_ERR_NOT_FOUND, "this library has no tokenizer '", id,
               "' HINT: it provides ", list_ids(kDescs, kCount));
      const Config cfg(host, args->config);
      auto inst = std::make_unique<Instance>(Instance{host, kDescs[which]->id, kCreate(which, host, cfg)});
      MH_CHECK(inst->impl != nullptr, MH_ERR_INTERNAL, kDescs[which]->id, " create returned no tokenizer");
      *out = reinterpret_cast<mh_tokenizer*>(inst.release());
      *out_api = &kApi;
      return nullptr;
    }
    MH_SDK_CATCH(host)
  }

  static inline const mh_tokenizer_factory table = {MH_TABLE_HEADER(mh_tokenizer_factory), count, descriptor, create};
};

}  // namespace tokenizer_detail

// The mh_tokenizer_factory of a library whose tokenizers are kDescs (e.g.
// `const mh_plugin_descriptor* const kDescriptors[] = {&kMine};`), created by kCreate with the
// index of the descriptor whose id or alias was asked for. Unknown ids are MH_ERR_NOT_FOUND.
template <auto& kDescs, TokenizerCreateFn kCreate>
const mh_tokenizer_factory& tokenizer_factory() {
  return tokenizer_detail::Factory<kDescs, kCreate>::table;
}

}  // namespace megahost::sdk
