// megahost SDK — bias + GeLU, SwiGLU and rotary embedding (see fused_kernels.h). Memory-bound:
// one read and one write per element, float32 math, grid-stride loops.
#include <cstdlib>
#include <cstring>

#include "fused_common.cuh"
#include "fused_kernels.h"

namespace megahost::sdk::kernels {

namespace {

constexpr int kThreads = 256;

unsigned grid_for(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(blocks < 132 * 32 ? (blocks > 0 ? blocks : 1) : 132 * 32);
}

// Exact GeLU (erf), or with Tanh its tanh approximation (Megatron's bias_gelu, GPT-2's gelu_new):
// 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
template <bool Tanh>
__device__ __forceinline__ float gelu(float x) {
  if (Tanh) return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
  return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
}
// The hardware tanh (one MUFU instruction, relative error ~2^-11): for 16-bit outputs, whose
// rounding (2^-8 for bf16) dwarfs it. tanhf costs ~20 instructions: under the H200's power cap
// (~1.45 GHz) the bias-GeLU backward was bound by instruction issue, not by memory.
__device__ __forceinline__ float tanh_fast(float x) {
  float y;
  asm("tanh.approx.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

template <bool Tanh, bool Fast = false>
__device__ __forceinline__ float gelu_grad(float x) {
  if (Tanh) {
    const float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
    const float t = Fast ? tanh_fast(u) : tanhf(u);
    return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * 0.7978845608028654f * (1.0f + 0.134145f * x * x);
  }
  const float cdf = 0.5f * (1.0f + erff(x * 0.70710678118654752f));
  const float pdf = 0.39894228040143268f * __expf(-0.5f * x * x);
  return cdf + x * pdf;
}
// Fast: 1 / (1 + e^-x) by the approximate division (MUFU reciprocal, ~2 ulp) instead of the
// IEEE one (~10 instructions with its special cases), for 16-bit outputs as tanh_fast. Past
// x ~ -88 the denominator is inf and the result 0, as the exact sigmoid's rounds to.
template <bool Fast = false>
__device__ __forceinline__ float sigmoid(float x) {
  return Fast ? __fdividef(1.0f, 1.0f + __expf(-x)) : 1.0f / (1.0f + __expf(-x));
}

// Rows in a grid-stride loop, each row in Vec<T> steps: no index division, 16-byte accesses.
template <typename T, bool Tanh>
__global__ void mh_bias_gelu_forward_kernel(const T* __restrict__ x, const T* __restrict__ bias, T* __restrict__ y,
                                            int64_t rows, int64_t n) {
  constexpr int V = Vec<T>::kSize;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x)
    for (int64_t c = threadIdx.x * V; c < n; c += blockDim.x * V) {
      const Vec<T> xv = load_vec(x + r * n + c);
      Vec<T> out;
      if (bias != nullptr) {
        const Vec<T> bv = load_vec(bias + c);
#pragma unroll
        for (int k = 0; k < V; ++k) out.v[k] = from_f32<T>(gelu<Tanh>(to_f32(xv.v[k]) + to_f32(bv.v[k])));
      } else {
#pragma unroll
        for (int k = 0; k < V; ++k) out.v[k] = from_f32<T>(gelu<Tanh>(to_f32(xv.v[k])));
      }
      store_vec(y + r * n + c, out);
    }
}

// dx = dy * gelu'(x + bias); with dbias_partial, each block also sums its rows' dx per column
// (float32, before rounding) into dbias_partial[block, n] (shared memory, one owner per column).
template <typename T, bool Tanh>
__global__ void mh_bias_gelu_backward_kernel(const T* __restrict__ dy, const T* __restrict__ x,
                                             const T* __restrict__ bias, T* __restrict__ dx,
                                             float* __restrict__ dbias_partial, int64_t rows, int64_t n) {
  constexpr int V = Vec<T>::kSize;
  // Column sums at slot (strip * V + k) * blockDim + tid: conflict-free shared-memory banks.
  extern __shared__ float col_sum[];  // [strips * V * blockDim] when dbias_partial
  const int64_t strips = (n + static_cast<int64_t>(blockDim.x) * V - 1) / (static_cast<int64_t>(blockDim.x) * V);
  if (dbias_partial != nullptr)
    for (int64_t i = threadIdx.x; i < strips * V * blockDim.x; i += blockDim.x) col_sum[i] = 0.0f;
  __syncthreads();
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x)
    for (int64_t c = threadIdx.x * V, strip = 0; c < n; c += blockDim.x * V, ++strip) {
      const Vec<T> xv = load_vec(x + r * n + c), dv = load_vec(dy + r * n + c);
      Vec<T> bv;
      if (bias != nullptr) bv = load_vec(bias + c);
      Vec<T> out;
#pragma unroll
      for (int k = 0; k < V; ++k) {
        const float pre = to_f32(xv.v[k]) + (bias != nullptr ? to_f32(bv.v[k]) : 0.0f);
        const float g = to_f32(dv.v[k]) * gelu_grad<Tanh, !std::is_same_v<T, float>>(pre);
        out.v[k] = from_f32<T>(g);
        if (dbias_partial != nullptr) col_sum[(strip * V + k) * blockDim.x + threadIdx.x] += g;  // own slot
      }
      store_vec(dx + r * n + c, out);
    }
  if (dbias_partial == nullptr) return;
  for (int64_t c = threadIdx.x * V, strip = 0; c < n; c += blockDim.x * V, ++strip)
#pragma unroll
    for (int k = 0; k < V; ++k)
      dbias_partial[blockIdx.x * n + c + k] = col_sum[(strip * V + k) * blockDim.x + threadIdx.x];
}

// The same with the block's column sums in registers: a thread always owns the same S * V
// columns (its strips of every row), so its sums never leave it (no shared-memory
// read-modify-write per element). S = n / (blockDim * V), 1 to 4.
template <typename T, bool Tanh, int S, bool kBias>
__global__ void __launch_bounds__(256, 2) mh_bias_gelu_backward_reg_kernel(const T* __restrict__ dy, const T* __restrict__ x,
                                                 const T* __restrict__ bias, T* __restrict__ dx,
                                                 float* __restrict__ dbias_partial, int64_t rows, int64_t n) {
  constexpr int V = Vec<T>::kSize;
  constexpr bool kFast = !std::is_same_v<T, float>;
  int64_t col[S];
  float b[S][V], sum[S][V];
#pragma unroll
  for (int s = 0; s < S; ++s) {
    col[s] = (static_cast<int64_t>(s) * blockDim.x + threadIdx.x) * V;
    Vec<T> bv;
    if (kBias && col[s] < n) bv = load_vec(bias + col[s]);
#pragma unroll
    for (int k = 0; k < V; ++k) {
      b[s][k] = kBias && col[s] < n ? to_f32(bv.v[k]) : 0.0f;
      sum[s][k] = 0.0f;
    }
  }
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    Vec<T> xv[S], dv[S];  // every load of the row in flight before any math
#pragma unroll
    for (int s = 0; s < S; ++s)
      if (col[s] < n) xv[s] = load_vec(x + r * n + col[s]), dv[s] = load_vec(dy + r * n + col[s]);
#pragma unroll
    for (int s = 0; s < S; ++s) {
      if (col[s] >= n) continue;
      Vec<T> out;
#pragma unroll
      for (int k = 0; k < V; ++k) {
        const float g = to_f32(dv[s].v[k]) * gelu_grad<Tanh, kFast>(to_f32(xv[s].v[k]) + b[s][k]);
        out.v[k] = from_f32<T>(g);
        sum[s][k] += g;
      }
      store_vec(dx + r * n + col[s], out);
    }
  }
  if (dbias_partial != nullptr) store_partial_row(dbias_partial, n, col, sum);
}

template <typename T, bool Fast>
__global__ void mh_swiglu_forward_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t rows, int64_t f) {
  constexpr int V = Vec<T>::kSize;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x)
    for (int64_t c = threadIdx.x * V; c < f; c += blockDim.x * V) {
      const Vec<T> gv = load_vec(x + r * 2 * f + c), uv = load_vec(x + r * 2 * f + f + c);
      Vec<T> out;
#pragma unroll
      for (int k = 0; k < V; ++k) {
        const float gate = to_f32(gv.v[k]);
        out.v[k] = from_f32<T>(gate * sigmoid<Fast>(gate) * to_f32(uv.v[k]));
      }
      store_vec(y + r * f + c, out);
    }
}

