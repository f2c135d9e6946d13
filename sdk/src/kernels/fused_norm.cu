// megahost SDK — LayerNorm / RMSNorm with the residual add folded in (see fused_kernels.h).
// One block per row in the forward: the row in registers where h is 1, 2 or 4 vectors per thread
// of a block of 64-512 threads, else kept in shared memory as float32 (the variance is an exact
// second pass either way); the backward walks rows in a grid-stride loop so each block sums its
// columns' weight/bias gradients privately (no atomics), the caller adds the blocks up.
#include "fused_common.cuh"
#include "fused_kernels.h"

#include <curand_kernel.h>

#include <cstdlib>
#include <string>

namespace megahost::sdk::kernels {

namespace {

constexpr int kThreads = 256;

template <typename T, bool kRms>
__global__ void mh_norm_forward_kernel(const T* __restrict__ x, const T* __restrict__ x_bias,
                                    const T* __restrict__ residual, const T* __restrict__ weight, const T* __restrict__ bias, T* __restrict__ y,
                                    T* __restrict__ sum_out, float* __restrict__ mean_out,
                                    float* __restrict__ rstd_out, int64_t h, float eps) {
  extern __shared__ float row[];  // [h] float32, then 32 floats of reduction scratch
  float* scratch = row + h;
  const int64_t r = blockIdx.x;
  const T* xr = x + r * h;
  float local = 0.0f;
  for (int64_t c = threadIdx.x; c < h; c += blockDim.x) {
    float v = to_f32(xr[c]);
    if (x_bias != nullptr) v += to_f32(x_bias[c]);
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
                                     float* __restrict__ dxbias_partial, int64_t rows, int64_t h) {
  extern __shared__ float smem[];  // dweight [h], dbias [h], 32 floats scratch, with x_bias dx sums [h]
  float* dw = smem;
  float* db = smem + h;
  float* scratch = smem + 2 * h;
  float* dxb = smem + 2 * h + 32;
  for (int64_t c = threadIdx.x; c < h; c += blockDim.x) {
    dw[c] = db[c] = 0.0f;
    if (dxbias_partial != nullptr) dxb[c] = 0.0f;
  }
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
      if (dxbias_partial != nullptr) dxb[c] += v;
    }
  }
  for (int64_t c = threadIdx.x; c < h; c += blockDim.x) {
    dweight_partial[blockIdx.x * h + c] = dw[c];
    if (dbias_partial != nullptr) dbias_partial[blockIdx.x * h + c] = db[c];
    if (dxbias_partial != nullptr) dxbias_partial[blockIdx.x * h + c] = dxb[c];
  }
}

// The same two kernels walking rows in 16-byte vectors (h a multiple of the vector width).
// Per-thread values live in shared memory at slot(strip, k) = (strip * V + k) * blockDim + tid:
// consecutive threads hit consecutive banks (indexing by column would be a V-way bank conflict).
template <int V>
__device__ __forceinline__ int64_t slot(int strip, int k) {
  return (static_cast<int64_t>(strip) * V + k) * blockDim.x + threadIdx.x;
}

// One 16-byte vector of the output: y = (v - mean) * rstd * weight (+ bias; LayerNorm only).
template <typename T, bool kRms>
__device__ __forceinline__ void store_normalized(T* y, const T* weight, const T* bias, const float (&v)[Vec<T>::kSize],
                                                 float mean, float rstd) {
  constexpr int V = Vec<T>::kSize;
  const Vec<T> wv = load_vec(weight);
  Vec<T> bv;
  if (!kRms && bias != nullptr) bv = load_vec(bias);
  Vec<T> out;
#pragma unroll
  for (int k = 0; k < V; ++k) {
    float t = (v[k] - mean) * rstd * to_f32(wv.v[k]);
    if (!kRms && bias != nullptr) t += to_f32(bv.v[k]);
    out.v[k] = from_f32<T>(t);
  }
  store_vec(y, out);
}

template <typename T, bool kRms>
__global__ void mh_norm_forward_vec_kernel(const T* __restrict__ x, const T* __restrict__ x_bias,
                                           const T* __restrict__ residual, const T* __restrict__ weight, const T* __restrict__ bias,
                                           T* __restrict__ y, T* __restrict__ sum_out, float* __restrict__ mean_out,
                                           float* __restrict__ rstd_out, int64_t h, int64_t slots, float eps) {
  constexpr int V = Vec<T>::kSize;
  extern __shared__ float row[];  // [slots] float32, then 32 floats of reduction scratch
  float* scratch = row + slots;
  const int64_t r = blockIdx.x;
  float local = 0.0f;
  int strip = 0;
  for (int64_t c = threadIdx.x * V; c < h; c += blockDim.x * V, ++strip) {
    const Vec<T> xv = load_vec(x + r * h + c);
    float v[V];
    Vec<T> xbv;
    if (x_bias != nullptr) xbv = load_vec(x_bias + c);
    if (residual != nullptr) {
      const Vec<T> rv = load_vec(residual + r * h + c);
      Vec<T> sv;
#pragma unroll
      for (int k = 0; k < V; ++k) {
        const float xb = x_bias != nullptr ? to_f32(xv.v[k]) + to_f32(xbv.v[k]) : to_f32(xv.v[k]);
        sv.v[k] = from_f32<T>(xb + to_f32(rv.v[k]));
      }
      store_vec(sum_out + r * h + c, sv);
#pragma unroll
      for (int k = 0; k < V; ++k) v[k] = to_f32(sv.v[k]);  // normalise what the residual stream carries
    } else {
#pragma unroll
      for (int k = 0; k < V; ++k) v[k] = to_f32(xv.v[k]) + (x_bias != nullptr ? to_f32(xbv.v[k]) : 0.0f);
    }
#pragma unroll
    for (int k = 0; k < V; ++k) {
      row[slot<V>(strip, k)] = v[k];
      local += v[k];
    }
  }
  const float mean = kRms ? 0.0f : block_sum(local, scratch) / static_cast<float>(h);
  float sq = 0.0f;
  strip = 0;
  for (int64_t c = threadIdx.x * V; c < h; c += blockDim.x * V, ++strip)
#pragma unroll
    for (int k = 0; k < V; ++k) {
      const float d = row[slot<V>(strip, k)] - mean;
      sq += d * d;
    }
  const float rstd = rsqrtf(block_sum(sq, scratch) / static_cast<float>(h) + eps);
  strip = 0;
  for (int64_t c = threadIdx.x * V; c < h; c += blockDim.x * V, ++strip) {
    float v[V];
#pragma unroll
    for (int k = 0; k < V; ++k) v[k] = row[slot<V>(strip, k)];
    store_normalized<T, kRms>(y + r * h + c, weight + c, bias == nullptr ? nullptr : bias + c, v, mean, rstd);
  }
  if (threadIdx.x == 0) {
    if (!kRms) mean_out[r] = mean;
    rstd_out[r] = rstd;
  }
}

// The forward with the row in registers: each thread holds S 16-byte vectors of the row
// (h == S * threads * V exactly). Every load of the row is issued before the first reduction, and
// small blocks keep many rows in flight per SM (the shared-memory kernel above holds one vector
// per thread and a 256-thread barrier per reduction). kBlock = kThreadsPerRow: the 128-thread
// blocks of h = 1024, 2048, 4096 (bf16), the shapes tuned on the H200; kBlock = kAnyThreads: any
// multiple of 32 up to 512 threads per row (forward_shape), for the other hidden sizes.
constexpr int kThreadsPerRow = 128;
constexpr int kAnyThreads = 512;

// The generator's (seed, offset) as this launch sees them: inside a CUDA graph read from device
// memory at run time (each replay's own), else the values the launch was queued with.
__device__ __forceinline__ void unpack_philox(const PhiloxArgs& a, uint64_t* seed, uint64_t* offset) {
  if (a.captured) {
    *seed = static_cast<uint64_t>(*a.seed_ptr);
    *offset = static_cast<uint64_t>(*a.offset_ptr) + a.offset_intragraph;
  } else {
    *seed = a.seed;
    *offset = a.offset;
  }
}

// The keep bits of one 16-byte vector (V elements, bit k for element k): one curand4 on the
// vector's own subsequence, 16 bits per element against threshold = round(p * 65536).
template <int V>
__device__ __forceinline__ uint32_t keep_bits(uint64_t seed, uint64_t offset, uint64_t vector_index,
                                              uint32_t threshold) {
  curandStatePhilox4_32_10_t state;
  curand_init(seed, vector_index, offset, &state);
  const uint4 r = curand4(&state);
  const uint32_t words[4] = {r.x, r.y, r.z, r.w};
  uint32_t bits = 0;
#pragma unroll
  for (int k = 0; k < V; ++k) {
    const uint32_t u16 = (words[k / 2] >> (16 * (k & 1))) & 0xffffu;
    bits |= static_cast<uint32_t>(u16 >= threshold) << k;
  }
  return bits;
}

__host__ __device__ __forceinline__ uint32_t dropout_threshold(float p) {
  const float t = p * 65536.0f + 0.5f;
  return t >= 65535.0f ? 65535u : static_cast<uint32_t>(t);
}

// kDrop: sum = residual + keep * scale * (x + x_bias) (NormDropout), the keep bits stored.
template <typename T, bool kRms, int S, bool kDrop = false, int kBlock = kThreadsPerRow>
__global__ void __launch_bounds__(kBlock)
    mh_norm_forward_reg_kernel(const T* __restrict__ x, const T* __restrict__ x_bias, const T* __restrict__ residual,
                               const T* __restrict__ weight, const T* __restrict__ bias, T* __restrict__ y,
                               T* __restrict__ sum_out, float* __restrict__ mean_out, float* __restrict__ rstd_out,
                               int64_t h, float eps, NormDropout drop) {
  constexpr int V = Vec<T>::kSize;
  const int threads = kBlock == kThreadsPerRow ? kThreadsPerRow : static_cast<int>(blockDim.x);
  __shared__ float scratch[32];
  const int64_t row = static_cast<int64_t>(blockIdx.x) * h;
  uint64_t seed = 0, offset = 0;
  uint32_t threshold = 0;
  if constexpr (kDrop) {
    unpack_philox(drop.rng, &seed, &offset);
    threshold = dropout_threshold(drop.p);
  }
  Vec<T> xv[S], rv[S];
#pragma unroll
  for (int s = 0; s < S; ++s) {
    const int64_t c = (static_cast<int64_t>(s) * threads + threadIdx.x) * V;
    xv[s] = load_vec(x + row + c);
    if (residual != nullptr) rv[s] = load_vec(residual + row + c);
  }
  float v[S][V];
  float local = 0.0f;
#pragma unroll
  for (int s = 0; s < S; ++s) {
    const int64_t c = (static_cast<int64_t>(s) * threads + threadIdx.x) * V;
    Vec<T> xbv;
    if (x_bias != nullptr) xbv = load_vec(x_bias + c);
    uint32_t keep = 0;
    if constexpr (kDrop) {
      const uint64_t vector_index = static_cast<uint64_t>(row + c) / V;
      keep = keep_bits<V>(seed, offset, vector_index, threshold);
      drop.keep[vector_index] = static_cast<uint8_t>(keep);
    }
    Vec<T> sv;
#pragma unroll
    for (int k = 0; k < V; ++k) {
      float t = to_f32(xv[s].v[k]);
      if (x_bias != nullptr) t += to_f32(xbv.v[k]);
      if constexpr (kDrop) t = (keep >> k) & 1u ? t * drop.scale : 0.0f;
      if (residual != nullptr) {
        sv.v[k] = from_f32<T>(t + to_f32(rv[s].v[k]));
        t = to_f32(sv.v[k]);  // normalise what the residual stream carries on
      }
      v[s][k] = t;
      local += t;
    }
    if (residual != nullptr) store_vec(sum_out + row + c, sv);
  }
  const float mean = kRms ? 0.0f : block_sum(local, scratch) / static_cast<float>(h);
  float sq = 0.0f;
#pragma unroll
  for (int s = 0; s < S; ++s)
#pragma unroll
    for (int k = 0; k < V; ++k) sq += (v[s][k] - mean) * (v[s][k] - mean);
  const float rstd = rsqrtf(block_sum(sq, scratch) / static_cast<float>(h) + eps);
#pragma unroll
  for (int s = 0; s < S; ++s) {
    const int64_t c = (static_cast<int64_t>(s) * threads + threadIdx.x) * V;
    store_normalized<T, kRms>(y + row + c, weight + c, bias == nullptr ? nullptr : bias + c, v[s], mean, rstd);
  }
  if (threadIdx.x == 0) {
    if (!kRms) mean_out[blockIdx.x] = mean;
    rstd_out[blockIdx.x] = rstd;
  }
}

// Backward in 16-byte vectors with every per-thread value in registers (h <= S * blockDim * V):
// shared memory holds only the reduction scratch, so more blocks fit on an SM and more loads are
// in flight (a version keeping them in shared memory moved ~2 TB/s on the H200 at h = 2048).
// kXBias: also the column sums of dx itself (the gradient of a bias added to x in the forward:
// Megatron's skip_bias_add, the sub-layer's output bias folded into this add).
// kExact: h == S * blockDim * V, so no column needs a bounds check. Nsight Compute on the H200
// found this kernel bound by instruction issue and latency, not memory (GPT-1.3B: 2.7 TB/s,
// short-scoreboard and dependency stalls first, 4 warps per scheduler): the per-element checks
// cut the row into small branches, so the exact case compiles without them and each row's two
// sums take one barrier (block_sum2_one_barrier) instead of two plus a second shuffle tree.
// kDrop (with kExact): also dx_drop = dx * keep * scale, x's gradient through the dropout of the
// forward (NormDropout), whose column sums are then x_bias's gradient.
template <typename T, bool kRms, int S, bool kXBias, bool kExact, bool kDrop = false>
__global__ void __launch_bounds__(512)
    mh_norm_backward_reg_kernel(const T* __restrict__ dy, const T* __restrict__ dsum, const T* __restrict__ sum,
                                const T* __restrict__ weight, const float* __restrict__ mean,
                                const float* __restrict__ rstd, T* __restrict__ dx, float* __restrict__ dweight_partial,
                                float* __restrict__ dbias_partial, float* __restrict__ dxbias_partial, int64_t rows,
                                int64_t h, NormDropout drop) {
  constexpr int V = Vec<T>::kSize;
  __shared__ __align__(16) float scratch[2 * 64];
  int64_t col[S];
  bool in[S];
  float w[S][V], dw[S][V], db[S][V], dxb[S][V];
#pragma unroll
  for (int s = 0; s < S; ++s) {
    col[s] = (static_cast<int64_t>(s) * blockDim.x + threadIdx.x) * V;
    in[s] = kExact || col[s] < h;
    Vec<T> wv;
    if (in[s]) wv = load_vec(weight + col[s]);
#pragma unroll
    for (int k = 0; k < V; ++k) {
      w[s][k] = in[s] ? to_f32(wv.v[k]) : 0.0f;
      dw[s][k] = db[s][k] = dxb[s][k] = 0.0f;
    }
  }
  // One row's inputs: dy, sum, dsum (all independent of the reductions) and its statistics.
  struct RowIn {
    Vec<T> dy[S], sum[S], dsum[S];
    uint8_t keep[S];
    float mu = 0.0f, rs = 0.0f;
  };
  auto load_row = [&](int64_t r, RowIn& in_row) {
    in_row.mu = kRms ? 0.0f : mean[r];
    in_row.rs = rstd[r];
#pragma unroll
    for (int s = 0; s < S; ++s) {
      if (!in[s]) continue;
      in_row.dy[s] = load_vec(dy + r * h + col[s]);
      in_row.sum[s] = load_vec(sum + r * h + col[s]);
      if (dsum != nullptr) in_row.dsum[s] = load_vec(dsum + r * h + col[s]);
      if constexpr (kDrop) in_row.keep[s] = drop.keep[(r * h + col[s]) / V];
    }
  };
  RowIn cur;
  if (blockIdx.x < rows) load_row(blockIdx.x, cur);
  // The row means as products: one division per thread, not two per row (the same bits when h
  // is a power of two; within an ulp otherwise).
  const float inv_h = 1.0f / static_cast<float>(h);
  int parity = 0;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    // The next row's loads go out now and land while this row reduces.
    RowIn next;
    if (r + gridDim.x < rows) load_row(r + gridDim.x, next);
    const float mu = cur.mu, rs = cur.rs;
    float g[S][V], xhat[S][V];
    float sum_g = 0.0f, sum_gx = 0.0f;
#pragma unroll
    for (int s = 0; s < S; ++s) {
      float dyf[V], sumf[V];
      unpack(cur.dy[s], dyf);
      unpack(cur.sum[s], sumf);
#pragma unroll
      for (int k = 0; k < V; ++k) {
        const float d = in[s] ? dyf[k] : 0.0f;
        xhat[s][k] = in[s] ? (sumf[k] - mu) * rs : 0.0f;
        g[s][k] = d * w[s][k];
        dw[s][k] += d * xhat[s][k];
        db[s][k] += d;
        sum_g += g[s][k];
        sum_gx += g[s][k] * xhat[s][k];
      }
    }
    // Both row sums in one reduction (RMSNorm needs only the second).
    float2 sums;
    if constexpr (kExact) {
      sums = block_sum2_one_barrier(sum_g, sum_gx, scratch, parity);
      parity ^= 1;
    } else {
      sums = kRms ? make_float2(0.0f, block_sum(sum_gx, scratch)) : block_sum2(sum_g, sum_gx, scratch);
    }
    const float mean_g = kRms ? 0.0f : sums.x * inv_h, mean_gx = sums.y * inv_h;
#pragma unroll
    for (int s = 0; s < S; ++s) {
      if (!in[s]) continue;
      Vec<T> out, out_drop;
      float dsumf[V] = {};
      if (dsum != nullptr) unpack(cur.dsum[s], dsumf);
#pragma unroll
      for (int k = 0; k < V; ++k) {
        float v = rs * (g[s][k] - mean_g - xhat[s][k] * mean_gx);
        if (dsum != nullptr) v += dsumf[k];
        out.v[k] = from_f32<T>(v);
        if constexpr (kDrop) {
          // From the stored gradient, as a dropout after it would scale it.
          const float vd = (cur.keep[s] >> k) & 1u ? to_f32(out.v[k]) * drop.scale : 0.0f;
          out_drop.v[k] = from_f32<T>(vd);
          if (kXBias) dxb[s][k] += vd;
        } else if (kXBias) {
          dxb[s][k] += v;
        }
      }
      store_vec(dx + r * h + col[s], out);
      if constexpr (kDrop) store_vec(static_cast<T*>(drop.dx_drop) + r * h + col[s], out_drop);
    }
    cur = next;
  }
  store_partial_row(dweight_partial, h, col, dw);
  if (dbias_partial != nullptr) store_partial_row(dbias_partial, h, col, db);
  if (kXBias) store_partial_row(dxbias_partial, h, col, dxb);
}

