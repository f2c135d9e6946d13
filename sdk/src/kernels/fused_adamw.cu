// megahost SDK — multi-tensor AdamW (see fused_kernels.h): every parameter tensor of a step in
// one launch. The work is cut into chunks of kAdamWChunk elements; a block takes chunks in a
// grid-stride loop and finds its tensor by binary search over the chunk prefix sums. The
// gradient scale (clipping x 1/loss scale) is applied on the fly: no separate pass over the grads.
#include "fused_common.cuh"
#include "fused_kernels.h"

namespace megahost::sdk::kernels {

namespace {

constexpr int kThreads = 512;

__global__ void mh_adamw_kernel(const AdamWTensor* __restrict__ table, const int64_t* __restrict__ chunk_start,
                             int64_t count, int64_t total_chunks, float lr, float beta1, float beta2, float eps,
                             float bias_correction1, float bias_correction2_sqrt, float grad_scale) {
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
    for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
      const float g = t.grad[i] * grad_scale;
      const float p = t.param[i] * decay;
      const float m = beta1 * t.exp_avg[i] + (1.0f - beta1) * g;
      const float v = beta2 * t.exp_avg_sq[i] + (1.0f - beta2) * g * g;
      t.exp_avg[i] = m;
      t.exp_avg_sq[i] = v;
      const float updated = p - step * m / (sqrtf(v) / bias_correction2_sqrt + eps);
      t.param[i] = updated;
      // The model's half-precision parameter, in the same pass (no separate master -> model copy).
      if (t.model_copy != nullptr) {
        if (t.copy_dtype == kBF16) static_cast<__nv_bfloat16*>(t.model_copy)[i] = from_f32<__nv_bfloat16>(updated);
        else static_cast<__half*>(t.model_copy)[i] = from_f32<__half>(updated);
      }
    }
  }
}

}  // namespace

int adamw_multi_tensor(const AdamWTensor* table, const int64_t* chunk_start, int64_t count, int64_t total_chunks,
                       float lr, float beta1, float beta2, float eps, float bias_correction1,
                       float bias_correction2_sqrt, float grad_scale, void* stream) {
  if (count <= 0 || total_chunks <= 0) return 0;
  const unsigned blocks = static_cast<unsigned>(total_chunks < 132 * 16 ? total_chunks : 132 * 16);
  mh_adamw_kernel<<<blocks, kThreads, 0, as_stream(stream)>>>(table, chunk_start, count, total_chunks, lr, beta1, beta2,
                                                          eps, bias_correction1, bias_correction2_sqrt, grad_scale);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace megahost::sdk::kernels