template <typename T, bool Fast>
__global__ void mh_swiglu_backward_kernel(const T* __restrict__ dy, const T* __restrict__ x, T* __restrict__ dx,
                                          int64_t rows, int64_t f) {
  constexpr int V = Vec<T>::kSize;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x)
    for (int64_t c = threadIdx.x * V; c < f; c += blockDim.x * V) {
      const Vec<T> gv = load_vec(x + r * 2 * f + c), uv = load_vec(x + r * 2 * f + f + c);
      const Vec<T> dv = load_vec(dy + r * f + c);
      Vec<T> dgate, dup;
#pragma unroll
      for (int k = 0; k < V; ++k) {
        const float gate = to_f32(gv.v[k]), up = to_f32(uv.v[k]), d = to_f32(dv.v[k]), s = sigmoid<Fast>(gate);
        dgate.v[k] = from_f32<T>(d * up * s * (1.0f + gate * (1.0f - s)));  // d silu = s (1 + g (1 - s))
        dup.v[k] = from_f32<T>(d * gate * s);
      }
      store_vec(dx + r * 2 * f + c, dgate);
      store_vec(dx + r * 2 * f + f + c, dup);
    }
}

// The general path (any alignment): one thread per output element; the rotating pair
// (i, i + rot/2) is read by both of its threads.
template <typename T>
__global__ void mh_rotary_kernel(const T* __restrict__ t, RotaryShape a, const float* __restrict__ angles,
                                 T* __restrict__ out, int64_t total, float sign) {
  const int64_t half = a.rot / 2, n = a.n1 * a.n2;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t rest = i;
    const int64_t e = rest % a.d;
    rest /= a.d;
    const int64_t hi = rest % n;
    rest /= n;
    const int64_t bi = rest % a.b;
    const int64_t si = rest / a.b;
    const T* row = t + si * a.stride_s + bi * a.stride_b + (hi / a.n2) * a.stride_n1 + (hi % a.n2) * a.stride_n2;
    if (e >= a.rot) {
      out[i] = row[e];
      continue;
    }
    const int64_t j = e < half ? e : e - half;  // angle index (the table repeats in both halves)
    float sn, cs;
    sincosf(angles[si * a.rot + j], &sn, &cs);
    sn *= sign;
    const float self = to_f32(row[e]);
    // first half: x1 cos - x2 sin; second half: x2 cos + x1 sin
    const float other = e < half ? -to_f32(row[e + half]) : to_f32(row[e - half]);
    out[i] = from_f32<T>(self * cs + other * sn);
  }
}

