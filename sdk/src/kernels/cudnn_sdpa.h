// megahost SDK — cuDNN's flash-attention backward (causal, no dropout) called through cuDNN's
// backend API with a stride for every tensor, so that dq / dk / dv land straight in the packed
// q/k/v gradient the linear_qkv backward reads: no pack kernel after the attention. libtorch calls
// the same cuDNN kernels but allocates dq / dk / dv alone (its cudnn-frontend is not exported).
// Plain pointers and sizes, no ATen (sdk/src/nn/fused_attention.cpp is the autograd glue).
// Built only where cuDNN's headers are found (MH_SDK_WITH_CUDNN_GRAPH); libcudnn.so.9 is the one
// libtorch loaded, looked up at run time.
#pragma once

#include <cstddef>
#include <cstdint>

namespace megahost::sdk::kernels {

// Every tensor is [b, h, s, d] (Stats [b, h, s, 1], float32, contiguous); strides in that order,
// in elements, the last one 1. One head count for q, k and v (grouped-query attention is not
// covered here). dO has O's strides.
struct SdpaBackwardShape {
  int64_t b = 0, h = 0, s = 0, d = 0;
  int dtype = 0;  // kBF16 or kF16
  int64_t q[4] = {}, k[4] = {}, v[4] = {}, o[4] = {}, dq[4] = {}, dk[4] = {}, dv[4] = {};
};

struct SdpaBackwardArgs {
  const void *q = nullptr, *k = nullptr, *v = nullptr, *o = nullptr, *dout = nullptr;
  const float* stats = nullptr;  // the forward's softmax statistics (logsumexp), [b, h, s, 1]
  void *dq = nullptr, *dk = nullptr, *dv = nullptr;
  float scale = 1.0f;  // the forward's softmax scale (1 / sqrt(d))
  void* workspace = nullptr;
};

// Builds the shape's execution plan once (cached per device, also when refused). 0 and the
// workspace bytes the call needs, else nonzero with sdpa_backward_error() saying why: no cuDNN in
// the process, or no engine for the graph (a shape or layout cuDNN does not take).
int sdpa_backward_plan(const SdpaBackwardShape& shape, size_t* workspace_bytes);

// Runs it on the stream (a cudaStream_t). The workspace must be sdpa_backward_plan's size and
// 256-byte aligned.
int sdpa_backward(const SdpaBackwardShape& shape, const SdpaBackwardArgs& args, void* stream);

const char* sdpa_backward_error();

}  // namespace megahost::sdk::kernels
