// megahost SDK — what the CUDA halves of the fused operations share (sdk/src/nn/fused_*.cpp):
// dtype codes, the current stream, launch checks. Included only under MH_SDK_WITH_CUDA.
#pragma once

#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>

#include <vector>

#include "megahost/sdk/error.h"
#include "../kernels/fused_kernels.h"

namespace megahost::sdk::fused::detail {

inline int dtype_code(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return kernels::kF32;
    case at::kBFloat16: return kernels::kBF16;
    case at::kHalf: return kernels::kF16;
    default:
      throw Error(MH_ERR_INVALID_ARG, str_cat("fused kernels take float32, bfloat16 or float16, not ",
                                              c10::toString(t.scalar_type())));
  }
}

inline void* stream_of(const at::Tensor& t) { return c10::cuda::getCurrentCUDAStream(t.get_device()).stream(); }

inline void check_launch(int rc, const char* what) {
  MH_CHECK(rc == 0, MH_ERR_INTERNAL, "fused kernel ", what, ": ", cudaGetErrorString(static_cast<cudaError_t>(rc)),
           "\nHINT: MEGAHOST_FUSED=0 runs the plain libtorch path instead");
}

// Optional tensors travel into autograd functions as empty tensors (libtorch 2.x rejects
// undefined inputs of a custom function).
inline const void* ptr_or_null(const at::Tensor& t) { return t.defined() && t.numel() > 0 ? t.data_ptr() : nullptr; }
inline at::Tensor or_empty(const at::Tensor& t, const at::Tensor& like) {
  return t.defined() ? t : at::empty({0}, like.options());
}

// A parameter's gradient from the float32 per-block column sums a fused backward left ([blocks, n],
// see kernels::column_sums), for up to kMaxColumnSumJobs parameters in one launch. When the
// parameter is a leaf whose .grad() is bound (the host's float32 main gradient, or one of its own
// dtype), the sums are added straight into it, its grad_ready fires (nn::notify_grad_accumulated)
// and the returned gradient is undefined: autograd has nothing left to add. Else a new tensor of
// the parameter's dtype is returned. A job with an undefined partial gets an undefined gradient.
struct PartialSums {
  at::Tensor partial;  // [blocks, n] float32, or undefined
  at::Tensor param;    // [n]
};
std::vector<at::Tensor> grads_from_partial_sums(const std::vector<PartialSums>& jobs);

}  // namespace megahost::sdk::fused::detail