// The vectorised path: one block per sequence position. Its rot/2 angles' cos and sin are taken
// once (sincosf: positions reach thousands of radians, past the fast intrinsics' range) into
// shared memory; then each thread rotates 16-byte vectors of a row's two halves together, and
// copies the part past rot. Rows are (b, n1, n2) at any strides, so q can be read straight from
// the fused q/k/v projection's grouped layout [s, b, ng, np/ng, hn] without a copy first.
// (One thread per element with a sincosf each ran GPT's rotary at ~0.7 TB/s: 17.8 ms/iter for a
// Llama-style 1.3B on the H200.)
template <typename T>
__global__ void __launch_bounds__(kThreads) mh_rotary_rows_kernel(const T* __restrict__ t, RotaryShape a,
                                                                  const float* __restrict__ angles,
                                                                  T* __restrict__ out, float sign) {
  constexpr int V = Vec<T>::kSize;
  extern __shared__ float table[];  // cos [rot/2], then sin [rot/2]
  const int half = static_cast<int>(a.rot / 2), d = static_cast<int>(a.d);
  const int64_t si = blockIdx.x;
  for (int j = threadIdx.x; j < half; j += blockDim.x) {
    float sn, cs;
    sincosf(angles[si * a.rot + j], &sn, &cs);
    table[j] = cs;
    table[half + j] = sign * sn;
  }
  __syncthreads();
  const int pairs = half / V, tail = (d - 2 * half) / V;  // vectors per row: rotated pairs, passed through
  const int per_row = pairs + tail;
  const int n2 = static_cast<int>(a.n2), n = static_cast<int>(a.n1) * n2;
  const int rows = static_cast<int>(a.b) * n;
  const T* src_s = t + si * a.stride_s;
  T* dst_s = out + si * rows * static_cast<int64_t>(d);
  for (int item = threadIdx.x; item < rows * per_row; item += blockDim.x) {
    const int row = item / per_row, v = item - row * per_row;
    const int bi = row / n, hi = row - bi * n;
    const T* src = src_s + bi * a.stride_b + (hi / n2) * a.stride_n1 + (hi % n2) * a.stride_n2;
    T* dst = dst_s + static_cast<int64_t>(row) * d;
    if (v >= pairs) {  // past rot: copied
      const int c = 2 * half + (v - pairs) * V;
      store_vec(dst + c, load_vec(src + c));
      continue;
    }
    const int c = v * V;
    float x1[V], x2[V];
    unpack(load_vec(src + c), x1);
    unpack(load_vec(src + half + c), x2);
    Vec<T> o1, o2;
#pragma unroll
    for (int k = 0; k < V; ++k) {
      const float cs = table[c + k], sn = table[half + c + k];
      o1.v[k] = from_f32<T>(x1[k] * cs - x2[k] * sn);
      o2.v[k] = from_f32<T>(x2[k] * cs + x1[k] * sn);
    }
    store_vec(dst + c, o1);
    store_vec(dst + half + c, o2);
  }
}

}  // namespace

