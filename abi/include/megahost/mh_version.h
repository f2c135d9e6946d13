/* megahost ABI — versions and the header every table starts with.
 *
 * Rules (normative, docs/abi.md):
 *  - One exported entry symbol per ABI major: `megahost_plugin_v1`.
 *  - Every table implemented by either side starts with mh_table_header.
 *  - Within a major, tables only grow at the end; a caller never reads a slot that lies past
 *    the implementer's struct_size (use MH_HAS_SLOT).
 *  - MH_ABI_VERSION_MINOR is bumped whenever a slot, a table, a constant or an id is added.
 */
#ifndef MEGAHOST_MH_VERSION_H
#define MEGAHOST_MH_VERSION_H

#include "megahost/mh_platform.h"

MH_EXTERN_C_BEGIN

#define MH_ABI_VERSION_MAJOR 1 /* symbol suffix _v1; frozen layouts */
#define MH_ABI_VERSION_MINOR 11 /* bumped by every append within major 1 */
#define MH_ABI_VERSION_PATCH 0 /* documentation-only changes */

typedef struct mh_version {
  uint32_t major;
  uint32_t minor;
  uint32_t patch;
} mh_version;

#define MH_ABI_VERSION_INIT {MH_ABI_VERSION_MAJOR, MH_ABI_VERSION_MINOR, MH_ABI_VERSION_PATCH}

/* First member of every table. */
typedef struct mh_table_header {
  uint32_t struct_size; /* sizeof(the table) as compiled by its implementer */
  mh_version abi;       /* the headers its implementer compiled against */
} mh_table_header;

/* Header initialiser for a table of type T compiled against these headers. */
#define MH_TABLE_HEADER(T) {(uint32_t)sizeof(T), MH_ABI_VERSION_INIT}

/* True when the table pointed to by p (whose first member is an mh_table_header named hdr)
 * was compiled with the slot `field` present, so it may be read. */
#define MH_HAS_SLOT(p, T, field) \
  ((p) != NULL && (p)->hdr.struct_size >= offsetof(T, field) + sizeof(((T*)0)->field))

MH_EXTERN_C_END

#endif /* MEGAHOST_MH_VERSION_H */
