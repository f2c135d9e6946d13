/* megahost ABI — errors.
 *
 * A function that can fail returns mh_error* (NULL = success). Error objects are created and
 * freed only by the host (mh_host.error_new / error_free), so no allocator ever crosses the
 * boundary. A plugin that fails builds an error with host->error_new and returns it; the caller
 * owns it and frees it with host->error_free. On error, out-parameters are left untouched.
 * No C++ exception ever crosses the ABI: the SDK catches at every entry point.
 */
#ifndef MEGAHOST_MH_ERROR_H
#define MEGAHOST_MH_ERROR_H

#include "megahost/mh_platform.h"

MH_EXTERN_C_BEGIN

typedef struct mh_error mh_error; /* opaque; host-owned */

/* A small fixed set of codes; never an enum-typed field (its size is not fixed in C). */
typedef int32_t mh_status_code;
#define MH_OK 0
#define MH_ERR_INVALID_ARG 1   /* bad input from the caller or the recipe */
#define MH_ERR_NOT_FOUND 2     /* a file, key, id or tensor that does not exist */
#define MH_ERR_UNSUPPORTED 3   /* valid request this plugin cannot do */
#define MH_ERR_UNAVAILABLE 4   /* a resource is busy or gone (I/O, network, device) */
#define MH_ERR_OUT_OF_MEMORY 5 /* an allocation failed */
#define MH_ERR_INTERNAL 6      /* a bug: broken invariant, unexpected exception */
#define MH_ERR_CANCELLED 7     /* the operation was stopped on request */
#define MH_ERR_DATA_LOSS 8     /* corrupt or truncated data (checksum, short file) */
#define MH_ERR_TOO_SMALL 9     /* a caller buffer is too small; the needed size was written */

MH_EXTERN_C_END

#endif /* MEGAHOST_MH_ERROR_H */
