/* megahost ABI — service "mh.run/1": facts about this run and this process. */
#ifndef MEGAHOST_SERVICES_MH_RUN_H
#define MEGAHOST_SERVICES_MH_RUN_H

#include "megahost/mh_host.h"

MH_EXTERN_C_BEGIN

typedef struct mh_run_info {
  uint32_t struct_size;     /* set by the caller to sizeof(mh_run_info) before the call */
  int32_t rank;             /* global rank */
  int32_t world_size;       /* number of processes */
  int32_t local_rank;       /* rank on this node; selects the local device */
  uint64_t seed;            /* the recipe's training.seed */
  const char* recipe_path;  /* absolute path of the recipe; host-owned, process lifetime */
  const char* run_dir;      /* folder for run outputs (may be "."); host-owned, process lifetime */
} mh_run_info;

typedef struct mh_run_service {
  mh_table_header hdr;
  /* Fills *out up to min(out->struct_size, host's size). [thread-safe] \since 1.0 */
  mh_error*(MH_ABI* info)(const mh_host* host, mh_run_info* out);
} mh_run_service;

MH_EXTERN_C_END

#endif /* MEGAHOST_SERVICES_MH_RUN_H */
