/* megahost ABI — checkpoint format plugins (factory "mh.checkpoint/1").
 *
 * The core decides what goes into a checkpoint and where (iteration folders, the tracker file,
 * atomic publish); a format plugin stores and retrieves named tensors and blobs in one folder,
 * one tensor at a time, so nothing needs the whole state in memory at once. Tensors handed to a
 * writer are host-memory (kDLCPU), contiguous, borrowed for the call. A format must detect
 * corruption (checksums) and say which file and entry is bad.
 *
 * Threading: an instance and its writers/readers are [instance-serialized].
 */
#ifndef MEGAHOST_KINDS_MH_CHECKPOINT_H
#define MEGAHOST_KINDS_MH_CHECKPOINT_H

#include "megahost/mh_plugin.h"
#include "megahost/mh_tensor.h"
#include "megahost/services/mh_config.h"

MH_EXTERN_C_BEGIN

typedef struct mh_checkpoint_format mh_checkpoint_format; /* plugin-owned instance */
typedef struct mh_checkpoint_writer mh_checkpoint_writer;
typedef struct mh_checkpoint_reader mh_checkpoint_reader;

typedef struct mh_checkpoint_create_args {
  uint32_t struct_size;
  const mh_config* config; /* the [checkpoint] table; valid until destroy */
  const char* instance_name;
} mh_checkpoint_create_args;

/* One stored entry, as listed by reader_list. Borrowed for the callback. */
typedef struct mh_checkpoint_entry {
  uint32_t struct_size;
  const char* name;
  int32_t is_blob;      /* 1: bytes written by writer_blob; 0: a tensor */
  DLDataType dtype;     /* tensors only */
  int32_t ndim;         /* tensors only */
  const int64_t* shape; /* tensors only, ndim entries */
  uint64_t nbytes;      /* payload size */
} mh_checkpoint_entry;

typedef mh_error*(MH_ABI* mh_checkpoint_entry_fn)(void* ctx, const mh_checkpoint_entry* e);

typedef struct mh_checkpoint_api {
  mh_table_header hdr;

  /* Accepts NULL. [main-thread] \since 1.0 */
  void(MH_ABI* destroy)(mh_checkpoint_format* ck);

  /* Starts a checkpoint in folder `dir` (created if needed; the core passes a staging folder
   * and renames it once writer_commit succeeds). \since 1.0 */
  mh_error*(MH_ABI* writer_open)(mh_checkpoint_format* ck, const char* dir, mh_checkpoint_writer** out);
  /* Stores a tensor (host memory, contiguous, borrowed). Names are unique. \since 1.0 */
  mh_error*(MH_ABI* writer_tensor)(mh_checkpoint_writer* w, const char* name, const DLTensor* t);
  /* Stores opaque bytes (metadata, RNG state, data position). \since 1.0 */
  mh_error*(MH_ABI* writer_blob)(mh_checkpoint_writer* w, const char* name, const void* bytes,
                                 size_t len);
  /* Flushes everything durably (fsync), writes the format's index with checksums and frees w
   * (also on error). \since 1.0 */
  mh_error*(MH_ABI* writer_commit)(mh_checkpoint_writer* w);
  /* Drops a partial checkpoint and frees w; accepts NULL. \since 1.0 */
  void(MH_ABI* writer_abort)(mh_checkpoint_writer* w);

  /* Opens the checkpoint in `dir`, validating its index. \since 1.0 */
  mh_error*(MH_ABI* reader_open)(mh_checkpoint_format* ck, const char* dir, mh_checkpoint_reader** out);
  /* Calls fn for every entry, in the order written. \since 1.0 */
  mh_error*(MH_ABI* reader_list)(mh_checkpoint_reader* r, mh_checkpoint_entry_fn fn, void* ctx);
  /* Copies tensor `name` into dst (host memory, contiguous, borrowed), which must have the
   * stored dtype and shape; verifies the checksum. \since 1.0 */
  mh_error*(MH_ABI* reader_tensor)(mh_checkpoint_reader* r, const char* name, DLTensor* dst);
  /* Copies blob `name`: *len receives its size, buf the first min(size, cap) bytes.
   * \since 1.0 */
  mh_error*(MH_ABI* reader_blob)(mh_checkpoint_reader* r, const char* name, void* buf, size_t cap,
                                 size_t* len);
  /* Accepts NULL. \since 1.0 */
  void(MH_ABI* reader_close)(mh_checkpoint_reader* r);

  /* Optional capabilities by id (e.g. "mh.checkpoint.async/1"); NULL if unsupported.
   * [thread-safe] \since 1.0 */
  const void*(MH_ABI* get_extension)(const mh_checkpoint_format* ck, const char* extension_id);
} mh_checkpoint_api;

typedef struct mh_checkpoint_factory {
  mh_table_header hdr;
  uint32_t(MH_ABI* count)(void);                               /* [thread-safe] \since 1.0 */
  const mh_plugin_descriptor*(MH_ABI* descriptor)(uint32_t i); /* [thread-safe] \since 1.0 */
  /* [main-thread] \since 1.0 */
  mh_error*(MH_ABI* create)(const char* id, const mh_host* host,
                            const mh_checkpoint_create_args* args, mh_checkpoint_format** out,
                            const mh_checkpoint_api** out_api);
} mh_checkpoint_factory;

MH_EXTERN_C_END

#endif /* MEGAHOST_KINDS_MH_CHECKPOINT_H */