// Threads per row: one 16-byte vector each, a multiple of 32 in [32, 512].
int vec_threads(int64_t h, int v) {
  int64_t t = (h / v + 31) / 32 * 32;
  return static_cast<int>(t < 32 ? 32 : (t > 512 ? 512 : t));
}
// Shared-memory slots per row: whole strips of threads x v values.
int64_t vec_slots(int64_t h, int v, int threads) {
  const int64_t strip = static_cast<int64_t>(v) * threads;
  return (h + strip - 1) / strip * strip;
}

// MEGAHOST_NORM_KERNELS=previous: the shared-memory forward for every shape (the A/B of
// docs/performance.md).
bool previous_norm_kernels() {
  static const bool on = [] {
    const char* v = std::getenv("MEGAHOST_NORM_KERNELS");
    return v != nullptr && std::string(v) == "previous";
  }();
  return on;
}

// MEGAHOST_NORM_KERNELS=tuned: the register kernels only at the 128-thread shapes (h = 1024,
// 2048, 4096 in bf16) and one vector per backward thread, as before they took other hidden sizes
// (the A/B of docs/performance.md).
bool tuned_shapes_only() {
  static const bool on = [] {
    const char* v = std::getenv("MEGAHOST_NORM_KERNELS");
    return v != nullptr && std::string(v) == "tuned";
  }();
  return on;
}

