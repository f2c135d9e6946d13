// megahost SDK — the plugin entry point and the build fingerprint.
//
// A plugin library writes one get_factory function and then, in exactly one .cpp file:
//
//     const void* my_get_factory(const char* id) {
//       if (std::strcmp(id, MH_FACTORY_TOKENIZER) == 0) return &kTokenizerFactory;
//       return nullptr;
//     }
//     MH_SDK_PLUGIN_ENTRY(my_get_factory)
//
// which emits `megahost_plugin_v1` with the SDK's init/deinit (remembering the host table)
// and a fingerprint of what the library was compiled against.
#pragma once

#include <cstring>

#include "megahost/megahost.h"
#include "megahost/sdk/error.h"
#include "megahost/sdk/host.h"

#if defined(MH_SDK_WITH_TORCH)
#include <torch/version.h>
#define MH_SDK_FP_LINKS_LIBTORCH 1
#define MH_SDK_FP_TORCH_VERSION TORCH_VERSION
#else
#define MH_SDK_FP_LINKS_LIBTORCH 0
#define MH_SDK_FP_TORCH_VERSION ""
#endif
#ifndef MH_SDK_CUDA_VERSION
#define MH_SDK_CUDA_VERSION ""
#endif
#if defined(_GLIBCXX_USE_CXX11_ABI)
#define MH_SDK_FP_CXX11_ABI _GLIBCXX_USE_CXX11_ABI
#else
#define MH_SDK_FP_CXX11_ABI -1
#endif
#define MH_SDK_STR2(x) #x
#define MH_SDK_STR(x) MH_SDK_STR2(x)
#if defined(__clang__)
#define MH_SDK_COMPILER "clang " __clang_version__
#elif defined(__GNUC__)
#define MH_SDK_COMPILER "gcc " MH_SDK_STR(__GNUC__) "." MH_SDK_STR(__GNUC_MINOR__) "." MH_SDK_STR(__GNUC_PATCHLEVEL__)
#else
#define MH_SDK_COMPILER "unknown"
#endif

#define MH_SDK_PLUGIN_ENTRY(get_factory_fn)                                                  \
  const mh_host*& megahost::sdk::library_host() {                                            \
    static const mh_host* host = nullptr;                                                    \
    return host;                                                                             \
  }                                                                                          \
  namespace {                                                                                \
  mh_error* MH_ABI mh_sdk_init(const mh_host* host, const char* /*library_path*/) {          \
    ::megahost::sdk::library_host() = host;                                                  \
    return nullptr;                                                                          \
  }                                                                                          \
  void MH_ABI mh_sdk_deinit(void) {}                                                         \
  const void* MH_ABI mh_sdk_get_factory(const char* id) {                                    \
    return id == nullptr ? nullptr : (get_factory_fn)(id);                                   \
  }                                                                                          \
  const mh_build_fingerprint mh_sdk_fingerprint = {                                          \
      sizeof(mh_build_fingerprint), MH_SDK_FP_LINKS_LIBTORCH, MH_SDK_FP_TORCH_VERSION,       \
      MH_SDK_CUDA_VERSION,          MH_SDK_FP_CXX11_ABI,      MH_SDK_COMPILER};              \
  }                                                                                          \
  extern "C" MH_EXPORT const mh_plugin_entry_v1 megahost_plugin_v1 = {                       \
      MH_TABLE_HEADER(mh_plugin_entry_v1), &mh_sdk_fingerprint, mh_sdk_init, mh_sdk_deinit,  \
      mh_sdk_get_factory};

namespace megahost::sdk {

// Finds descriptor index by id or alias among n descriptors; -1 if none.
inline int find_descriptor(const mh_plugin_descriptor* const* descs, int n, const char* id) {
  for (int i = 0; i < n; ++i) {
    if (std::strcmp(descs[i]->id, id) == 0) return i;
    for (const char* const* a = descs[i]->aliases; a != nullptr && *a != nullptr; ++a)
      if (std::strcmp(*a, id) == 0) return i;
  }
  return -1;
}

}  // namespace megahost::sdk
