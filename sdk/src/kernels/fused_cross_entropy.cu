// megahost SDK — cross entropy straight from (b)f16 logits: float32 math in registers, no float32
// copy of the [rows, vocab] logits (see fused_kernels.h). One block per row; the forward is one
// pass with an online max / sum of exponentials.
#include <cuda_pipeline.h>

#include "fused_common.cuh"
#include "fused_kernels.h"

namespace megahost::sdk::kernels {

namespace {

constexpr int kThreads = 512;

// Combines the threads' running (max, sum of exp(x - max)) of row r and writes the row's stats.
template <typename T>
__device__ __forceinline__ void write_row_stats(float m, float s, float* scratch, const T* x,
                                                const int64_t* __restrict__ labels, int64_t vocab_start,
                                                float* row_max, float* row_sumexp, float* target_logit, int64_t r,
                                                int64_t v) {
  const float block_m = block_max(m, scratch);
  const float block_s = block_sum(m == -INFINITY ? 0.0f : s * __expf(m - block_m), scratch);
  if (threadIdx.x == 0) {
    row_max[r] = block_m;
    row_sumexp[r] = block_s;
    const int64_t t = labels[r] - vocab_start;
    target_logit[r] = (t >= 0 && t < v) ? to_f32(x[t]) : 0.0f;
  }
}

template <typename T>
__global__ void mh_cross_entropy_stats_kernel(const T* __restrict__ logits, const int64_t* __restrict__ labels,
                                           int64_t vocab_start, float* __restrict__ row_max,
                                           float* __restrict__ row_sumexp, float* __restrict__ target_logit,
                                           int64_t v) {
  __shared__ float scratch[32];
  const int64_t r = blockIdx.x;
  const T* x = logits + r * v;
  float m = -INFINITY, s = 0.0f;  // running max and sum of exp(x - m) of this thread
  for (int64_t c = threadIdx.x; c < v; c += blockDim.x) {
    const float xv = to_f32(x[c]);
    if (xv > m) {
      s = s * __expf(m - xv) + 1.0f;
      m = xv;
    } else {
      s += __expf(xv - m);
    }
  }
  write_row_stats(m, s, scratch, x, labels, vocab_start, row_max, row_sumexp, target_logit, r, v);
}

template <typename T>
__global__ void mh_cross_entropy_backward_kernel(const T* __restrict__ logits, const int64_t* __restrict__ labels,
                                              int64_t vocab_start, const float* __restrict__ lse,
                                              const float* __restrict__ grad_loss, T* __restrict__ dlogits,
                                              int64_t v) {
  const int64_t r = blockIdx.x;
  const float l = lse[r], g = grad_loss[r];
  const int64_t t = labels[r] - vocab_start;
  const T* x = logits + r * v;
  T* dx = dlogits + r * v;
  for (int64_t c = threadIdx.x; c < v; c += blockDim.x) {
    const float p = __expf(to_f32(x[c]) - l);
    dx[c] = from_f32<T>((p - (c == t ? 1.0f : 0.0f)) * g);
  }
}

// The same two kernels on rows read in 16-byte vectors (v a multiple of the vector width): one
// rescale of the running sum per vector instead of per element.
template <typename T>
__global__ void mh_cross_entropy_stats_vec_kernel(const T* __restrict__ logits, const int64_t* __restrict__ labels,
                                                  int64_t vocab_start, float* __restrict__ row_max,
                                                  float* __restrict__ row_sumexp, float* __restrict__ target_logit,
                                                  int64_t v) {
  constexpr int V = Vec<T>::kSize;
  __shared__ float scratch[32];
  const int64_t r = blockIdx.x;
  const T* x = logits + r * v;
  float m = -INFINITY, s = 0.0f;
  for (int64_t c = threadIdx.x * V; c < v; c += blockDim.x * V) {
    const Vec<T> xv = load_vec(x + c);
    float f[V], vmax = -INFINITY;
#pragma unroll
    for (int k = 0; k < V; ++k) {
      f[k] = to_f32(xv.v[k]);
      vmax = fmaxf(vmax, f[k]);
    }
    if (vmax > m) {
      s = m == -INFINITY ? 0.0f : s * __expf(m - vmax);
      m = vmax;
    }
#pragma unroll
    for (int k = 0; k < V; ++k) s += __expf(f[k] - m);
  }
  write_row_stats(m, s, scratch, x, labels, vocab_start, row_max, row_sumexp, target_logit, r, v);
}

template <typename T>
__global__ void mh_cross_entropy_backward_vec_kernel(const T* __restrict__ logits, const int64_t* __restrict__ labels,
                                                     int64_t vocab_start, const float* __restrict__ lse,
                                                     const float* __restrict__ grad_loss, T* __restrict__ dlogits,
                                                     int64_t v) {
  constexpr int V = Vec<T>::kSize;
  const int64_t r = blockIdx.x;
  const float l = lse[r], g = grad_loss[r];
  const int64_t t = labels[r] - vocab_start;
  for (int64_t c = threadIdx.x * V; c < v; c += blockDim.x * V) {
    const Vec<T> xv = load_vec(logits + r * v + c);
    Vec<T> out;
#pragma unroll
    for (int k = 0; k < V; ++k) {
      const float p = __expf(to_f32(xv.v[k]) - l);
      out.v[k] = from_f32<T>((p - (c + k == t ? 1.0f : 0.0f)) * g);
    }
    store_vec(dlogits + r * v + c, out);
  }
}

// The loss and its gradient in one pass over logits that die here (the fused output layer): each
// block stages its row in shared memory (every thread copies, and later reads, only its own
// vectors), keeps a running max and sum of exponentials as the copies land, then overwrites the
// row with softmax - one_hot(label), not yet scaled by the loss's gradient. One read and one write
// of the logits instead of the two kernels' three reads and one write. Shared memory rather than
// registers: a 50k-entry row is ~12 vectors per thread of 512, too many registers for two blocks
// per SM. The copies go out in kCopyGroups groups and the statistics of each start as soon as it
// lands, so a block's exponentials overlap its own loads (a first version that waited for the
// whole row, then took the max and the sum in two more passes, ran at 2.9 TB/s; two blocks of
// 1024 threads instead of 512 ran slower still). A row past what two blocks per SM can stage
// (bf16: ~57k entries on the H200; Llama-3's 128,256) stages its first staged_v entries and reads
// the rest from global memory twice, once for the statistics (while the copies land) and once for
// the gradient.
constexpr int kRowThreads = 512;
constexpr int kCopyGroups = 4;
constexpr int kTailInFlight = 4;

// Waits until at most `pending` of this thread's copy groups are still in flight (the count must
// be a literal for cp.async.wait_group).
__device__ __forceinline__ void wait_copies(int pending) {
  if (pending >= 3) __pipeline_wait_prior(3);
  else if (pending == 2) __pipeline_wait_prior(2);
  else if (pending == 1) __pipeline_wait_prior(1);
  else __pipeline_wait_prior(0);
}

// One vector into a thread's running max m and sum s of exp(x - m).
template <int V>
__device__ __forceinline__ void add_to_stats(const float (&f)[V], float& m, float& s) {
  float vmax = f[0];
#pragma unroll
  for (int k = 1; k < V; ++k) vmax = fmaxf(vmax, f[k]);
  if (vmax > m) {
    s = m == -INFINITY ? 0.0f : s * __expf(m - vmax);
    m = vmax;
  }
#pragma unroll
  for (int k = 0; k < V; ++k) s += __expf(f[k] - m);
}

// softmax - one_hot of one vector (entries first .. first + V - 1) at the row's log-sum-exp.
template <typename T, int V>
__device__ __forceinline__ Vec<T> softmax_minus_target(const float (&f)[V], float lse, int64_t first, int64_t t) {
  Vec<T> out;
#pragma unroll
  for (int k = 0; k < V; ++k) out.v[k] = from_f32<T>(__expf(f[k] - lse) - (first + k == t ? 1.0f : 0.0f));
  return out;
}

template <typename T>
__global__ void __launch_bounds__(kRowThreads)
    mh_cross_entropy_loss_grad_kernel(T* __restrict__ logits, const int64_t* __restrict__ labels,
                                      float* __restrict__ loss, int64_t v, int64_t staged_v) {
  constexpr int V = Vec<T>::kSize;
  extern __shared__ __align__(16) unsigned char staged_bytes[];
  T* row = reinterpret_cast<T*>(staged_bytes);  // [staged_v]
  __shared__ float scratch[32];
  const int64_t r = blockIdx.x;
  T* x = logits + r * v;
  const int64_t t = labels[r];
  // The target's logit, read before any thread overwrites the row (after the reductions' barriers).
  const float target = threadIdx.x == 0 && t >= 0 && t < v ? to_f32(x[t]) : 0.0f;
  const int n_vec = static_cast<int>(v / V), n_staged = static_cast<int>(staged_v / V);
  const int per_thread = (n_staged + kRowThreads - 1) / kRowThreads;  // this thread's vectors: i = tid + j * threads
  const int per_group = (per_thread + kCopyGroups - 1) / kCopyGroups;
  for (int group = 0; group < kCopyGroups; ++group) {
    for (int j = group * per_group; j < min((group + 1) * per_group, per_thread); ++j) {
      const int i = static_cast<int>(threadIdx.x) + j * kRowThreads;
      if (i < n_staged) __pipeline_memcpy_async(row + i * V, x + i * V, 16);
    }
    __pipeline_commit();  // possibly empty: every thread commits kCopyGroups groups
  }
  float m = -INFINITY, s = 0.0f;  // running max and sum of exp(x - m) of this thread
  // Past the staged part, from global memory while the copies land: kTailInFlight vectors per
  // thread loaded before any is used (one at a time kept too few bytes in flight per SM).
  int i = n_staged + static_cast<int>(threadIdx.x);
  for (; i + (kTailInFlight - 1) * kRowThreads < n_vec; i += kTailInFlight * kRowThreads) {
    Vec<T> in[kTailInFlight];
#pragma unroll
    for (int u = 0; u < kTailInFlight; ++u) in[u] = load_vec(x + static_cast<int64_t>(i + u * kRowThreads) * V);
#pragma unroll
    for (int u = 0; u < kTailInFlight; ++u) {
      float f[V];
      unpack(in[u], f);
      add_to_stats(f, m, s);
    }
  }
  for (; i < n_vec; i += kRowThreads) {
    float f[V];
    unpack(load_vec(x + static_cast<int64_t>(i) * V), f);
    add_to_stats(f, m, s);
  }
  for (int group = 0; group < kCopyGroups; ++group) {
    wait_copies(kCopyGroups - 1 - group);
    for (int j = group * per_group; j < min((group + 1) * per_group, per_thread); ++j) {
      const int i = static_cast<int>(threadIdx.x) + j * kRowThreads;
      if (i >= n_staged) break;
      float f[V];
      unpack(load_vec(row + i * V), f);
      add_to_stats(f, m, s);
    }
  }
  const float row_max = block_max(m, scratch);  // its barriers also make every thread's copy visible
  const float lse = row_max + logf(block_sum(m == -INFINITY ? 0.0f : s * __expf(m - row_max), scratch));
  for (int j = threadIdx.x; j < n_staged; j += kRowThreads) {
    const int64_t first = static_cast<int64_t>(j) * V;
    float f[V];
    unpack(load_vec(row + first), f);
    store_vec(x + first, softmax_minus_target<T>(f, lse, first, t));
  }
  i = n_staged + static_cast<int>(threadIdx.x);
  for (; i + (kTailInFlight - 1) * kRowThreads < n_vec; i += kTailInFlight * kRowThreads) {
    Vec<T> in[kTailInFlight];
#pragma unroll
    for (int u = 0; u < kTailInFlight; ++u) in[u] = load_vec(x + static_cast<int64_t>(i + u * kRowThreads) * V);
#pragma unroll
    for (int u = 0; u < kTailInFlight; ++u) {
      const int64_t first = static_cast<int64_t>(i + u * kRowThreads) * V;
      float f[V];
      unpack(in[u], f);
      store_vec(x + first, softmax_minus_target<T>(f, lse, first, t));
    }
  }
  for (; i < n_vec; i += kRowThreads) {
    const int64_t first = static_cast<int64_t>(i) * V;
    float f[V];
    unpack(load_vec(x + first), f);
    store_vec(x + first, softmax_minus_target<T>(f, lse, first, t));
  }
  if (threadIdx.x == 0) loss[r] = lse - target;
}

// The dynamic shared memory a block of the kernel takes on the current device: as much of a row
// as lets two blocks share an SM (the CUDA runtime keeps 1 KB per block), within the opt-in limit,
// less the kernel's static shared memory; opted into once per dtype. 0 when the device or the
// attribute says no.
template <typename T>
int loss_grad_shared_limit() {
  static const int limit = [] {
    int device = 0, optin = 0, per_sm = 0;
    cudaFuncAttributes attr{};
    if (cudaGetDevice(&device) != cudaSuccess ||
        cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device) != cudaSuccess ||
        cudaDeviceGetAttribute(&per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, device) != cudaSuccess ||
        cudaFuncGetAttributes(&attr, mh_cross_entropy_loss_grad_kernel<T>) != cudaSuccess) {
      cudaGetLastError();
      return 0;
    }
    const int two_blocks = per_sm / 2 - 1024;
    const int dynamic = ((two_blocks < optin ? two_blocks : optin) - static_cast<int>(attr.sharedSizeBytes)) / 16 * 16;
    if (dynamic <= 0 || cudaFuncSetAttribute(mh_cross_entropy_loss_grad_kernel<T>,
                                             cudaFuncAttributeMaxDynamicSharedMemorySize, dynamic) != cudaSuccess) {
      cudaGetLastError();
      return 0;
    }
    return dynamic;
  }();
  return limit;
}

}  // namespace

