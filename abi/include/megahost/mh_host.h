/* megahost ABI — the host table handed to every plugin at init.
 *
 * The host owns logging, configuration, run information, seeds, errors and (later) the
 * process groups. A plugin reaches them only through this table and the service tables it
 * returns; it never links a host symbol and keeps no logging or registry singletons of its own.
 *
 * Lifetime: the mh_host pointer and every table get_service returns stay valid for the whole
 * process (the host outlives every plugin; plugins are never unloaded).
 */
#ifndef MEGAHOST_MH_HOST_H
#define MEGAHOST_MH_HOST_H

#include "megahost/mh_error.h"
#include "megahost/mh_platform.h"
#include "megahost/mh_version.h"

MH_EXTERN_C_BEGIN

/* Service ids, each with its table in megahost/services/. */
#define MH_SERVICE_LOG "mh.log/1"       /* mh_log_service */
#define MH_SERVICE_CONFIG "mh.config/1" /* mh_config_service */
#define MH_SERVICE_RUN "mh.run/1"       /* mh_run_service */
#define MH_SERVICE_RNG "mh.rng/1"       /* mh_rng_service */
#define MH_SERVICE_DIST "mh.dist/1"     /* mh_dist_service: process groups and collectives (since 1.1) */

typedef struct mh_host mh_host;
struct mh_host {
  mh_table_header hdr;
  void* host_data;     /* the host's own; plugins never touch it */
  const char* name;    /* "megahost" */
  const char* version; /* host version, e.g. "0.1.0" */

  /* Looks up a service table by id (MH_SERVICE_*). Returns NULL when the host does not offer
   * it. The table is host-owned and valid for the process. Check its hdr.struct_size before
   * reading slots newer than your headers' minor. [thread-safe] \since 1.0 */
  const void*(MH_ABI* get_service)(const mh_host* host, const char* service_id);

  /* Creates an error with a code and a UTF-8 message (copied; should say what, where and
   * a HINT). Never returns NULL. The caller of the failing function owns the result.
   * [thread-safe] \since 1.0 */
  mh_error*(MH_ABI* error_new)(const mh_host* host, mh_status_code code, const char* utf8_message);

  /* Frees an error; accepts NULL. [thread-safe] \since 1.0 */
  void(MH_ABI* error_free)(const mh_host* host, mh_error* error);

  /* The code of an error (MH_OK for NULL). [thread-safe] \since 1.0 */
  mh_status_code(MH_ABI* error_code)(const mh_host* host, const mh_error* error);

  /* The message of an error; lives until error_free ("" for NULL). [thread-safe] \since 1.0 */
  const char*(MH_ABI* error_message)(const mh_host* host, const mh_error* error);
};

MH_EXTERN_C_END

#endif /* MEGAHOST_MH_HOST_H */
