/* megahost ABI — checkpoint converter plugins (factory "mh.converter/1", since ABI 1.3).
 *
 * A converter maps a foreign checkpoint (a Hugging Face folder, another trainer's files) to the
 * gpt model plugin's parameters and back: `megahost convert --loader <id>` / `--saver <id>`. The
 * plugin knows the foreign side (its files, its names, how its tensors are cut, its metadata);
 * the core keeps the streaming driver (one rule at a time, the TP x PP rank folders, recipe.toml)
 * and the step kinds below, so every converter gets bit-exact round trips for free.
 *
 * A rule says how one megahost parameter is made from foreign tensors: a fixed step kind
 * (MH_CONVERT_STEP_*) applied to the foreign tensors in the listed order. Every step is a reshape,
 * transpose, split or concatenation (plus the dtype change to and from the foreign dtype), so a
 * round trip is bit-identical. Tensors crossing this ABI are host memory (kDLCPU), contiguous.
 *
 * Threading: an instance and its readers/writers are [instance-serialized].
 */
#ifndef MEGAHOST_KINDS_MH_CONVERTER_H
#define MEGAHOST_KINDS_MH_CONVERTER_H

#include "megahost/mh_plugin.h"
#include "megahost/mh_tensor.h"
#include "megahost/services/mh_config.h"

MH_EXTERN_C_BEGIN

typedef struct mh_converter mh_converter; /* plugin-owned instance */
typedef struct mh_converter_reader mh_converter_reader;
typedef struct mh_converter_writer mh_converter_writer;

/* Step kinds (values of mh_converter_rule.step). Shapes: h = hidden_size, the [model] table's
 * num_attention_heads / num_query_groups / kv_channels give the grouped QKV layout. */
#define MH_CONVERT_STEP_COPY 0           /* one foreign tensor, same shape */
#define MH_CONVERT_STEP_TRANSPOSED 1     /* one foreign 2-D tensor [in, out] <-> [out, in] */
#define MH_CONVERT_STEP_QKV_CONV1D 2     /* one foreign [h, q|k|v columns] <-> grouped QKV rows */
#define MH_CONVERT_STEP_QKV_FUSED_BIAS 3 /* one foreign [q|k|v] vector <-> grouped QKV bias */
#define MH_CONVERT_STEP_QKV_SEPARATE 4   /* three foreign tensors q, k, v <-> grouped QKV rows */
#define MH_CONVERT_STEP_GATE_UP 5        /* two foreign tensors gate, up <-> [gate; up] rows */
#define MH_CONVERT_STEP_VOCAB_ROWS 6     /* one foreign [vocab, h] <-> [padded vocab, h], zero rows */

/* One foreign tensor of a rule. Borrowed for the callback. */
typedef struct mh_converter_tensor {
  uint32_t struct_size;
  const char* name;
  DLDataType dtype;     /* as stored (loader) / to be stored (saver) */
  int32_t ndim;
  const int64_t* shape; /* ndim entries */
} mh_converter_tensor;

/* One megahost parameter and the foreign tensors it is made of. Borrowed for the callback. */
typedef struct mh_converter_rule {
  uint32_t struct_size;
  const char* param;    /* the gpt plugin's parameter name, without the checkpoint's "model/" */
  int32_t step;         /* MH_CONVERT_STEP_* */
  int32_t ndim;
  const int64_t* shape; /* the megahost parameter's global shape (float32 in the checkpoint) */
  uint32_t num_foreign;
  const mh_converter_tensor* foreign;
} mh_converter_rule;

typedef mh_error*(MH_ABI* mh_converter_rule_fn)(void* ctx, const mh_converter_rule* rule);

/* A named byte string: foreign metadata the core keeps in the megahost checkpoint as
 * "<converter id>/<name>" and hands back to the saver (the loaded config.json, ...). */
typedef struct mh_converter_blob {
  uint32_t struct_size;
  const char* name;
  const void* bytes;
  size_t len;
} mh_converter_blob;

typedef mh_error*(MH_ABI* mh_converter_blob_fn)(void* ctx, const mh_converter_blob* blob);

/* What a loader says about its folder. Strings owned by the reader, valid until reader_close. */
typedef struct mh_converter_source_info {
  uint32_t struct_size; /* set by the caller */
  /* TOML of the recipe tables the folder determines: "[model]" (the gpt plugin's keys) and,
   * when the folder has a tokenizer, "[tokenizer]". */
  const char* recipe_toml;
  const char* summary; /* one line for the user, e.g. the architecture */
} mh_converter_source_info;

typedef struct mh_converter_reader_args {
  uint32_t struct_size;
  const char* dir;
  /* Megatron's padding: the megahost vocabulary rows are a multiple of this
   * (make_vocab_size_divisible_by x target TP). */
  int64_t vocab_divisor;
} mh_converter_reader_args;