template <typename T>
using ForwardRegKernel = void (*)(const T*, const T*, const T*, const T*, const T*, T*, T*, float*, float*, int64_t,
                                  float, NormDropout);
template <typename T, int S, int kBlock>
ForwardRegKernel<T> forward_reg_kernel_b(bool rms, bool drop) {
  if (drop)
    return rms ? mh_norm_forward_reg_kernel<T, true, S, true, kBlock> : mh_norm_forward_reg_kernel<T, false, S, true, kBlock>;
  return rms ? mh_norm_forward_reg_kernel<T, true, S, false, kBlock> : mh_norm_forward_reg_kernel<T, false, S, false, kBlock>;
}

// A register kernel's row layout: `threads` per row, each `strips` 16-byte vectors; {0, 0} when
// h is no such whole layout (then the shared-memory kernels run).
struct RowShape {
  int threads = 0;
  int64_t strips = 0;
};

// The forward's layout: 128 threads x 1, 2 or 4 vectors where h fills them (the tuned shapes),
// else the most vectors per thread (4, 2, 1) that leave a multiple of 32 threads in [64, 512]
// (GPT-3's 768 -> 96 x 1, 2560 -> 160 x 2, 5120 -> 160 x 4, 12288 -> 384 x 4 in bf16).
template <typename T>
RowShape forward_shape(int64_t h) {
  constexpr int V = Vec<T>::kSize;
  if (h <= 0 || h % V != 0) return {};
  const int64_t vectors = h / V;
  if (vectors % kThreadsPerRow == 0) {
    const int64_t s = vectors / kThreadsPerRow;
    if (s == 1 || s == 2 || s == 4) return {kThreadsPerRow, s};
  }
  if (tuned_shapes_only()) return {};
  for (const int64_t s : {4, 2, 1}) {
    if (vectors % s != 0) continue;
    const int64_t t = vectors / s;
    if (t % 32 == 0 && t >= 64 && t <= kAnyThreads) return {static_cast<int>(t), s};
  }
  return {};
}

