/* megahost ABI — dataset format plugins (factory "mh.dataset/1").
 *
 * A dataset format reads and writes token files (Megatron's .bin/.idx is "mmap-indexed").
 * The core builds samples (splits, epochs, shuffles, blending) from what a reader exposes:
 * sequence lengths, document boundaries and token ranges. No libtorch needed.
 *
 * Threading: a format instance is [instance-serialized]; an open reader is [thread-safe]
 * (data workers share it); a writer is [instance-serialized].
 */
#ifndef MEGAHOST_KINDS_MH_DATASET_H
#define MEGAHOST_KINDS_MH_DATASET_H

#include "megahost/mh_plugin.h"
#include "megahost/services/mh_config.h"

MH_EXTERN_C_BEGIN

typedef struct mh_dataset_format mh_dataset_format; /* plugin-owned instance */
typedef struct mh_dataset_reader mh_dataset_reader; /* plugin-owned, from open_reader */
typedef struct mh_dataset_writer mh_dataset_writer; /* plugin-owned, from open_writer */

/* Token dtype codes, as Megatron's .idx stores them (note 6 and 7). */
typedef int32_t mh_token_dtype;
#define MH_DTYPE_UINT8 1
#define MH_DTYPE_INT8 2
#define MH_DTYPE_INT16 3
#define MH_DTYPE_INT32 4
#define MH_DTYPE_INT64 5
#define MH_DTYPE_FLOAT64 6
#define MH_DTYPE_FLOAT32 7
#define MH_DTYPE_UINT16 8

typedef struct mh_dataset_create_args {
  uint32_t struct_size;
  const mh_config* config; /* the [data] table, or an empty table (preprocess); valid until destroy */
  const char* instance_name;
} mh_dataset_create_args;

typedef struct mh_dataset_info {
  uint32_t struct_size;   /* set by the caller */
  uint64_t num_sequences; /* S */
  uint64_t num_documents; /* documents = document-index entries - 1 */
  uint64_t num_tokens;    /* sum of sequence lengths */
  mh_token_dtype dtype;
} mh_dataset_info;

typedef struct mh_dataset_api {
  mh_table_header hdr;

  /* Destroys the format instance after all its readers and writers are closed; accepts NULL.
   * [main-thread] \since 1.0 */
  void(MH_ABI* destroy)(mh_dataset_format* fmt);

  /* Opens the dataset at `path_prefix` (UTF-8, borrowed; e.g. "corpus_text_document" for
   * corpus_text_document.bin/.idx). Validates the files fully (magic, version, sizes) and
   * names the file and the problem on error. [instance-serialized] \since 1.0 */
  mh_error*(MH_ABI* open_reader)(mh_dataset_format* fmt, const char* path_prefix,
                                 mh_dataset_reader** out);
  /* Fills *out (up to out->struct_size). [thread-safe] \since 1.0 */
  mh_error*(MH_ABI* reader_info)(const mh_dataset_reader* r, mh_dataset_info* out);
  /* Copies sequence lengths [first, first+count) into out. [thread-safe] \since 1.0 */
  mh_error*(MH_ABI* reader_sequence_lengths)(const mh_dataset_reader* r, uint64_t first,
                                             uint64_t count, int32_t* out);
  /* Copies document-index entries [first, first+count) (num_documents + 1 in all) into out.
   * [thread-safe] \since 1.0 */
  mh_error*(MH_ABI* reader_document_indices)(const mh_dataset_reader* r, uint64_t first,
                                             uint64_t count, int64_t* out);
  /* Copies tokens [offset, offset+count) of sequence `seq` into out, widened to int64.
   * [thread-safe] \since 1.0 */
  mh_error*(MH_ABI* reader_read)(const mh_dataset_reader* r, uint64_t seq, uint64_t offset,
                                 uint64_t count, int64_t* out);
  /* Closes a reader; accepts NULL. [instance-serialized] \since 1.0 */
  void(MH_ABI* reader_close)(mh_dataset_reader* r);

  /* Starts writing `path_prefix`.bin/.idx with the given token dtype. Nothing is visible
   * under the final names until writer_finalize. [instance-serialized] \since 1.0 */
  mh_error*(MH_ABI* open_writer)(mh_dataset_format* fmt, const char* path_prefix,
                                 mh_token_dtype dtype, mh_dataset_writer** out);
  /* Appends one sequence of n tokens (borrowed). [instance-serialized] \since 1.0 */
  mh_error*(MH_ABI* writer_add_sequence)(mh_dataset_writer* w, const int32_t* tokens, size_t n);
  /* Ends the current document (records a boundary). [instance-serialized] \since 1.0 */
  mh_error*(MH_ABI* writer_end_document)(mh_dataset_writer* w);
  /* Appends a whole existing dataset (e.g. a shard) with the same dtype.
   * [instance-serialized] \since 1.0 */
  mh_error*(MH_ABI* writer_add_dataset)(mh_dataset_writer* w, const char* other_prefix);
  /* Writes the index, publishes both files under their final names and frees w (also on
   * error). [instance-serialized] \since 1.0 */
  mh_error*(MH_ABI* writer_finalize)(mh_dataset_writer* w);
  /* Removes partial output and frees w; accepts NULL. [instance-serialized] \since 1.0 */
  void(MH_ABI* writer_abort)(mh_dataset_writer* w);

  /* Optional capabilities by id; NULL if unsupported. [thread-safe] \since 1.0 */
  const void*(MH_ABI* get_extension)(const mh_dataset_format* fmt, const char* extension_id);
} mh_dataset_api;

typedef struct mh_dataset_factory {
  mh_table_header hdr;
  uint32_t(MH_ABI* count)(void);                                  /* [thread-safe] \since 1.0 */
  const mh_plugin_descriptor*(MH_ABI* descriptor)(uint32_t i);    /* [thread-safe] \since 1.0 */
  /* [main-thread] \since 1.0 */
  mh_error*(MH_ABI* create)(const char* id, const mh_host* host, const mh_dataset_create_args* args,
                            mh_dataset_format** out, const mh_dataset_api** out_api);
} mh_dataset_factory;

MH_EXTERN_C_END

#endif /* MEGAHOST_KINDS_MH_DATASET_H */
