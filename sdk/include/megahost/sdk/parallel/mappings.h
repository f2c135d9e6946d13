// megahost SDK — Megatron-Core's tensor/sequence-parallel autograd regions, and the
// ParallelContext a model's layers are built over.
//
//   region                                      forward              backward
//   copy_to_tp_region                           identity             all-reduce
//   reduce_from_tp_region                       all-reduce           identity
//   scatter_to_tp_region          (last dim)    keep rank's chunk    all-gather
//   gather_from_tp_region         (last dim)    all-gather           keep rank's chunk
//   scatter_to_sequence_parallel_region (dim 0) keep rank's chunk    all-gather
//   gather_from_sequence_parallel_region (dim 0) all-gather          reduce-scatter (or keep chunk)
//   reduce_scatter_to_sequence_parallel_region  reduce-scatter       all-gather
//
// Every region takes the group it runs over (tp for tensor/sequence parallelism; attention uses
// the gather over cp for context parallelism). On a size-1 group each is the identity. The group
// must outlive the autograd graph (ParallelContext's groups live as long as the model).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>

#include "megahost/megahost.h"
#include "megahost/sdk/parallel/dist.h"

namespace megahost::sdk::parallel {

at::Tensor copy_to_tp_region(const at::Tensor& x, const DistGroup& g);
at::Tensor reduce_from_tp_region(const at::Tensor& x, const DistGroup& g);
at::Tensor scatter_to_tp_region(const at::Tensor& x, const DistGroup& g);   // [..., n] -> [..., n/size]
at::Tensor gather_from_tp_region(const at::Tensor& x, const DistGroup& g);  // [..., n] -> [..., n*size]
at::Tensor scatter_to_sequence_parallel_region(const at::Tensor& x, const DistGroup& g);  // [s] -> [s/size]
// [s, ...] -> [s*size, ...]. tensor_parallel_output_grad: the consumer is tensor parallel, so the
// grad is partial per rank and is reduce-scattered (Megatron's default); false: keep the chunk.
at::Tensor gather_from_sequence_parallel_region(const at::Tensor& x, const DistGroup& g,
                                                bool tensor_parallel_output_grad = true);
at::Tensor reduce_scatter_to_sequence_parallel_region(const at::Tensor& x, const DistGroup& g);  // [s] -> [s/size]

// The groups a model is built over. A default context is a single process.
struct ParallelContext {
  DistGroup tp, cp;
  bool sequence_parallel = false;  // only with tp.size() > 1 (Megatron turns it off at tp = 1)

  // From the host's dist service and mh_model_create_args.parallel_flags (MH_PARALLEL_*).
  // A host without the service (1.0) gives size-1 groups: everything runs single-process.
  static std::shared_ptr<const ParallelContext> from_host(const mh_host* host, uint32_t parallel_flags);

  bool single() const { return tp.size() == 1 && cp.size() == 1; }
};

// Megatron's ensure_divisibility / divide: "<what> (n) is not divisible by <by_what> (d)".
int64_t divide(int64_t numerator, int64_t denominator, const char* what, const char* by_what);

}  // namespace megahost::sdk::parallel