bool cross_entropy_loss_grad_fits(int dtype, int64_t v) {
  if (v <= 0 || v % 8 != 0 || v / 8 > (int64_t{1} << 30)) return false;
  if (dtype == kBF16) return loss_grad_shared_limit<__nv_bfloat16>() > 0;
  if (dtype == kF16) return loss_grad_shared_limit<__half>() > 0;
  return false;
}

int cross_entropy_loss_grad(int dtype, void* logits, const int64_t* labels, float* loss, int64_t rows, int64_t v,
                            void* stream) {
  if (!cross_entropy_loss_grad_fits(dtype, v) || reinterpret_cast<uintptr_t>(logits) % 16 != 0)
    return cudaErrorInvalidValue;
  return dispatch_dtype(dtype, [&](auto tag) -> cudaError_t {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, float>) {
      return cudaErrorInvalidValue;
    } else {
      const int64_t cap = loss_grad_shared_limit<T>() / static_cast<int64_t>(sizeof(T)) / 8 * 8;
      const int64_t staged_v = v < cap ? v : cap;  // the rest read from global memory twice
      const size_t bytes = static_cast<size_t>(staged_v) * sizeof(T);
      mh_cross_entropy_loss_grad_kernel<T><<<static_cast<unsigned>(rows), kRowThreads, bytes, as_stream(stream)>>>(
          static_cast<T*>(logits), labels, loss, v, staged_v);
      return cudaSuccess;
    }
  });
}

