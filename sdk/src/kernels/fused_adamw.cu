// megahost SDK — multi-tensor AdamW (see fused_kernels.h): every parameter tensor of a step in
// one launch. The work is cut into chunks of kAdamWChunk elements; a block takes chunks in a
// grid-stride loop and finds its tensor by binary search over the chunk prefix sums. The
// gradient scale (clipping x 1/loss scale, times a device scalar when given: the clipping
// coefficient computed on the GPU) is applied on the fly: no separate pass over the grads.
#include <cstdint>

#include "fused_common.cuh"
#include "fused_kernels.h"

namespace megahost::sdk::kernels {

namespace {

constexpr int kThreads = 512;

__global__ void mh_adamw_kernel(const AdamWTensor* __restrict__ table, const int64_t* __restrict__ chunk_start,
                             int64_t count, int64_t total_chunks, float lr, float beta1, float beta2, float eps,
                             float bias_correction1, float bias_correction2_sqrt, float grad_scale,
                             const float* __restrict__ grad_scale_on_device) {
  if (grad_scale_on_device != nullptr) grad_scale *= *grad_scale_on_device;
  for (int64_t chunk = blockIdx.x; chunk < total_chunks; chunk += gridDim.x) {
    int64_t lo = 0, hi = count - 1;  // the tensor whose chunks contain `chunk`
    while (lo < hi) {
      const int64_t mid = (lo + hi + 1) / 2;
      if (chunk_start[mid] <= chunk) lo = mid;
      else hi = mid - 1;
    }
    const AdamWTensor t = table[lo];
    const int64_t begin = (chunk - chunk_start[lo]) * kAdamWChunk;
    const int64_t end = begin + kAdamWChunk < t.numel ? begin + kAdamWChunk : t.numel;
    const float decay = 1.0f - lr * t.weight_decay, step = lr / bias_correction1;
    // One element: updates m and v in place, returns the updated param.
    auto update = [&](float g, float p, float& m, float& v) {
      g *= grad_scale;
      p *= decay;
      m = beta1 * m + (1.0f - beta1) * g;
      v = beta2 * v + (1.0f - beta2) * g * g;
      return p - step * m / (sqrtf(v) / bias_correction2_sqrt + eps);
    };
    auto store_copy = [&](int64_t i, float updated) {
      if (t.copy_dtype == kBF16) static_cast<__nv_bfloat16*>(t.model_copy)[i] = from_f32<__nv_bfloat16>(updated);
      else static_cast<__half*>(t.model_copy)[i] = from_f32<__half>(updated);
    };
    // 16-byte loads and stores when every array allows them (chunks start at multiples of
    // kAdamWChunk elements, so the tensor's alignment holds for the chunk); the tail one by one.
    const bool vec = ((reinterpret_cast<uintptr_t>(t.param) | reinterpret_cast<uintptr_t>(t.grad) |
                       reinterpret_cast<uintptr_t>(t.exp_avg) | reinterpret_cast<uintptr_t>(t.exp_avg_sq)) % 16 == 0) &&
                     reinterpret_cast<uintptr_t>(t.model_copy) % 8 == 0;
    int64_t i = begin + threadIdx.x;
    if (vec) {
      const int64_t vec_end = begin + (end - begin) / 4 * 4;
      for (int64_t j = begin + 4 * threadIdx.x; j < vec_end; j += 4 * blockDim.x) {
        const float4 g = *reinterpret_cast<const float4*>(t.grad + j), p = *reinterpret_cast<const float4*>(t.param + j);
        float4 m = *reinterpret_cast<const float4*>(t.exp_avg + j), v = *reinterpret_cast<const float4*>(t.exp_avg_sq + j);
        float4 out;
        out.x = update(g.x, p.x, m.x, v.x);
        out.y = update(g.y, p.y, m.y, v.y);
        out.z = update(g.z, p.z, m.z, v.z);
        out.w = update(g.w, p.w, m.w, v.w);
        *reinterpret_cast<float4*>(t.exp_avg + j) = m;
        *reinterpret_cast<float4*>(t.exp_avg_sq + j) = v;
        *reinterpret_cast<float4*>(t.param + j) = out;
        if (t.model_copy != nullptr) {
          if (t.copy_dtype == kBF16) {
            __nv_bfloat16* c = static_cast<__nv_bfloat16*>(t.model_copy) + j;
            *reinterpret_cast<__nv_bfloat162*>(c) = __floats2bfloat162_rn(out.x, out.y);
            *reinterpret_cast<__nv_bfloat162*>(c + 2) = __floats2bfloat162_rn(out.z, out.w);
          } else {
            __half* c = static_cast<__half*>(t.model_copy) + j;
            *reinterpret_cast<__half2*>(c) = __floats2half2_rn(out.x, out.y);
            *reinterpret_cast<__half2*>(c + 2) = __floats2half2_rn(out.z, out.w);
          }
        }
      }
      i = vec_end + threadIdx.x;
    }
    for (; i < end; i += blockDim.x) {
      float m = t.exp_avg[i], v = t.exp_avg_sq[i];
      const float updated = update(t.grad[i], t.param[i], m, v);
      t.exp_avg[i] = m;
      t.exp_avg_sq[i] = v;
      t.param[i] = updated;
      // The model's half-precision parameter, in the same pass (no separate master -> model copy).
      if (t.model_copy != nullptr) store_copy(i, updated);
    }
  }
}

}  // namespace

int adamw_multi_tensor(const AdamWTensor* table, const int64_t* chunk_start, int64_t count, int64_t total_chunks,
                       float lr, float beta1, float beta2, float eps, float bias_correction1,
                       float bias_correction2_sqrt, float grad_scale, const float* grad_scale_on_device,
                       void* stream) {
  if (count <= 0 || total_chunks <= 0) return 0;
  const unsigned blocks = static_cast<unsigned>(total_chunks < 132 * 16 ? total_chunks : 132 * 16);
  mh_adamw_kernel<<<blocks, kThreads, 0, as_stream(stream)>>>(table, chunk_start, count, total_chunks, lr, beta1, beta2,
                                                          eps, bias_correction1, bias_correction2_sqrt, grad_scale,
                                                          grad_scale_on_device);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace megahost::sdk::kernels