template <typename T>
ForwardRegKernel<T> forward_reg_kernel(RowShape shape, bool rms, bool drop) {
  const bool tuned = shape.threads == kThreadsPerRow;
  switch (shape.strips) {
    case 1: return tuned ? forward_reg_kernel_b<T, 1, kThreadsPerRow>(rms, drop) : forward_reg_kernel_b<T, 1, kAnyThreads>(rms, drop);
    case 2: return tuned ? forward_reg_kernel_b<T, 2, kThreadsPerRow>(rms, drop) : forward_reg_kernel_b<T, 2, kAnyThreads>(rms, drop);
    case 4: return tuned ? forward_reg_kernel_b<T, 4, kThreadsPerRow>(rms, drop) : forward_reg_kernel_b<T, 4, kAnyThreads>(rms, drop);
    default: return nullptr;
  }
}

}  // namespace

int norm_forward(int dtype, bool rms, const void* x, const void* x_bias, const void* residual, const void* weight,
                 const void* bias, void* y, void* sum_out, float* mean, float* rstd, int64_t rows, int64_t h, float eps,
                 void* stream, const NormDropout* dropout) {
  const size_t smem = (static_cast<size_t>(h) + 32) * sizeof(float);  // the scalar kernel's row
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    constexpr int V = Vec<T>::kSize;
    const int threads = vec_threads(h, V);
    const int64_t slots = vec_slots(h, V, threads);
    const size_t smem_vec = (static_cast<size_t>(slots) + 32) * sizeof(float);
    const RowShape shape = forward_shape<T>(h);
    const bool drop = dropout != nullptr;
    auto* kr = forward_reg_kernel<T>(shape, rms, drop);
    const bool vectors_ok = vec_ok<T>(h, {x, x_bias, residual, weight, bias, y, sum_out});
    if (kr != nullptr && vectors_ok && (drop || !previous_norm_kernels())) {
      kr<<<static_cast<unsigned>(rows), shape.threads, 0, as_stream(stream)>>>(
          static_cast<const T*>(x), static_cast<const T*>(x_bias), static_cast<const T*>(residual),
          static_cast<const T*>(weight), static_cast<const T*>(bias), static_cast<T*>(y), static_cast<T*>(sum_out),
          mean, rstd, h, eps, drop ? *dropout : NormDropout{});
      return cudaSuccess;
    }
    if (drop) return cudaErrorInvalidValue;  // only the register kernels draw the mask: norm_dropout_supported
    if (smem_vec <= 48 * 1024 && vec_ok<T>(h, {x, x_bias, residual, weight, bias, y, sum_out})) {
      auto* kv = rms ? mh_norm_forward_vec_kernel<T, true> : mh_norm_forward_vec_kernel<T, false>;
      kv<<<static_cast<unsigned>(rows), threads, smem_vec, as_stream(stream)>>>(
          static_cast<const T*>(x), static_cast<const T*>(x_bias), static_cast<const T*>(residual),
          static_cast<const T*>(weight), static_cast<const T*>(bias), static_cast<T*>(y), static_cast<T*>(sum_out),
          mean, rstd, h, slots, eps);
      return cudaSuccess;
    }
    if (smem > 48 * 1024) return cudaErrorInvalidValue;  // h > 12,256 off the register kernels: norm_supported
    auto* k = rms ? mh_norm_forward_kernel<T, true> : mh_norm_forward_kernel<T, false>;
    k<<<static_cast<unsigned>(rows), kThreads, smem, as_stream(stream)>>>(
        static_cast<const T*>(x), static_cast<const T*>(x_bias), static_cast<const T*>(residual),
        static_cast<const T*>(weight), static_cast<const T*>(bias), static_cast<T*>(y), static_cast<T*>(sum_out), mean,
        rstd, h, eps);
    return cudaSuccess;
  });
}