/* Both args structs and everything they point to are borrowed for the open call only. */
typedef struct mh_converter_writer_args {
  uint32_t struct_size;
  const char* dir;                 /* the folder to write (created if needed) */
  const mh_config* model;          /* the checkpoint's [model] table (recipe.toml) */
  const char* tokenizer_model;     /* the recipe's [tokenizer] tokenizer_model, or "" */
  int64_t padded_vocab;            /* rows of the stored word embedding */
  const mh_converter_blob* blobs;  /* what this converter's loader stored, prefix removed */
  uint32_t num_blobs;
} mh_converter_writer_args;

typedef void(MH_ABI* mh_converter_text_fn)(void* ctx, const char* utf8);

typedef struct mh_converter_api {
  mh_table_header hdr;

  /* Accepts NULL. [main-thread] \since 1.3 */
  void(MH_ABI* destroy)(mh_converter* c);

  /* ---- foreign -> megahost (--loader) ---- */
  /* Opens a foreign folder: reads its metadata and tensor index, checks that every stored tensor
   * has a place (errors name the file and tensor, with a HINT). \since 1.3 */
  mh_error*(MH_ABI* reader_open)(mh_converter* c, const mh_converter_reader_args* args,
                                 mh_converter_reader** out);
  /* Fills *out (out->struct_size set by the caller). \since 1.3 */
  mh_error*(MH_ABI* reader_info)(mh_converter_reader* r, mh_converter_source_info* out);
  /* Calls fn for every megahost parameter in Megatron's state-dict order, after checking that
   * every foreign tensor it names exists with the stated shape. \since 1.3 */
  mh_error*(MH_ABI* reader_plan)(mh_converter_reader* r, mh_converter_rule_fn fn, void* ctx);
  /* Copies foreign tensor `name` into dst (host, contiguous, the rule's dtype and shape). \since 1.3 */
  mh_error*(MH_ABI* reader_tensor)(mh_converter_reader* r, const char* name, DLTensor* dst);
  /* Calls fn for each metadata blob the megahost checkpoint should keep for the way back. \since 1.3 */
  mh_error*(MH_ABI* reader_blobs)(mh_converter_reader* r, mh_converter_blob_fn fn, void* ctx);
  /* Accepts NULL. \since 1.3 */
  void(MH_ABI* reader_close)(mh_converter_reader* r);

  /* ---- megahost -> foreign (--saver) ---- */
  /* Prepares a foreign folder for the model args->model describes (refusing models it cannot
   * express, naming the key). Nothing is written before writer_plan. \since 1.3 */
  mh_error*(MH_ABI* writer_open)(mh_converter* c, const mh_converter_writer_args* args,
                                 mh_converter_writer** out);
  /* Calls fn for every megahost parameter to write, in the order writer_tensor expects its
   * foreign tensors. \since 1.3 */
  mh_error*(MH_ABI* writer_plan)(mh_converter_writer* w, mh_converter_rule_fn fn, void* ctx);
  /* Stores foreign tensor `name` (host, contiguous, borrowed; the rule's dtype and shape), in
   * the order of the plan. \since 1.3 */
  mh_error*(MH_ABI* writer_tensor)(mh_converter_writer* w, const char* name, const DLTensor* t);
  /* Finishes the folder (metadata, tokenizer files), calls summary with one line for the user
   * (may be NULL) and frees w, also on error. \since 1.3 */
  mh_error*(MH_ABI* writer_commit)(mh_converter_writer* w, mh_converter_text_fn summary, void* ctx);
  /* Drops the writer; accepts NULL. \since 1.3 */
  void(MH_ABI* writer_abort)(mh_converter_writer* w);

  /* Optional capabilities by id; NULL if unsupported. [thread-safe] \since 1.3 */
  const void*(MH_ABI* get_extension)(const mh_converter* c, const char* extension_id);
} mh_converter_api;

typedef struct mh_converter_create_args {
  uint32_t struct_size;
  const mh_config* config; /* an empty table: converters take their settings from the folders */
  const char* instance_name;
} mh_converter_create_args;

typedef struct mh_converter_factory {
  mh_table_header hdr;
  uint32_t(MH_ABI* count)(void);                               /* [thread-safe] \since 1.3 */
  const mh_plugin_descriptor*(MH_ABI* descriptor)(uint32_t i); /* [thread-safe] \since 1.3 */
  /* [main-thread] \since 1.3 */
  mh_error*(MH_ABI* create)(const char* id, const mh_host* host, const mh_converter_create_args* args,
                            mh_converter** out, const mh_converter_api** out_api);
} mh_converter_factory;

MH_EXTERN_C_END

#endif /* MEGAHOST_KINDS_MH_CONVERTER_H */
