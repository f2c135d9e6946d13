/* megahost ABI — service "mh.dist/1": process groups and collectives (since 1.1).
 *
 * The host builds every group once, at start, from the recipe's [parallel] table, with
 * Megatron's rank layout (docs/parallel.md). Groups are looked up by name:
 *   "world"      every rank
 *   "tp"         tensor parallel            "cp"   context parallel
 *   "pp"         pipeline parallel          "dp"   data parallel
 *   "dp-cp"      data x context: gradient reduction and the distributed optimizer
 *   "tp-cp"      tensor x context           "tp-pp" model parallel (gradient norm)
 *   "embedding"  first and last pipeline stage (tied embeddings); NULL on middle stages
 *   "ep", "expert-tp", "expert-dp"   the expert grid
 * A single process has every group, each of size 1.
 *
 * Tensors: contiguous DLTensors on the group's device (CPU under Gloo, CUDA under NCCL). The
 * DLTensor structs are borrowed for the call; their STORAGE must stay alive and untouched until
 * the collective completes (the call returns without a work handle, or work_wait returns).
 *
 * Asynchrony: with out_work == NULL a call returns when the collective is complete. With
 * out_work != NULL it returns once enqueued and *out_work is a host-owned handle the caller
 * passes to work_wait exactly once (work_wait frees it, also when it reports an error).
 *
 * Streams (CUDA): a collective starts after the work already enqueued on `stream`; work_wait
 * makes `stream` wait for it (the host does not block). On CPU streams are ignored.
 *
 * Failures: every collective has the host's timeout (parallel.distributed_timeout_minutes); an
 * error message names the group, the operation, this rank and the group's sequence number.
 *
 * Threading: [collective:<group>] — every member calls the same collectives on a group in the
 * same order; calls on one group are serialised by the caller (any thread, one at a time).
 */
#ifndef MEGAHOST_SERVICES_MH_DIST_H
#define MEGAHOST_SERVICES_MH_DIST_H

#include "megahost/mh_host.h"
#include "megahost/mh_tensor.h"

MH_EXTERN_C_BEGIN

typedef struct mh_dist_group mh_dist_group; /* host-owned, valid for the process */
typedef struct mh_dist_work mh_dist_work;   /* host-owned until work_wait */

typedef int32_t mh_reduce_op;
#define MH_REDUCE_SUM 0
#define MH_REDUCE_MAX 1
#define MH_REDUCE_MIN 2
#define MH_REDUCE_AVG 3 /* sum / group size */

typedef struct mh_dist_service {
  mh_table_header hdr;

  /* The group `name` (see above), or NULL when this rank is not a member or the name is
   * unknown. [thread-safe] \since 1.1 */
  const mh_dist_group*(MH_ABI* group)(const mh_host* host, const char* name);
  /* This rank's index in the group and the group's size. [thread-safe] \since 1.1 */
  int32_t(MH_ABI* group_rank)(const mh_host* host, const mh_dist_group* g);
  int32_t(MH_ABI* group_size)(const mh_host* host, const mh_dist_group* g);
  /* The global rank of member `index` of the group. [thread-safe] \since 1.1 */
  int32_t(MH_ABI* global_rank)(const mh_host* host, const mh_dist_group* g, int32_t index);

  /* In place: every member ends with op over all members' tensors. \since 1.1 */
  mh_error*(MH_ABI* all_reduce)(const mh_host* host, const mh_dist_group* g, DLTensor* inout, mh_reduce_op op,
                                mh_stream stream, mh_dist_work** out_work);
  /* out = concatenation of every member's `in` along dim 0, in group order
   * (out.shape[0] = size * in.shape[0]). \since 1.1 */
  mh_error*(MH_ABI* all_gather)(const mh_host* host, const mh_dist_group* g, const DLTensor* in, DLTensor* out,
                                mh_stream stream, mh_dist_work** out_work);
  /* `in` is split into `size` equal chunks along dim 0; member i receives op over every
   * member's chunk i in `out`. \since 1.1 */
  mh_error*(MH_ABI* reduce_scatter)(const mh_host* host, const mh_dist_group* g, const DLTensor* in, DLTensor* out,
                                    mh_reduce_op op, mh_stream stream, mh_dist_work** out_work);
  /* In place: every member ends with member `root`'s tensor (root is a group index). \since 1.1 */
  mh_error*(MH_ABI* broadcast)(const mh_host* host, const mh_dist_group* g, DLTensor* inout, int32_t root,
                               mh_stream stream, mh_dist_work** out_work);
  /* Point to point with group member `peer` (a group index). Sends and receives between a pair
   * match in the order they were posted. \since 1.1 */
  mh_error*(MH_ABI* send)(const mh_host* host, const mh_dist_group* g, const DLTensor* t, int32_t peer,
                          mh_stream stream, mh_dist_work** out_work);
  mh_error*(MH_ABI* recv)(const mh_host* host, const mh_dist_group* g, DLTensor* t, int32_t peer, mh_stream stream,
                          mh_dist_work** out_work);
  /* Rows along dim 0: in_splits[i] rows of `in` go to member i, out_splits[i] rows of `out` come
   * from member i (arrays of group size; both NULL = equal splits). \since 1.1 */
  mh_error*(MH_ABI* all_to_all)(const mh_host* host, const mh_dist_group* g, const DLTensor* in, DLTensor* out,
                                const int64_t* in_splits, const int64_t* out_splits, mh_stream stream,
                                mh_dist_work** out_work);
  /* Returns when every member has entered. \since 1.1 */
  mh_error*(MH_ABI* barrier)(const mh_host* host, const mh_dist_group* g);
  /* Completes (CPU) or orders on `stream` (CUDA) an asynchronous collective, then frees the
   * handle. [thread-safe] \since 1.1 */
  mh_error*(MH_ABI* work_wait)(const mh_host* host, mh_dist_work* work, mh_stream stream);
} mh_dist_service;

MH_EXTERN_C_END

#endif /* MEGAHOST_SERVICES_MH_DIST_H */
