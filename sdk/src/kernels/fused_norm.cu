// megahost SDK — LayerNorm / RMSNorm with the residual add folded in (see fused_kernels.h).
// One block per row in the forward (the row is kept in shared memory as float32, so the
// variance is an exact second pass); the backward walks rows in a grid-stride loop so each block
// sums its columns' weight/bias gradients privately (no atomics), the caller adds the blocks up.
#include "fused_common.cuh"
#include "fused_kernels.h"

namespace megahost::sdk::kernels {

namespace {

constexpr int kThreads = 256;

template <typename T, bool kRms>
__global__ void mh_norm_forward_kernel(const T* __restrict__ x, const T* __restrict__ residual,
                                    const T* __restrict__ weight, const T* __restrict__ bias, T* __restrict__ y,
                                    T* __restrict__ sum_out, float* __restrict__ mean_out,
                                    float* __restrict__ rstd_out, int64_t h, float eps) {
  extern __shared__ float row[];  // [h] float32, then 32 floats of reduction scratch
  float* scratch = row + h;
  const int64_t r = blockIdx.x;
  const T* xr = x + r * h;
  float local = 0.0f;
  for (int64_t c = threadIdx.x; c < h; c += blockDim.x) {
    float v = to_f32(xr[c]);
    if (residual != nullptr) {
      v += to_f32(residual[r * h + c]);
      const T rounded = from_f32<T>(v);
      sum_out[r * h + c] = rounded;
      v = to_f32(rounded);  // normalise exactly what the residual stream carries on
    }
    row[c] = v;
    local += v;
  }
  const float mean = kRms ? 0.0f : block_sum(local, scratch) / static_cast<float>(h);
  float sq = 0.0f;
  for (int64_t c = threadIdx.x; c < h; c += blockDim.x) {
    const float d = row[c] - mean;
    sq += d * d;
  }
  const float rstd = rsqrtf(block_sum(sq, scratch) / static_cast<float>(h) + eps);
  for (int64_t c = threadIdx.x; c < h; c += blockDim.x) {
    float v = (row[c] - mean) * rstd * to_f32(weight[c]);
    if (!kRms && bias != nullptr) v += to_f32(bias[c]);
    y[r * h + c] = from_f32<T>(v);
  }
  if (threadIdx.x == 0) {
    if (!kRms) mean_out[r] = mean;
    rstd_out[r] = rstd;
  }
}

template <typename T, bool kRms>
__global__ void mh_norm_backward_kernel(const T* __restrict__ dy, const T* __restrict__ dsum, const T* __restrict__ sum,
                                     const T* __restrict__ weight, const float* __restrict__ mean,
                                     const float* __restrict__ rstd, T* __restrict__ dx,
                                     float* __restrict__ dweight_partial, float* __restrict__ dbias_partial,
                                     int64_t rows, int64_t h) {
  extern __shared__ float smem[];  // dweight [h], dbias [h], 32 floats scratch
  float* dw = smem;
  float* db = smem + h;
  float* scratch = smem + 2 * h;
  for (int64_t c = threadIdx.x; c < h; c += blockDim.x) dw[c] = db[c] = 0.0f;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float mu = kRms ? 0.0f : mean[r], rs = rstd[r];
    // dx = rs * (g - mean(g) - xhat * mean(g * xhat)), g = dy * weight (RMSNorm: no mean(g) term)
    float sum_g = 0.0f, sum_gx = 0.0f;
    for (int64_t c = threadIdx.x; c < h; c += blockDim.x) {
      const float d = to_f32(dy[r * h + c]);
      const float xhat = (to_f32(sum[r * h + c]) - mu) * rs;
      const float g = d * to_f32(weight[c]);
      sum_g += g;
      sum_gx += g * xhat;
      dw[c] += d * xhat;  // each column belongs to one thread: no race
      db[c] += d;
    }
    const float mean_g = kRms ? 0.0f : block_sum(sum_g, scratch) / static_cast<float>(h);
    const float mean_gx = block_sum(sum_gx, scratch) / static_cast<float>(h);
    for (int64_t c = threadIdx.x; c < h; c += blockDim.x) {
      const float xhat = (to_f32(sum[r * h + c]) - mu) * rs;
      const float g = to_f32(dy[r * h + c]) * to_f32(weight[c]);
      float v = rs * (g - mean_g - xhat * mean_gx);
      if (dsum != nullptr) v += to_f32(dsum[r * h + c]);
      dx[r * h + c] = from_f32<T>(v);
    }
  }
  for (int64_t c = threadIdx.x; c < h; c += blockDim.x) {
    dweight_partial[blockIdx.x * h + c] = dw[c];
    if (dbias_partial != nullptr) dbias_partial[blockIdx.x * h + c] = db[c];
  }
}

}  // namespace

int norm_forward(int dtype, bool rms, const void* x, const void* residual, const void* weight, const void* bias,
                 void* y, void* sum_out, float* mean, float* rstd, int64_t rows, int64_t h, float eps, void* stream) {
  const size_t smem = (static_cast<size_t>(h) + 32) * sizeof(float);
  if (smem > 48 * 1024) return static_cast<int>(cudaErrorInvalidValue);  // h > 12,256: not needed yet
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    auto* k = rms ? mh_norm_forward_kernel<T, true> : mh_norm_forward_kernel<T, false>;
    k<<<static_cast<unsigned>(rows), kThreads, smem, as_stream(stream)>>>(
        static_cast<const T*>(x), static_cast<const T*>(residual), static_cast<const T*>(weight),
        static_cast<const T*>(bias), static_cast<T*>(y), static_cast<T*>(sum_out), mean, rstd, h, eps);
  });
}

int64_t norm_backward_blocks(int64_t rows) { return rows < 1024 ? rows : 1024; }

int norm_backward(int dtype, bool rms, const void* dy, const void* dsum, const void* sum, const void* weight,
                  const float* mean, const float* rstd, void* dx, float* dweight_partial, float* dbias_partial,
                  int64_t rows, int64_t h, void* stream) {
  const size_t smem = (2 * static_cast<size_t>(h) + 32) * sizeof(float);
  if (smem > 48 * 1024) return static_cast<int>(cudaErrorInvalidValue);
  const unsigned blocks = static_cast<unsigned>(norm_backward_blocks(rows));
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    auto* k = rms ? mh_norm_backward_kernel<T, true> : mh_norm_backward_kernel<T, false>;
    k<<<blocks, kThreads, smem, as_stream(stream)>>>(
        static_cast<const T*>(dy), static_cast<const T*>(dsum), static_cast<const T*>(sum),
        static_cast<const T*>(weight), mean, rstd, static_cast<T*>(dx), dweight_partial, dbias_partial, rows, h);
  });
}

}  // namespace megahost::sdk::kernels
