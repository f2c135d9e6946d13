/* megahost ABI — service "mh.config/1": a read-only view of a plugin's own recipe table.
 *
 * A plugin instance receives the node of its own table (e.g. [model]) at create. Keys its
 * descriptor declares (config_schema) have already been checked by the host for presence,
 * type and spelling, with defaults filled in, before create is called. Errors from this
 * service name the recipe file, line and key.
 *
 * Lifetime: nodes and returned strings are owned by the host and live until the instance the
 * node was given to is destroyed.
 */
#ifndef MEGAHOST_SERVICES_MH_CONFIG_H
#define MEGAHOST_SERVICES_MH_CONFIG_H

#include "megahost/mh_host.h"

MH_EXTERN_C_BEGIN

typedef struct mh_config mh_config; /* opaque node */

typedef int32_t mh_config_kind;
#define MH_CONFIG_NONE 0
#define MH_CONFIG_TABLE 1
#define MH_CONFIG_ARRAY 2
#define MH_CONFIG_INT 3
#define MH_CONFIG_FLOAT 4
#define MH_CONFIG_BOOL 5
#define MH_CONFIG_STRING 6

typedef struct mh_config_service {
  mh_table_header hdr;
  /* Finds a child by dotted path ("a.b"); MH_ERR_NOT_FOUND when absent. [thread-safe] \since 1.0 */
  mh_error*(MH_ABI* get)(const mh_config* node, const char* dotted_path, const mh_config** out);
  /* The node's kind; MH_CONFIG_NONE for NULL. [thread-safe] \since 1.0 */
  mh_config_kind(MH_ABI* kind)(const mh_config* node);
  /* Typed reads; MH_ERR_INVALID_ARG naming file:line:key on a kind mismatch. An int reads as
   * a float. [thread-safe] \since 1.0 */
  mh_error*(MH_ABI* as_i64)(const mh_config* node, int64_t* out);
  mh_error*(MH_ABI* as_f64)(const mh_config* node, double* out);
  mh_error*(MH_ABI* as_bool)(const mh_config* node, bool* out);
  mh_error*(MH_ABI* as_str)(const mh_config* node, const char** out_utf8);
  /* Number of entries of a table or array, 0 otherwise. [thread-safe] \since 1.0 */
  size_t(MH_ABI* len)(const mh_config* node);
  /* Entry i of a table (key written) or array (key = NULL). [thread-safe] \since 1.0 */
  mh_error*(MH_ABI* at)(const mh_config* node, size_t i, const char** out_key, const mh_config** out);
  /* "file:line" of the node in the recipe, or "--set" for overrides. [thread-safe] \since 1.0 */
  const char*(MH_ABI* where)(const mh_config* node);
  /* Builds an MH_ERR_INVALID_ARG error that names the node's file, line and key, with the
   * given message and hint (both borrowed). [thread-safe] \since 1.0 */
  mh_error*(MH_ABI* error_at)(const mh_config* node, const char* message, const char* hint);
} mh_config_service;

MH_EXTERN_C_END

#endif /* MEGAHOST_SERVICES_MH_CONFIG_H */
