/* megahost ABI — service "mh.rng/1": derive seeds, never share generators.
 *
 * A derived seed is a pure function of (recipe seed, purpose, index, sharing), so a run is
 * reproducible whatever order plugins ask in.
 */
#ifndef MEGAHOST_SERVICES_MH_RNG_H
#define MEGAHOST_SERVICES_MH_RNG_H

#include "megahost/mh_host.h"

MH_EXTERN_C_BEGIN

typedef int32_t mh_seed_sharing;
#define MH_SEED_SAME_ON_ALL_RANKS 0 /* e.g. model init before sharding */
#define MH_SEED_PER_RANK 1          /* distinct on every rank, e.g. data augmentation */

typedef struct mh_rng_service {
  mh_table_header hdr;
  /* Derives a 64-bit seed for `purpose` (UTF-8, e.g. "model.init") and `index`.
   * [thread-safe] \since 1.0 */
  uint64_t(MH_ABI* derive_seed)(const mh_host* host, const char* purpose, uint64_t index,
                                mh_seed_sharing sharing);
} mh_rng_service;

MH_EXTERN_C_END

#endif /* MEGAHOST_SERVICES_MH_RNG_H */
