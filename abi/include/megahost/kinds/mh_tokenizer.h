/* megahost ABI — tokenizer plugins (factory "mh.tokenizer/1").
 *
 * A tokenizer needs no libtorch and may be plain C. Once created, an instance is
 * [thread-safe]: preprocessing workers share one instance.
 * Buffers are the caller's (two-call size query), so nothing is freed across the boundary.
 */
#ifndef MEGAHOST_KINDS_MH_TOKENIZER_H
#define MEGAHOST_KINDS_MH_TOKENIZER_H

#include "megahost/mh_plugin.h"
#include "megahost/services/mh_config.h"

MH_EXTERN_C_BEGIN

typedef struct mh_tokenizer mh_tokenizer; /* plugin-owned instance */

/* Borrowed for create() only. */
typedef struct mh_tokenizer_create_args {
  uint32_t struct_size;
  const mh_config* config;   /* the [tokenizer] table; valid until destroy */
  const char* instance_name; /* log channel, e.g. "tokenizer" */
} mh_tokenizer_create_args;

/* Special token names for special_token(). */
#define MH_TOKEN_EOD "eod" /* end of document, appended by preprocess --append-eod */
#define MH_TOKEN_BOS "bos"
#define MH_TOKEN_EOS "eos"
#define MH_TOKEN_PAD "pad"
#define MH_TOKEN_UNK "unk"
#define MH_TOKEN_CLS "cls"
#define MH_TOKEN_SEP "sep"
#define MH_TOKEN_MASK "mask"

typedef struct mh_tokenizer_api {
  mh_table_header hdr;

  /* Destroys the instance; accepts NULL. [main-thread] \since 1.0 */
  void(MH_ABI* destroy)(mh_tokenizer* tok);

  /* Number of ids in the vocabulary (before any padding). [thread-safe] \since 1.0 */
  int64_t(MH_ABI* vocab_size)(const mh_tokenizer* tok);

  /* Encodes len bytes of UTF-8 (not NUL-terminated). Writes the total id count to *n_ids and
   * the first min(*n_ids, cap) ids to ids (ids may be NULL when cap == 0). When *n_ids > cap
   * the caller retries with a larger buffer. Invalid UTF-8 is an MH_ERR_INVALID_ARG unless the
   * tokenizer is byte-level. [thread-safe] \since 1.0 */
  mh_error*(MH_ABI* encode)(const mh_tokenizer* tok, const char* utf8, size_t len, int32_t* ids,
                            size_t cap, size_t* n_ids);

  /* Decodes n ids to UTF-8 bytes (no NUL written). Same two-call rule: *n_bytes receives the
   * total, buf gets the first min(total, cap). Unknown ids are MH_ERR_INVALID_ARG.
   * [thread-safe] \since 1.0 */
  mh_error*(MH_ABI* decode)(const mh_tokenizer* tok, const int32_t* ids, size_t n, char* buf,
                            size_t cap, size_t* n_bytes);

  /* Looks up a special token by name (MH_TOKEN_*); MH_ERR_NOT_FOUND when the tokenizer has
   * none of that name. [thread-safe] \since 1.0 */
  mh_error*(MH_ABI* special_token)(const mh_tokenizer* tok, const char* name, int32_t* out_id);

  /* Optional capabilities by id (e.g. "mh.tokenizer.offsets/1"); NULL if unsupported.
   * [thread-safe] \since 1.0 */
  const void*(MH_ABI* get_extension)(const mh_tokenizer* tok, const char* extension_id);
} mh_tokenizer_api;

typedef struct mh_tokenizer_factory {
  mh_table_header hdr;
  /* Number of tokenizer plugins in this library. [thread-safe] \since 1.0 */
  uint32_t(MH_ABI* count)(void);
  /* Descriptor i < count(); plugin-owned until deinit. [thread-safe] \since 1.0 */
  const mh_plugin_descriptor*(MH_ABI* descriptor)(uint32_t i);
  /* Creates an instance of plugin `id`. On success *out and *out_api are set; the instance
   * is freed with out_api->destroy. [main-thread] \since 1.0 */
  mh_error*(MH_ABI* create)(const char* id, const mh_host* host, const mh_tokenizer_create_args* args,
                            mh_tokenizer** out, const mh_tokenizer_api** out_api);
} mh_tokenizer_factory;

MH_EXTERN_C_END

#endif /* MEGAHOST_KINDS_MH_TOKENIZER_H */