namespace {

// The register kernel for rows of h (strips = S per thread), or null when h needs more strips.
template <typename T>
using BackwardRegKernel = void (*)(const T*, const T*, const T*, const T*, const float*, const float*, T*, float*,
                                   float*, float*, int64_t, int64_t, NormDropout);

// The dropout backward: exact shapes only (norm_dropout_supported).
template <typename T, int S>
BackwardRegKernel<T> backward_drop_kernel_s(bool rms, bool x_bias) {
  if (x_bias)
    return rms ? mh_norm_backward_reg_kernel<T, true, S, true, true, true>
               : mh_norm_backward_reg_kernel<T, false, S, true, true, true>;
  return rms ? mh_norm_backward_reg_kernel<T, true, S, false, true, true>
             : mh_norm_backward_reg_kernel<T, false, S, false, true, true>;
}

template <typename T, int S, bool kExact>
BackwardRegKernel<T> backward_reg_kernel_s(bool rms, bool x_bias) {
  if (x_bias)
    return rms ? mh_norm_backward_reg_kernel<T, true, S, true, kExact> : mh_norm_backward_reg_kernel<T, false, S, true, kExact>;
  return rms ? mh_norm_backward_reg_kernel<T, true, S, false, kExact> : mh_norm_backward_reg_kernel<T, false, S, false, kExact>;
}

// MEGAHOST_NORM_BACKWARD=checked: the bounds-checked kernel (two barriers per row) for every
// shape, the A/B of docs/performance.md.
bool checked_norm_backward() {
  static const bool on = [] {
    const char* v = std::getenv("MEGAHOST_NORM_BACKWARD");
    return v != nullptr && std::string(v) == "checked";
  }();
  return on;
}

// exact: h == strips * threads * V (no column past h).
template <typename T>
BackwardRegKernel<T> backward_reg_kernel(bool rms, int64_t strips, bool x_bias, bool exact) {
  exact = exact && !checked_norm_backward();
  if (strips == 1) return exact ? backward_reg_kernel_s<T, 1, true>(rms, x_bias) : backward_reg_kernel_s<T, 1, false>(rms, x_bias);
  if (strips == 2) return exact ? backward_reg_kernel_s<T, 2, true>(rms, x_bias) : backward_reg_kernel_s<T, 2, false>(rms, x_bias);
  if (strips <= 4) return exact && strips == 4 ? backward_reg_kernel_s<T, 4, true>(rms, x_bias)
                                               : backward_reg_kernel_s<T, 4, false>(rms, x_bias);
  return nullptr;
}

template <typename T>
bool backward_exact(int64_t h, int threads, int64_t strips) {
  return h == strips * threads * Vec<T>::kSize;
}

// The backward's threads per row: one 16-byte vector each up to 512 (vec_threads); a wider row
// splits into 2 or 4 vectors per thread where that leaves a whole multiple of 32 threads, so it is
// exact (5120 -> 320 x 2, 6144 -> 384 x 2, 12288 -> 384 x 4 in bf16) rather than 512 threads with
// a partly filled last strip.
template <typename T>
int backward_threads(int64_t h) {
  constexpr int V = Vec<T>::kSize;
  const int64_t vectors = h / V;
  if (h % V == 0 && vectors > 512 && !tuned_shapes_only())
    for (const int64_t s : {2, 4})
      if (vectors % s == 0 && (vectors / s) % 32 == 0 && vectors / s <= 512) return static_cast<int>(vectors / s);
  return vec_threads(h, V);
}

template <typename T>
int64_t backward_strips(int64_t h, int threads) {
  return vec_slots(h, Vec<T>::kSize, threads) / (static_cast<int64_t>(threads) * Vec<T>::kSize);
}

// Blocks resident on the device at once for the register kernel: every block walks rows with a
// grid stride, so one full wave leaves no SM idle at the end (1024 blocks made 2.6 waves at
// h = 2048 on the H200) and the per-block partial sums stay few.
template <typename T>
int64_t resident_blocks(bool rms, int64_t h, bool x_bias) {
  const int threads = backward_threads<T>(h);
  const int64_t strips = backward_strips<T>(h, threads);
  auto* kr = backward_reg_kernel<T>(rms, strips, x_bias, backward_exact<T>(h, threads, strips));
  int per_sm = 0, device = 0, sms = 0;
  if (kr == nullptr || cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kr, threads, 0) != cudaSuccess ||
      cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess || per_sm * sms <= 0) {
    cudaGetLastError();
    return 1024;
  }
  return static_cast<int64_t>(per_sm) * sms;
}

}  // namespace