unsigned row_blocks(int64_t rows, int64_t cap) { return static_cast<unsigned>(rows < cap ? (rows > 0 ? rows : 1) : cap); }

// Rows per launch: every SM busy with several blocks. The backward with bias sums writes one
// float32 row of partial sums per block ([blocks, n], summed once) and takes the blocks that fit
// on the device at once (bias_sum_blocks); 264 blocks left the SMs starved (1.7 TB/s on the
// H200), 1056 ran as 1.3 waves of the 6 blocks per SM its 32 KB of shared memory allow at n = 8192.
constexpr int64_t kRowBlocks = 132 * 8, kBiasSumBlocks = 132 * 8;

int bias_gelu_forward(int dtype, bool tanh, const void* x, const void* bias, void* y, int64_t rows, int64_t n,
                      void* stream) {
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    if (!vec_ok<T>(n, {x, bias, y})) return cudaErrorInvalidValue;
    auto* kernel = tanh ? mh_bias_gelu_forward_kernel<T, true> : mh_bias_gelu_forward_kernel<T, false>;
    kernel<<<row_blocks(rows, kRowBlocks), kThreads, 0, as_stream(stream)>>>(
        static_cast<const T*>(x), static_cast<const T*>(bias), static_cast<T*>(y), rows, n);
    return cudaSuccess;
  });
}

namespace {

// Shared memory of the backward's column sums at width n (0: none kept).
template <typename T>
size_t bias_sum_smem(int64_t n) {
  const int64_t strip = static_cast<int64_t>(kThreads) * Vec<T>::kSize;
  return static_cast<size_t>((n + strip - 1) / strip * strip) * sizeof(float);
}

template <typename T>
using GeluBackwardKernel = void (*)(const T*, const T*, const T*, T*, float*, int64_t, int64_t);

// The register kernel for rows of n (strips of kThreads * V per thread, at most 4), else nullptr.
template <typename T, bool Tanh, bool kBias>
GeluBackwardKernel<T> gelu_backward_reg_kernel(int64_t n) {
  const int64_t strip = static_cast<int64_t>(kThreads) * Vec<T>::kSize, strips = (n + strip - 1) / strip;
  if (strips == 1) return mh_bias_gelu_backward_reg_kernel<T, Tanh, 1, kBias>;
  if (strips == 2) return mh_bias_gelu_backward_reg_kernel<T, Tanh, 2, kBias>;
  if (strips <= 4) return mh_bias_gelu_backward_reg_kernel<T, Tanh, 4, kBias>;
  return nullptr;
}

// The kernel bias_gelu_backward runs with column sums (and whether x gets a bias), and its
// shared memory.
template <typename T>
GeluBackwardKernel<T> gelu_backward_kernel(bool tanh, bool bias, int64_t n, size_t* smem) {
  GeluBackwardKernel<T> reg =
      tanh ? (bias ? gelu_backward_reg_kernel<T, true, true>(n) : gelu_backward_reg_kernel<T, true, false>(n))
           : (bias ? gelu_backward_reg_kernel<T, false, true>(n) : gelu_backward_reg_kernel<T, false, false>(n));
  *smem = reg != nullptr ? 0 : bias_sum_smem<T>(n);
  if (reg != nullptr) return reg;
  return tanh ? mh_bias_gelu_backward_kernel<T, true> : mh_bias_gelu_backward_kernel<T, false>;
}

// Blocks of the backward with column sums resident at once (one wave: no idle SMs at the end, as
// many partial rows as needed and no more); kBiasSumBlocks if the device cannot say.
template <typename T>
int64_t bias_sum_blocks(bool tanh, bool bias, int64_t n) {
  size_t smem = 0;
  auto* kernel = gelu_backward_kernel<T>(tanh, bias, n, &smem);
  int per_sm = 0, device = 0, sms = 0;
  if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, smem) != cudaSuccess ||
      cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess || per_sm * sms <= 0) {
    cudaGetLastError();
    return kBiasSumBlocks;
  }
  return static_cast<int64_t>(per_sm) * sms;
}

}  // namespace

