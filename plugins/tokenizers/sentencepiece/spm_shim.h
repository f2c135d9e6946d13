/* A C bridge to libsentencepiece, built as its own shared library and opened by the plugin with
 * RTLD_DEEPBIND.
 *
 * Why: Debian's libsentencepiece.so bundles protobuf-lite 3.14 and exports its symbols, while
 * the host process already has libprotobuf 3.21 (through libtorch) in the global scope. Linked
 * normally, sentencepiece's protobuf calls bind to 3.21 and abort ("compiled against version
 * 3.14.0 ..."). Opened with RTLD_DEEPBIND, this library and its dependencies look up their own
 * symbols first, so sentencepiece uses its bundled protobuf. Only plain C crosses this bridge.
 */
#pragma once
#ifndef MEGAHOST_SPM_SHIM_H
#define MEGAHOST_SPM_SHIM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mh_spm_model mh_spm_model;
/* Receives results; called at most once per successful call, never after it returns. */
typedef void (*mh_spm_ids_sink)(void* ctx, const int32_t* ids, size_t n);
typedef void (*mh_spm_bytes_sink)(void* ctx, const char* bytes, size_t n);

typedef struct mh_spm_shim_api {
  uint32_t struct_size;
  /* Loads a .model file; NULL on failure, with the reason written to err (NUL-terminated). */
  mh_spm_model* (*load)(const char* path, char* err, size_t err_cap);
  void (*free_model)(mh_spm_model* m);
  int32_t (*piece_size)(const mh_spm_model* m);
  /* The model's unk / bos / eos / pad id ('u', 'b', 'e', 'p'); -1 when it has none. */
  int32_t (*special_id)(const mh_spm_model* m, char which);
  /* Requires 0 <= id < piece_size. */
  void (*id_to_piece)(const mh_spm_model* m, int32_t id, mh_spm_bytes_sink sink, void* ctx);
  /* sp.encode_as_ids / sp.decode_ids. 0 on success, else nonzero with err filled. Thread-safe:
   * SentencePieceProcessor::Encode / Decode are const and read only immutable model state. */
  int (*encode)(const mh_spm_model* m, const char* text, size_t len, mh_spm_ids_sink sink, void* ctx, char* err,
                size_t err_cap);
  int (*decode)(const mh_spm_model* m, const int32_t* ids, size_t n, mh_spm_bytes_sink sink, void* ctx, char* err,
                size_t err_cap);
} mh_spm_shim_api;

#define MH_SPM_SHIM_ENTRY "megahost_spm_shim_v1"
typedef const mh_spm_shim_api* (*mh_spm_shim_entry_fn)(void);

#ifdef __cplusplus
}
#endif

#endif /* MEGAHOST_SPM_SHIM_H */