int64_t norm_backward_blocks(int dtype, bool rms, int64_t rows, int64_t h, bool x_bias) {
  int64_t cap = 1024;
  if (dtype == kF32) cap = resident_blocks<float>(rms, h, x_bias);
  else if (dtype == kBF16) cap = resident_blocks<__nv_bfloat16>(rms, h, x_bias);
  else if (dtype == kF16) cap = resident_blocks<__half>(rms, h, x_bias);
  return rows < cap ? rows : cap;
}

int norm_backward(int dtype, bool rms, const void* dy, const void* dsum, const void* sum, const void* weight,
                  const float* mean, const float* rstd, void* dx, float* dweight_partial, float* dbias_partial,
                  float* dxbias_partial, int64_t rows, int64_t h, int64_t blocks_in, void* stream,
                  const NormDropout* dropout) {
  const bool x_bias = dxbias_partial != nullptr;
  const size_t smem = ((x_bias ? 3 : 2) * static_cast<size_t>(h) + 32) * sizeof(float);  // the scalar kernel's
  const unsigned blocks = static_cast<unsigned>(blocks_in);
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    const int threads = backward_threads<T>(h);
    const int64_t strips = backward_strips<T>(h, threads);
    if (dropout != nullptr) {
      // The mask bytes are indexed by vector (row * h + column) / V, whatever thread reads them.
      auto* kd = strips == 1 ? backward_drop_kernel_s<T, 1>(rms, x_bias)
               : strips == 2 ? backward_drop_kernel_s<T, 2>(rms, x_bias)
               : strips == 4 ? backward_drop_kernel_s<T, 4>(rms, x_bias) : nullptr;
      if (kd == nullptr || !backward_exact<T>(h, threads, strips) ||
          !vec_ok<T>(h, {dy, dsum, sum, weight, dx, dropout->dx_drop}))
        return cudaErrorInvalidValue;
      kd<<<blocks, threads, 0, as_stream(stream)>>>(
          static_cast<const T*>(dy), static_cast<const T*>(dsum), static_cast<const T*>(sum),
          static_cast<const T*>(weight), mean, rstd, static_cast<T*>(dx), dweight_partial, dbias_partial,
          dxbias_partial, rows, h, *dropout);
      return cudaSuccess;
    }
    auto* kr = backward_reg_kernel<T>(rms, strips, x_bias, backward_exact<T>(h, threads, strips));
    if (kr != nullptr && vec_ok<T>(h, {dy, dsum, sum, weight, dx})) {
      kr<<<blocks, threads, 0, as_stream(stream)>>>(
          static_cast<const T*>(dy), static_cast<const T*>(dsum), static_cast<const T*>(sum),
          static_cast<const T*>(weight), mean, rstd, static_cast<T*>(dx), dweight_partial, dbias_partial,
          dxbias_partial, rows, h, NormDropout{});
      return cudaSuccess;
    }
    if (smem > 48 * 1024) return cudaErrorInvalidValue;
    auto* k = rms ? mh_norm_backward_kernel<T, true> : mh_norm_backward_kernel<T, false>;
    k<<<blocks, kThreads, smem, as_stream(stream)>>>(
        static_cast<const T*>(dy), static_cast<const T*>(dsum), static_cast<const T*>(sum),
        static_cast<const T*>(weight), mean, rstd, static_cast<T*>(dx), dweight_partial, dbias_partial,
        dxbias_partial, rows, h);
    return cudaSuccess;
  });
}

