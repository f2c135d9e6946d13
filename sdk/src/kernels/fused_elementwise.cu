// megahost SDK — bias + GeLU, SwiGLU and rotary embedding (see fused_kernels.h). Memory-bound:
// one read and one write per element, float32 math, grid-stride loops.
#include "fused_common.cuh"
#include "fused_kernels.h"

namespace megahost::sdk::kernels {

namespace {

constexpr int kThreads = 256;

unsigned grid_for(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(blocks < 132 * 32 ? (blocks > 0 ? blocks : 1) : 132 * 32);
}

__device__ __forceinline__ float gelu(float x) { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }
__device__ __forceinline__ float gelu_grad(float x) {
  const float cdf = 0.5f * (1.0f + erff(x * 0.70710678118654752f));
  const float pdf = 0.39894228040143268f * __expf(-0.5f * x * x);
  return cdf + x * pdf;
}
__device__ __forceinline__ float sigmoid(float x) { return 1.0f / (1.0f + __expf(-x)); }

template <typename T>
__global__ void mh_bias_gelu_forward_kernel(const T* __restrict__ x, const T* __restrict__ bias, T* __restrict__ y,
                                         int64_t total, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float v = to_f32(x[i]);
    if (bias != nullptr) v += to_f32(bias[i % n]);
    y[i] = from_f32<T>(gelu(v));
  }
}

template <typename T>
__global__ void mh_bias_gelu_backward_kernel(const T* __restrict__ dy, const T* __restrict__ x,
                                          const T* __restrict__ bias, T* __restrict__ dx, int64_t total, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float v = to_f32(x[i]);
    if (bias != nullptr) v += to_f32(bias[i % n]);
    dx[i] = from_f32<T>(to_f32(dy[i]) * gelu_grad(v));
  }
}

template <typename T>
__global__ void mh_swiglu_forward_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t total, int64_t f) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / f, c = i - r * f;
    const float gate = to_f32(x[r * 2 * f + c]), up = to_f32(x[r * 2 * f + f + c]);
    y[i] = from_f32<T>(gate * sigmoid(gate) * up);
  }
}

template <typename T>
__global__ void mh_swiglu_backward_kernel(const T* __restrict__ dy, const T* __restrict__ x, T* __restrict__ dx,
                                       int64_t total, int64_t f) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / f, c = i - r * f;
    const float gate = to_f32(x[r * 2 * f + c]), up = to_f32(x[r * 2 * f + f + c]), d = to_f32(dy[i]);
    const float s = sigmoid(gate);
    dx[r * 2 * f + c] = from_f32<T>(d * up * s * (1.0f + gate * (1.0f - s)));  // d silu = s (1 + g (1 - s))
    dx[r * 2 * f + f + c] = from_f32<T>(d * gate * s);
  }
}

// One thread per output element; the rotating pair (i, i + rot/2) is read by both of its threads.
template <typename T>
__global__ void mh_rotary_kernel(const T* __restrict__ t, int64_t stride_s, int64_t stride_b, int64_t stride_n,
                              const float* __restrict__ angles, T* __restrict__ out, int64_t total, int64_t b,
                              int64_t n, int64_t d, int64_t rot, float sign) {
  const int64_t half = rot / 2;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t rest = i;
    const int64_t e = rest % d;
    rest /= d;
    const int64_t hi = rest % n;
    rest /= n;
    const int64_t bi = rest % b;
    const int64_t si = rest / b;
    const T* row = t + si * stride_s + bi * stride_b + hi * stride_n;
    if (e >= rot) {
      out[i] = row[e];
      continue;
    }
    const int64_t j = e < half ? e : e - half;  // angle index (the table repeats in both halves)
    float sn, cs;
    sincosf(angles[si * rot + j], &sn, &cs);
    sn *= sign;
    const float self = to_f32(row[e]);
    // first half: x1 cos - x2 sin; second half: x2 cos + x1 sin
    const float other = e < half ? -to_f32(row[e + half]) : to_f32(row[e - half]);
    out[i] = from_f32<T>(self * cs + other * sn);
  }
}

}  // namespace

int bias_gelu_forward(int dtype, const void* x, const void* bias, void* y, int64_t rows, int64_t n, void* stream) {
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    mh_bias_gelu_forward_kernel<T><<<grid_for(rows * n), kThreads, 0, as_stream(stream)>>>(
        static_cast<const T*>(x), static_cast<const T*>(bias), static_cast<T*>(y), rows * n, n);
  });
}

int bias_gelu_backward(int dtype, const void* dy, const void* x, const void* bias, void* dx, int64_t rows, int64_t n,
                       void* stream) {
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    mh_bias_gelu_backward_kernel<T><<<grid_for(rows * n), kThreads, 0, as_stream(stream)>>>(
        static_cast<const T*>(dy), static_cast<const T*>(x), static_cast<const T*>(bias), static_cast<T*>(dx),
        rows * n, n);
  });
}

int swiglu_forward(int dtype, const void* x, void* y, int64_t rows, int64_t f, void* stream) {
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    mh_swiglu_forward_kernel<T><<<grid_for(rows * f), kThreads, 0, as_stream(stream)>>>(
        static_cast<const T*>(x), static_cast<T*>(y), rows * f, f);
  });
}

int swiglu_backward(int dtype, const void* dy, const void* x, void* dx, int64_t rows, int64_t f, void* stream) {
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    mh_swiglu_backward_kernel<T><<<grid_for(rows * f), kThreads, 0, as_stream(stream)>>>(
        static_cast<const T*>(dy), static_cast<const T*>(x), static_cast<T*>(dx), rows * f, f);
  });
}

int rotary(int dtype, const void* t, int64_t stride_s, int64_t stride_b, int64_t stride_n, const float* angles,
           void* out, int64_t s, int64_t b, int64_t n, int64_t d, int64_t rot, float sign, void* stream) {
  const int64_t total = s * b * n * d;
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    mh_rotary_kernel<T><<<grid_for(total), kThreads, 0, as_stream(stream)>>>(
        static_cast<const T*>(t), stride_s, stride_b, stride_n, angles, static_cast<T*>(out), total, b, n, d, rot,
        sign);
  });
}

}  // namespace megahost::sdk::kernels
