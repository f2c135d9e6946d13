// megahost SDK — the per-head norm of q and k (Megatron's --qk-layernorm) and the rotary
// embedding in one pass (see fused_kernels.h). Memory-bound: a row is one head's d values, read
// once at its strides in the fused q/k/v projection's layout and written once, rotated.
//
// A row is held by L lanes of a warp, V elements (16 bytes) each: d = L * V, L a power of two.
// Its sums are taken over those L lanes by shuffles, and the rotation's partner values (d/2
// apart) come from the lane rot/(2V) away. (As separate passes, the copy of the strided head, the
// norm and the rotation each read and wrote the whole of q and k.)
#include <algorithm>

#include "fused_common.cuh"
#include "fused_kernels.h"

namespace megahost::sdk::kernels {

namespace {

constexpr int kThreads = 256;
constexpr unsigned kFullMask = 0xffffffffu;

// Sum over the L lanes of a row (L-aligned groups of a warp; every lane of the warp takes part).
template <int L>
__device__ __forceinline__ float row_sum(float v) {
#pragma unroll
  for (int o = L / 2; o > 0; o >>= 1) v += __shfl_xor_sync(kFullMask, v, o);
  return v;
}

// Where one block works: the sequence position blockIdx.x, and its rows [first, last) of the
// b * n rows there (gridDim.y blocks share a position when the sequence alone is too short to
// fill the device).
struct RowRange {
  int first, last;
};
__device__ __forceinline__ RowRange block_rows(int rows) {
  const int blocks = static_cast<int>(gridDim.y);
  const int per_block = (rows + blocks - 1) / blocks;
  const int first = static_cast<int>(blockIdx.y) * per_block;
  return {first, min(rows, first + per_block)};
}

__device__ __forceinline__ int64_t row_offset(const RotaryShape& a, int64_t si, int row) {
  const int n2 = static_cast<int>(a.n2), n = static_cast<int>(a.n1) * n2;
  const int bi = row / n, hi = row - bi * n;
  return si * a.stride_s + bi * a.stride_b + (hi / n2) * a.stride_n1 + (hi % n2) * a.stride_n2;
}

// cos and sin of this position's rot/2 angles into shared memory (sin times sign: -1 rotates
// back). sincosf, not the fast intrinsics: positions reach thousands of radians.
__device__ __forceinline__ void angle_table(const float* angles, int64_t rot, int64_t si, float sign, float* table) {
  const int half = static_cast<int>(rot / 2);
  for (int j = threadIdx.x; j < half; j += blockDim.x) {
    float sn, cs;
    sincosf(angles[si * rot + j], &sn, &cs);
    table[j] = cs;
    table[half + j] = sign * sn;
  }
}

// This lane's part in the rotation: its V angles' cos / sin, the lane holding its partner, and
// whether it leads (first half: x1 cos - x2 sin) or follows (second half: x2 cos + x1 sin).
template <int V>
struct Rotation {
  bool rotates = false, leads = false;
  int partner = 0;  // lane in the warp
  float cs[V], sn[V];
  __device__ __forceinline__ void setup(const float* table, int rot, int lane, int row_lane) {
    const int half = rot / 2, lanes_per_half = half / V, c = row_lane * V;
    rotates = row_lane < 2 * lanes_per_half;
    leads = row_lane < lanes_per_half;
    partner = !rotates ? lane : (leads ? lane + lanes_per_half : lane - lanes_per_half);
    const int j0 = leads ? c : c - half;
#pragma unroll
    for (int k = 0; k < V; ++k) {
      cs[k] = rotates ? table[j0 + k] : 1.0f;
      sn[k] = rotates ? table[half + j0 + k] : 0.0f;
    }
  }
  // v rotated with its partner's values (every lane of the warp must call this).
  __device__ __forceinline__ void apply(float (&v)[V]) const {
    float other[V];
#pragma unroll
    for (int k = 0; k < V; ++k) other[k] = __shfl_sync(kFullMask, v[k], partner);
#pragma unroll
    for (int k = 0; k < V; ++k) v[k] = leads ? v[k] * cs[k] - other[k] * sn[k] : v[k] * cs[k] + other[k] * sn[k];
  }
};

template <typename T, int L>
__global__ void __launch_bounds__(kThreads) mh_head_norm_rotary_forward_kernel(
    const T* __restrict__ t, RotaryShape a, const T* __restrict__ weight, const T* __restrict__ bias,
    const float* __restrict__ angles, float eps, bool rms, T* __restrict__ out, float* __restrict__ mean_out,
    float* __restrict__ rstd_out) {
  constexpr int V = Vec<T>::kSize, D = L * V;
  extern __shared__ float table[];  // cos [rot/2], then sin [rot/2]
  const int64_t si = blockIdx.x;
  const int rot = static_cast<int>(a.rot);
  angle_table(angles, rot, si, 1.0f, table);
  __syncthreads();
  const int lane = threadIdx.x & 31, row_lane = threadIdx.x % L, group = threadIdx.x / L, groups = blockDim.x / L;
  Rotation<V> rotation;
  rotation.setup(table, rot, lane, row_lane);
  const int c = row_lane * V;
  float w[V], b[V] = {};
  unpack(load_vec(weight + c), w);
  if (!rms) unpack(load_vec(bias + c), b);
  const int rows = static_cast<int>(a.b * a.n1 * a.n2);
  const RowRange range = block_rows(rows);
  // The loop runs alike in every lane of a warp (its shuffles need them all): a group past the
  // last row computes on zeros and stores nothing.
  for (int base = range.first; base < range.last; base += groups) {
    const int row = base + group;
    const bool active = row < range.last;
    float x[V] = {};
    if (active) unpack(load_vec(t + row_offset(a, si, row) + c), x);
    float mean = 0.0f;
    if (!rms) {
      float sum = 0.0f;
#pragma unroll
      for (int k = 0; k < V; ++k) sum += x[k];
      mean = row_sum<L>(sum) * (1.0f / D);
    }
    float sq = 0.0f;
#pragma unroll
    for (int k = 0; k < V; ++k) sq += (x[k] - mean) * (x[k] - mean);
    const float rstd = rsqrtf(row_sum<L>(sq) * (1.0f / D) + eps);
#pragma unroll
    for (int k = 0; k < V; ++k) x[k] = (x[k] - mean) * rstd * w[k] + (rms ? 0.0f : b[k]);
    if (rot > 0) rotation.apply(x);
    if (!active) continue;
    const int64_t out_row = si * rows + row;
    Vec<T> y;
#pragma unroll
    for (int k = 0; k < V; ++k) y.v[k] = from_f32<T>(x[k]);
    store_vec(out + out_row * D + c, y);
    if (row_lane == 0) {
      rstd_out[out_row] = rstd;
      if (!rms) mean_out[out_row] = mean;
    }
  }
}

// The backward: the output's gradient rotated back, then the norm's backward per row; each block
// writes its column sums of dweight (and dbias) as one row of the partial sums, summed over its
// groups in a fixed order (deterministic).
template <typename T, int L>
__global__ void __launch_bounds__(kThreads) mh_head_norm_rotary_backward_kernel(
    const T* __restrict__ dout, RotaryShape ga, const T* __restrict__ t, RotaryShape a, const T* __restrict__ weight,
    const float* __restrict__ angles, const float* __restrict__ mean_in, const float* __restrict__ rstd_in, bool rms,
    T* __restrict__ dt, float* __restrict__ dweight_partial, float* __restrict__ dbias_partial) {
  constexpr int V = Vec<T>::kSize, D = L * V;
  constexpr int kGroups = kThreads / L;
  extern __shared__ float shared[];
  const int rot = static_cast<int>(a.rot);
  float* table = shared;                     // [rot]
  float* dw_rows = shared + ((rot + 3) & ~3);  // [groups][D], 16-byte aligned
  float* db_rows = dw_rows + kGroups * D;      // [groups][D] (LayerNorm)
  const int64_t si = blockIdx.x;
  angle_table(angles, rot, si, -1.0f, table);
  __syncthreads();
  const int lane = threadIdx.x & 31, row_lane = threadIdx.x % L, group = threadIdx.x / L;
  Rotation<V> rotation;
  rotation.setup(table, rot, lane, row_lane);
  const int c = row_lane * V;
  float w[V];
  unpack(load_vec(weight + c), w);
  float dw[V] = {}, db[V] = {};
  const int rows = static_cast<int>(a.b * a.n1 * a.n2);
  const RowRange range = block_rows(rows);
  for (int base = range.first; base < range.last; base += kGroups) {
    const int row = base + group;
    const bool active = row < range.last;
    float g[V] = {}, x[V] = {};
    if (active) {
      unpack(load_vec(dout + row_offset(ga, si, row) + c), g);
      unpack(load_vec(t + row_offset(a, si, row) + c), x);
    }
    if (rot > 0) rotation.apply(g);  // the gradient of the normed row
    const int64_t stat_row = si * rows + (active ? row : range.first);
    const float mean = rms ? 0.0f : mean_in[stat_row], rstd = rstd_in[stat_row];
    float dot = 0.0f, gsum = 0.0f;
#pragma unroll
    for (int k = 0; k < V; ++k) {
      x[k] = (x[k] - mean) * rstd;  // x hat
      dw[k] += g[k] * x[k];
      db[k] += g[k];
      g[k] *= w[k];
      dot += g[k] * x[k];
      gsum += g[k];
    }
    dot = row_sum<L>(dot) * (1.0f / D);
    gsum = rms ? 0.0f : row_sum<L>(gsum) * (1.0f / D);
    if (!active) continue;
    Vec<T> d;
#pragma unroll
    for (int k = 0; k < V; ++k) d.v[k] = from_f32<T>(rstd * (g[k] - gsum - x[k] * dot));
    store_vec(dt + (si * rows + row) * D + c, d);
  }
#pragma unroll
  for (int k = 0; k < V; ++k) {
    dw_rows[group * D + c + k] = dw[k];
    if (!rms) db_rows[group * D + c + k] = db[k];
  }
  __syncthreads();
  const int64_t partial_row = static_cast<int64_t>(blockIdx.x) * gridDim.y + blockIdx.y;
  for (int col = threadIdx.x; col < D; col += blockDim.x) {
    float sw = 0.0f, sb = 0.0f;
    for (int gi = 0; gi < kGroups; ++gi) {
      sw += dw_rows[gi * D + col];
      if (!rms) sb += db_rows[gi * D + col];
    }
    dweight_partial[partial_row * D + col] = sw;
    if (!rms) dbias_partial[partial_row * D + col] = sb;
  }
}

// Lanes per row for rows of d elements of T (V per lane), or 0 when the kernels do not take d.
template <typename T>
int lanes_per_row(int64_t d) {
  constexpr int64_t V = Vec<T>::kSize;
  if (d % V != 0) return 0;
  const int64_t lanes = d / V;
  return lanes >= 1 && lanes <= 32 && (lanes & (lanes - 1)) == 0 ? static_cast<int>(lanes) : 0;
}

// Blocks sharing one position: enough blocks overall for a few waves of the device's SMs.
unsigned blocks_per_position(int64_t s, int64_t rows, int lanes) {
  constexpr int64_t kWantBlocks = 132 * 4;
  const int64_t groups = kThreads / lanes, most = (rows + groups - 1) / groups;
  const int64_t want = (kWantBlocks + s - 1) / s;
  return static_cast<unsigned>(std::max<int64_t>(1, std::min(want, most)));
}

// A block per position, and as many per position as blocks_per_position says.
dim3 grid_of(const RotaryShape& shape, int lanes) {
  return dim3(static_cast<unsigned>(shape.s), blocks_per_position(shape.s, shape.b * shape.n1 * shape.n2, lanes));
}

template <typename F>
int with_lanes(int lanes, F&& launch) {
  switch (lanes) {
    case 1: return launch(std::integral_constant<int, 1>{});
    case 2: return launch(std::integral_constant<int, 2>{});
    case 4: return launch(std::integral_constant<int, 4>{});
    case 8: return launch(std::integral_constant<int, 8>{});
    case 16: return launch(std::integral_constant<int, 16>{});
    case 32: return launch(std::integral_constant<int, 32>{});
    default: return static_cast<int>(cudaErrorInvalidValue);
  }
}

}  // namespace

bool head_norm_supported(int dtype, const RotaryShape& shape, std::initializer_list<const void*> ptrs) {
  const int64_t vec = dtype == kF32 ? 4 : 8;  // elements per 16 bytes
  const int64_t lanes = shape.d % vec == 0 ? shape.d / vec : 0;
  if (lanes < 1 || lanes > 32 || (lanes & (lanes - 1)) != 0 || shape.rot < 0 || shape.rot > shape.d || shape.rot % (2 * vec) != 0) return false;
  for (int64_t stride : {shape.stride_s, shape.stride_b, shape.stride_n1, shape.stride_n2})
    if (stride % vec != 0) return false;
  for (const void* p : ptrs)
    if (p != nullptr && reinterpret_cast<uintptr_t>(p) % 16 != 0) return false;
  return shape.s * shape.b * shape.n1 * shape.n2 < (int64_t{1} << 31) && shape.b * shape.n1 * shape.n2 < (1 << 30);
}

int64_t head_norm_backward_blocks(int dtype, const RotaryShape& shape) {
  const dim3 grid = grid_of(shape, static_cast<int>(shape.d / (dtype == kF32 ? 4 : 8)));
  return static_cast<int64_t>(grid.x) * grid.y;
}

int head_norm_rotary_forward(int dtype, bool rms, const void* t, const RotaryShape& shape, const void* weight,
                             const void* bias, const float* angles, float eps, void* out, float* mean, float* rstd,
                             void* stream) {
  return dispatch_dtype(dtype, [&](auto tag) -> cudaError_t {
    using T = decltype(tag);
    const int lanes = lanes_per_row<T>(shape.d);
    const dim3 grid = grid_of(shape, lanes);
    const size_t smem = static_cast<size_t>(shape.rot) * sizeof(float);
    return static_cast<cudaError_t>(with_lanes(lanes, [&](auto l) {
      mh_head_norm_rotary_forward_kernel<T, decltype(l)::value><<<grid, kThreads, smem, as_stream(stream)>>>(
          static_cast<const T*>(t), shape, static_cast<const T*>(weight), static_cast<const T*>(bias), angles, eps,
          rms, static_cast<T*>(out), mean, rstd);
      return 0;
    }));
  });
}

int head_norm_rotary_backward(int dtype, bool rms, const void* dout, const RotaryShape& dout_shape, const void* t,
                              const RotaryShape& shape, const void* weight, const float* angles, const float* mean,
                              const float* rstd, void* dt, float* dweight_partial, float* dbias_partial,
                              void* stream) {
  return dispatch_dtype(dtype, [&](auto tag) -> cudaError_t {
    using T = decltype(tag);
    const int lanes = lanes_per_row<T>(shape.d);
    const dim3 grid = grid_of(shape, lanes);
    const size_t table = static_cast<size_t>((shape.rot + 3) & ~int64_t{3});
    const size_t smem = (table + 2 * static_cast<size_t>(kThreads) * Vec<T>::kSize) * sizeof(float);
    return static_cast<cudaError_t>(with_lanes(lanes, [&](auto l) {
      mh_head_norm_rotary_backward_kernel<T, decltype(l)::value><<<grid, kThreads, smem, as_stream(stream)>>>(
          static_cast<const T*>(dout), dout_shape, static_cast<const T*>(t), shape, static_cast<const T*>(weight),
          angles, mean, rstd, rms, static_cast<T*>(dt), dweight_partial, dbias_partial);
      return 0;
    }));
  });
}

}  // namespace megahost::sdk::kernels