int64_t norm_dropout_vector(int dtype) { return dtype == kF32 ? 4 : 8; }

bool norm_supported(int dtype, int64_t h) {
  auto fits = [h](auto tag) {
    using T = decltype(tag);
    constexpr size_t kSmem = 48 * 1024;
    const bool forward = forward_shape<T>(h).threads != 0 || (static_cast<size_t>(h) + 32) * sizeof(float) <= kSmem;
    const bool backward_vec = h % Vec<T>::kSize == 0 && backward_strips<T>(h, backward_threads<T>(h)) <= 4;
    const bool backward = backward_vec || (3 * static_cast<size_t>(h) + 32) * sizeof(float) <= kSmem;
    return h > 0 && forward && backward;
  };
  if (dtype == kF32) return fits(float{});
  if (dtype == kBF16) return fits(__nv_bfloat16{});
  if (dtype == kF16) return fits(__half{});
  return false;
}

bool norm_dropout_supported(int dtype, int64_t h) {
  auto both_exact = [h](auto tag) {
    using T = decltype(tag);
    const int threads = backward_threads<T>(h);
    return forward_shape<T>(h).threads != 0 && backward_exact<T>(h, threads, backward_strips<T>(h, threads));
  };
  if (dtype == kF32) return both_exact(float{});
  if (dtype == kBF16) return both_exact(__nv_bfloat16{});
  if (dtype == kF16) return both_exact(__half{});
  return false;
}

}  // namespace megahost::sdk::kernels