int64_t bias_gelu_backward_blocks(int dtype, bool tanh, bool bias, int64_t rows, int64_t n) {
  int64_t cap = kBiasSumBlocks;
  if (dtype == kF32) cap = bias_sum_blocks<float>(tanh, bias, n);
  else if (dtype == kBF16) cap = bias_sum_blocks<__nv_bfloat16>(tanh, bias, n);
  else if (dtype == kF16) cap = bias_sum_blocks<__half>(tanh, bias, n);
  return row_blocks(rows, cap);
}

int bias_gelu_backward(int dtype, bool tanh, const void* dy, const void* x, const void* bias, void* dx,
                       float* dbias_partial, int64_t partial_blocks, int64_t rows, int64_t n, void* stream) {
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    if (!vec_ok<T>(n, {dy, x, bias, dx})) return cudaErrorInvalidValue;
    size_t smem = 0;
    auto* kernel = gelu_backward_kernel<T>(tanh, bias != nullptr, n, &smem);
    if (dbias_partial == nullptr) smem = 0;  // the shared-memory kernel keeps no sums then
    if (smem > 48 * 1024) return cudaErrorInvalidValue;  // n > ~12,288: the caller sums dx itself
    const unsigned blocks =
        dbias_partial != nullptr ? static_cast<unsigned>(partial_blocks) : row_blocks(rows, kRowBlocks);
    kernel<<<blocks, kThreads, smem, as_stream(stream)>>>(static_cast<const T*>(dy), static_cast<const T*>(x),
                                                         static_cast<const T*>(bias), static_cast<T*>(dx),
                                                         dbias_partial, rows, n);
    return cudaSuccess;
  });
}

bool elementwise_vectorizable(int dtype, int64_t n, std::initializer_list<const void*> ptrs) {
  switch (dtype) {
    case 0: return vec_ok<float>(n, ptrs);
    case 1: return vec_ok<__nv_bfloat16>(n, ptrs);
    case 2: return vec_ok<__half>(n, ptrs);
    default: return false;
  }
}

namespace {
// The approximate division for 16-bit types (MEGAHOST_SWIGLU=exact: the IEEE one, for the A/B of
// docs/performance.md).
template <typename T>
bool swiglu_fast() {
  static const bool exact = [] {
    const char* v = std::getenv("MEGAHOST_SWIGLU");
    return v != nullptr && std::strcmp(v, "exact") == 0;
  }();
  return !std::is_same_v<T, float> && !exact;
}
}  // namespace

int swiglu_forward(int dtype, const void* x, void* y, int64_t rows, int64_t f, void* stream) {
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    if (!vec_ok<T>(f, {x, y})) return cudaErrorInvalidValue;
    auto* kernel = swiglu_fast<T>() ? mh_swiglu_forward_kernel<T, true> : mh_swiglu_forward_kernel<T, false>;
    kernel<<<row_blocks(rows, kRowBlocks), kThreads, 0, as_stream(stream)>>>(static_cast<const T*>(x),
                                                                              static_cast<T*>(y), rows, f);
    return cudaSuccess;
  });
}

