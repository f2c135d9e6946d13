/* The "byte-level" tokenizer plugin, written in plain C11 against abi/ only (no SDK): proof
 * that the ABI really is C.
 *
 * ids 0..255 are the UTF-8 bytes of the text, id 256 is the end-of-document token; so
 * vocab_size = 257. Any byte string encodes, and decode(encode(x)) == x. Decoding eod yields
 * no bytes (it marks a boundary, it is not text). No recipe keys. */
#include <stdlib.h>
#include <string.h>

#include "megahost/megahost.h"

#define BYTE_LEVEL_EOD 256
#define BYTE_LEVEL_VOCAB_SIZE 257

/* One instance; immutable after create, so every call is thread-safe. */
struct mh_tokenizer {
  const mh_host* host;
};

/* The host table from init, for errors raised without an instance. */
static const mh_host* g_host = NULL;

static const mh_host* host_of(const mh_tokenizer* t) { return t != NULL ? t->host : g_host; }

static void MH_ABI bl_destroy(mh_tokenizer* t) { free(t); }

static int64_t MH_ABI bl_vocab_size(const mh_tokenizer* t) {
  (void)t;
  return BYTE_LEVEL_VOCAB_SIZE;
}

static mh_error* MH_ABI bl_encode(const mh_tokenizer* t, const char* utf8, size_t len, int32_t* ids,
                                  size_t cap, size_t* n_ids) {
  const mh_host* host = host_of(t);
  size_t i;
  if (t == NULL || n_ids == NULL || (utf8 == NULL && len > 0) || (ids == NULL && cap > 0))
    return host->error_new(host, MH_ERR_INVALID_ARG,
                           "byte-level encode: null argument HINT: pass the instance, the text and n_ids");
  for (i = 0; i < len && i < cap; ++i) ids[i] = (int32_t)(unsigned char)utf8[i];
  *n_ids = len;
  return NULL;
}

static mh_error* MH_ABI bl_decode(const mh_tokenizer* t, const int32_t* ids, size_t n, char* buf,
                                  size_t cap, size_t* n_bytes) {
  const mh_host* host = host_of(t);
  size_t i, total = 0;
  if (t == NULL || n_bytes == NULL || (ids == NULL && n > 0) || (buf == NULL && cap > 0))
    return host->error_new(host, MH_ERR_INVALID_ARG,
                           "byte-level decode: null argument HINT: pass the instance, the ids and n_bytes");
  /* Validate everything first: on error nothing is written. */
  for (i = 0; i < n; ++i) {
    if (ids[i] < 0 || ids[i] > BYTE_LEVEL_EOD)
      return host->error_new(host, MH_ERR_INVALID_ARG,
                             "byte-level decode: id outside 0..256 HINT: ids 0..255 are bytes, 256 is eod");
  }
  for (i = 0; i < n; ++i) {
    if (ids[i] == BYTE_LEVEL_EOD) continue;
    if (total < cap) buf[total] = (char)(unsigned char)ids[i];
    ++total;
  }
  *n_bytes = total;
  return NULL;
}

static mh_error* MH_ABI bl_special_token(const mh_tokenizer* t, const char* name, int32_t* out_id) {
  const mh_host* host = host_of(t);
  if (t == NULL || name == NULL || out_id == NULL)
    return host->error_new(host, MH_ERR_INVALID_ARG, "byte-level special_token: null argument");
  if (strcmp(name, MH_TOKEN_EOD) == 0 || strcmp(name, MH_TOKEN_EOS) == 0) {
    *out_id = BYTE_LEVEL_EOD;
    return NULL;
  }
  return host->error_new(host, MH_ERR_NOT_FOUND,
                         "byte-level has no such special token HINT: it has only \"eod\" (= \"eos\", id 256)");
}

static const void* MH_ABI bl_get_extension(const mh_tokenizer* t, const char* extension_id) {
  (void)t;
  (void)extension_id;
  return NULL;
}

static const mh_tokenizer_api k_api = {
    MH_TABLE_HEADER(mh_tokenizer_api), bl_destroy, bl_vocab_size, bl_encode, bl_decode, bl_special_token,
    bl_get_extension,
};

static const char* const k_aliases[] = {"ByteLevelTokenizer", NULL};

static const mh_plugin_descriptor k_descriptor = {
    sizeof(mh_plugin_descriptor),
    "byte-level",
    "Byte-level tokenizer",
    "megahost",
    "0.1.0",
    "ids 0..255 are UTF-8 bytes, 256 is eod (written in C)",
    k_aliases,
    "{}",
};

static uint32_t MH_ABI bl_count(void) { return 1; }

static const mh_plugin_descriptor* MH_ABI bl_descriptor(uint32_t i) { return i == 0 ? &k_descriptor : NULL; }

static int bl_is_our_id(const char* id) {
  const char* const* a;
  if (strcmp(id, k_descriptor.id) == 0) return 1;
  for (a = k_aliases; *a != NULL; ++a)
    if (strcmp(id, *a) == 0) return 1;
  return 0;
}

static mh_error* MH_ABI bl_create(const char* id, const mh_host* host, const mh_tokenizer_create_args* args,
                                  mh_tokenizer** out, const mh_tokenizer_api** out_api) {
  mh_tokenizer* t;
  (void)args; /* no recipe keys */
  if (id == NULL || out == NULL || out_api == NULL)
    return host->error_new(host, MH_ERR_INVALID_ARG, "byte-level create: null argument");
  if (!bl_is_our_id(id))
    return host->error_new(host, MH_ERR_NOT_FOUND,
                           "this library has no such tokenizer HINT: it provides \"byte-level\" "
                           "(alias \"ByteLevelTokenizer\")");
  t = (mh_tokenizer*)malloc(sizeof *t);
  if (t == NULL) return host->error_new(host, MH_ERR_OUT_OF_MEMORY, "byte-level create: out of memory");
  t->host = host;
  *out = t;
  *out_api = &k_api;
  return NULL;
}

static const mh_tokenizer_factory k_factory = {
    MH_TABLE_HEADER(mh_tokenizer_factory), bl_count, bl_descriptor, bl_create,
};

static mh_error* MH_ABI bl_init(const mh_host* host, const char* library_path) {
  (void)library_path;
  g_host = host;
  return NULL;
}

static void MH_ABI bl_deinit(void) {}

static const void* MH_ABI bl_get_factory(const char* factory_id) {
  if (factory_id != NULL && strcmp(factory_id, MH_FACTORY_TOKENIZER) == 0) return &k_factory;
  return NULL;
}

#define BL_STR2(x) #x
#define BL_STR(x) BL_STR2(x)
#if defined(__clang__)
#define BL_COMPILER "clang " __clang_version__
#elif defined(__GNUC__)
#define BL_COMPILER "gcc " BL_STR(__GNUC__) "." BL_STR(__GNUC_MINOR__) "." BL_STR(__GNUC_PATCHLEVEL__)
#else
#define BL_COMPILER "unknown C compiler"
#endif

static const mh_build_fingerprint k_fingerprint = {
    sizeof(mh_build_fingerprint),
    0,  /* links_libtorch: plain C, nothing to match */
    "", /* torch_version */
    "", /* cuda_version */
    -1, /* cxx11_abi: not C++ */
    BL_COMPILER,
};

MH_EXPORT const mh_plugin_entry_v1 megahost_plugin_v1 = {
    MH_TABLE_HEADER(mh_plugin_entry_v1), &k_fingerprint, bl_init, bl_deinit, bl_get_factory,
};
