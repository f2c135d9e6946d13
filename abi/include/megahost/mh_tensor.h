/* megahost ABI — tensors, streams and tensor visitors.
 *
 * Tensors cross as DLPack (the system <dlpack/dlpack.h>; DLTensor and DLManagedTensor have the
 * same layout in DLPack 0.6 and 1.x).
 *  - A `DLTensor*` argument is BORROWED: valid for the duration of the call only.
 *  - A `DLManagedTensor*` moves ownership: the receiver calls its deleter exactly once, from
 *    any thread.
 *  - Every call that touches device memory carries the mh_stream the data is ready on.
 */
#ifndef MEGAHOST_MH_TENSOR_H
#define MEGAHOST_MH_TENSOR_H

#include <dlpack/dlpack.h>

#include "megahost/mh_error.h"
#include "megahost/mh_platform.h"

MH_EXTERN_C_BEGIN

/* Where a device tensor's producing work is enqueued. device_type uses DLPack's codes. */
typedef struct mh_stream {
  int32_t device_type; /* kDLCPU (1), kDLCUDA (2), ... */
  int32_t device_id;
  void* handle; /* cudaStream_t for CUDA; NULL = the legacy default stream / CPU */
} mh_stream;

/* A borrowed, named view. name and tensor are valid as the documentation of the call says
 * (for visitors: for the duration of the callback). */
typedef struct mh_named_tensor {
  const char* name; /* UTF-8, e.g. "tokens", "decoder.layers.3.self_attention.linear_qkv.weight" */
  DLTensor* tensor;
} mh_named_tensor;

/* Visitor over named tensors: called once per tensor; returning an error stops the visit and
 * the visiting function returns that same error (ownership passes back to its caller).
 * [same thread as the visiting call] */
typedef mh_error*(MH_ABI* mh_tensor_visit_fn)(void* ctx, const mh_named_tensor* t);

MH_EXTERN_C_END

#endif /* MEGAHOST_MH_TENSOR_H */