int swiglu_backward(int dtype, const void* dy, const void* x, void* dx, int64_t rows, int64_t f, void* stream) {
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    if (!vec_ok<T>(f, {dy, x, dx})) return cudaErrorInvalidValue;
    auto* kernel = swiglu_fast<T>() ? mh_swiglu_backward_kernel<T, true> : mh_swiglu_backward_kernel<T, false>;
    kernel<<<row_blocks(rows, kRowBlocks), kThreads, 0, as_stream(stream)>>>(
        static_cast<const T*>(dy), static_cast<const T*>(x), static_cast<T*>(dx), rows, f);
    return cudaSuccess;
  });
}

int rotary(int dtype, const void* t, const RotaryShape& shape, const float* angles, void* out, float sign,
           void* stream) {
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    constexpr int64_t V = Vec<T>::kSize;
    const int64_t half = shape.rot / 2, n = shape.n1 * shape.n2;
    const bool vectors = reinterpret_cast<uintptr_t>(t) % 16 == 0 && reinterpret_cast<uintptr_t>(out) % 16 == 0 &&
                         half % V == 0 && (shape.d - shape.rot) % V == 0 && shape.stride_s % V == 0 &&
                         shape.stride_b % V == 0 && shape.stride_n1 % V == 0 && shape.stride_n2 % V == 0 &&
                         shape.b * n * shape.d < (int64_t{1} << 31) && shape.s < (int64_t{1} << 31);
    if (vectors) {
      mh_rotary_rows_kernel<T><<<static_cast<unsigned>(shape.s), kThreads, 2 * half * sizeof(float),
                                 as_stream(stream)>>>(static_cast<const T*>(t), shape, angles, static_cast<T*>(out),
                                                      sign);
      return;
    }
    const int64_t total = shape.s * shape.b * n * shape.d;
    mh_rotary_kernel<T><<<grid_for(total), kThreads, 0, as_stream(stream)>>>(static_cast<const T*>(t), shape, angles,
                                                                            static_cast<T*>(out), total, sign);
  });
}

// ---- rows scaled by a per-row factor ----

namespace {

// Eight consecutive elements as float32, and back: one or two 16-byte accesses per dtype.
template <typename T>
__device__ __forceinline__ void load8(const T* p, float (&f)[8]) {
#pragma unroll
  for (int h = 0; h < 8; h += Vec<T>::kSize) {
    float part[Vec<T>::kSize];
    unpack(load_vec(p + h), part);
#pragma unroll
    for (int k = 0; k < Vec<T>::kSize; ++k) f[h + k] = part[k];
  }
}
template <typename T>
__device__ __forceinline__ void store8(T* p, const float (&f)[8]) {
#pragma unroll
  for (int h = 0; h < 8; h += Vec<T>::kSize) {
    Vec<T> out;
#pragma unroll
    for (int k = 0; k < Vec<T>::kSize; ++k) out.v[k] = from_f32<T>(f[h + k]);
    store_vec(p + h, out);
  }
}

// cols % 8 == 0: a group of eight never straddles two rows.
template <typename TI, typename TO>
__global__ void mh_scale_rows_kernel(const TI* in, const float* __restrict__ g, TO* out, int64_t groups,
                                     int64_t cols) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < groups;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t e = i * 8;
    const float scale = g[e / cols];
    float f[8];
    load8(in + e, f);
#pragma unroll
    for (int k = 0; k < 8; ++k) f[k] *= scale;
    store8(out + e, f);
  }
}

}  // namespace

int scale_rows(int dtype_in, const void* in, const float* g, int dtype_out, void* out, int64_t rows, int64_t cols,
               void* stream) {
  if (cols % 8 != 0 || reinterpret_cast<uintptr_t>(in) % 16 != 0 || reinterpret_cast<uintptr_t>(out) % 16 != 0)
    return cudaErrorInvalidValue;
  const int64_t groups = rows * cols / 8;
  return dispatch_dtype(dtype_in, [&](auto in_tag) {
    using TI = decltype(in_tag);
    return static_cast<cudaError_t>(dispatch_dtype(dtype_out, [&](auto out_tag) {
      using TO = decltype(out_tag);
      mh_scale_rows_kernel<TI, TO><<<grid_for(groups), kThreads, 0, as_stream(stream)>>>(
          static_cast<const TI*>(in), g, static_cast<TO*>(out), groups, cols);
    }));
  });
}

}  // namespace megahost::sdk::kernels
