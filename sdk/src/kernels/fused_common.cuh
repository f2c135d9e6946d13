// megahost SDK — shared device helpers of the fused kernels: dtype conversion, block reductions.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <initializer_list>
#include <type_traits>

namespace megahost::sdk::kernels {

__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_f32(__half x) { return __half2float(x); }

template <typename T>
__device__ __forceinline__ T from_f32(float x);
template <>
__device__ __forceinline__ float from_f32<float>(float x) { return x; }
template <>
__device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float x) { return __float2bfloat16(x); }
template <>
__device__ __forceinline__ __half from_f32<__half>(float x) { return __float2half(x); }

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over the block; every thread gets the result. scratch: >= 32 floats of shared memory.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
  v = warp_sum(v);
  __syncthreads();  // scratch may still be read by a previous reduction
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : 0.0f;
  return warp_sum(v);
}

// Two sums over the block in one pass (one pair of barriers instead of two). scratch: >= 64 floats.
__device__ __forceinline__ float2 block_sum2(float a, float b, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
  a = warp_sum(a);
  b = warp_sum(b);
  __syncthreads();  // scratch may still be read by a previous reduction
  if (lane == 0) scratch[warp] = a, scratch[32 + warp] = b;
  __syncthreads();
  a = lane < warps ? scratch[lane] : 0.0f;
  b = lane < warps ? scratch[32 + lane] : 0.0f;
  return make_float2(warp_sum(a), warp_sum(b));
}

__device__ __forceinline__ float block_max(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : -INFINITY;
  return warp_max(v);
}

// 16 bytes of T: the unit of vectorised loads and stores (8 bf16/fp16 or 4 float32).
template <typename T>
struct alignas(16) Vec {
  static constexpr int kSize = 16 / sizeof(T);
  T v[kSize];
};

// A vector's elements as float32. bf16 is float32's upper half, so a pair of bf16 in one 32-bit
// word widens with a shift and a mask (the cuda_bf16.h conversion is an asm block per element
// that first moves each bf16 into a 16-bit register of its own).
template <typename T>
__device__ __forceinline__ void unpack(const Vec<T>& v, float (&f)[Vec<T>::kSize]) {
#pragma unroll
  for (int k = 0; k < Vec<T>::kSize; ++k) f[k] = to_f32(v.v[k]);
}
template <>
__device__ __forceinline__ void unpack<__nv_bfloat16>(const Vec<__nv_bfloat16>& v, float (&f)[8]) {
  const uint4 u = *reinterpret_cast<const uint4*>(&v);
  const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    f[2 * i] = __uint_as_float(w[i] << 16);
    f[2 * i + 1] = __uint_as_float(w[i] & 0xFFFF0000u);
  }
}

template <typename T>
__device__ __forceinline__ Vec<T> load_vec(const T* p) {
  return *reinterpret_cast<const Vec<T>*>(p);
}
template <typename T>
__device__ __forceinline__ void store_vec(T* p, const Vec<T>& x) {
  *reinterpret_cast<Vec<T>*>(p) = x;
}

// Two sums over the block with one barrier: each warp's sums go to scratch[parity] and every
// thread adds the warps' values itself (in warp order: the same result in every thread). A caller
// reducing once per loop step flips `parity` each step, so a fast warp writing the next step's
// sums never overwrites values another warp is still reading. scratch: >= 2 * 64 floats, 16-byte
// aligned.
__device__ __forceinline__ float2 block_sum2_one_barrier(float a, float b, float* scratch, int parity) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
  a = warp_sum(a);
  b = warp_sum(b);
  // Each warp's (a, b) pair side by side, so a thread reads two warps' pairs per 16-byte load
  // (the norm backward is issue-bound: 8 warps took 16 scalar shared loads per row before).
  float2* slot = reinterpret_cast<float2*>(scratch + parity * 64);
  if (lane == 0) slot[warp] = make_float2(a, b);
  __syncthreads();
  const float4* two = reinterpret_cast<const float4*>(slot);
  float ta = 0.0f, tb = 0.0f;
  int w = 0;
#pragma unroll 4
  for (; w + 1 < warps; w += 2) {
    const float4 p = two[w / 2];
    ta += p.x, tb += p.y;
    ta += p.z, tb += p.w;
  }
  if (w < warps) ta += slot[w].x, tb += slot[w].y;
  return make_float2(ta, tb);
}

// The end of a kernel whose threads each own S strips of V columns (col[s], the strip's first
// column; past n: none) and summed them over its rows: the block's partial row [n] of out.
// 16-byte stores where the row allows them: a thread's V scalar stores to V consecutive floats
// each touched a separate 32-byte sector per thread of the warp (Nsight Compute counted 14% of
// the norm backward's sectors as excess).
template <int S, int V>
__device__ __forceinline__ void store_partial_row(float* out, int64_t n, const int64_t (&col)[S],
                                                  const float (&sum)[S][V]) {
  float* row = out + blockIdx.x * n;
  const bool wide = V % 4 == 0 && n % 4 == 0 && reinterpret_cast<uintptr_t>(out) % 16 == 0;
#pragma unroll
  for (int s = 0; s < S; ++s) {
    if (col[s] >= n) continue;
    if (wide && col[s] + V <= n) {
#pragma unroll
      for (int k = 0; k < V; k += 4)
        *reinterpret_cast<float4*>(row + col[s] + k) = make_float4(sum[s][k], sum[s][k + 1], sum[s][k + 2], sum[s][k + 3]);
    } else {
#pragma unroll
      for (int k = 0; k < V; ++k)
        if (col[s] + k < n) row[col[s] + k] = sum[s][k];
    }
  }
}

// Rows of n elements can be walked in Vec<T> steps from every pointer.
template <typename T>
inline bool vec_ok(int64_t n, std::initializer_list<const void*> ptrs) {
  if (n % Vec<T>::kSize != 0) return false;
  for (const void* p : ptrs)
    if (p != nullptr && reinterpret_cast<uintptr_t>(p) % 16 != 0) return false;
  return true;
}

// Run `launch<T>()` for the dtype code of fused_kernels.h.
// `launch` may return a cudaError_t (a refusal before launching) or nothing.
template <typename F, typename T>
cudaError_t launch_as(F& launch, T tag) {
  if constexpr (std::is_same_v<decltype(launch(tag)), void>) {
    launch(tag);
    return cudaSuccess;
  } else {
    return launch(tag);
  }
}

template <typename F>
int dispatch_dtype(int dtype, F&& launch) {
  cudaError_t refused = cudaSuccess;
  switch (dtype) {
    case 0: refused = launch_as(launch, float{}); break;
    case 1: refused = launch_as(launch, __nv_bfloat16{}); break;
    case 2: refused = launch_as(launch, __half{}); break;
    default: return static_cast<int>(cudaErrorInvalidValue);
  }
  if (refused != cudaSuccess) return static_cast<int>(refused);
  return static_cast<int>(cudaGetLastError());
}

inline cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }

}  // namespace megahost::sdk::kernels