int cross_entropy_stats(int dtype, const void* logits, const int64_t* labels, int64_t vocab_start, float* row_max,
                        float* row_sumexp, float* target_logit, int64_t rows, int64_t v, void* stream) {
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    if (vec_ok<T>(v, {logits})) {
      mh_cross_entropy_stats_vec_kernel<T><<<static_cast<unsigned>(rows), kThreads, 0, as_stream(stream)>>>(
          static_cast<const T*>(logits), labels, vocab_start, row_max, row_sumexp, target_logit, v);
      return;
    }
    mh_cross_entropy_stats_kernel<T><<<static_cast<unsigned>(rows), kThreads, 0, as_stream(stream)>>>(
        static_cast<const T*>(logits), labels, vocab_start, row_max, row_sumexp, target_logit, v);
  });
}

int cross_entropy_backward(int dtype, const void* logits, const int64_t* labels, int64_t vocab_start, const float* lse,
                           const float* grad_loss, void* dlogits, int64_t rows, int64_t v, void* stream) {
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    if (vec_ok<T>(v, {logits, dlogits})) {
      mh_cross_entropy_backward_vec_kernel<T><<<static_cast<unsigned>(rows), kThreads, 0, as_stream(stream)>>>(
          static_cast<const T*>(logits), labels, vocab_start, lse, grad_loss, static_cast<T*>(dlogits), v);
      return;
    }
    mh_cross_entropy_backward_kernel<T><<<static_cast<unsigned>(rows), kThreads, 0, as_stream(stream)>>>(
        static_cast<const T*>(logits), labels, vocab_start, lse, grad_loss, static_cast<T*>(dlogits), v);
  });
}

}  // namespace megahost::sdk::kernels
