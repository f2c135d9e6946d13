// megahost SDK — the backward of a linear layer whose output is split into parts (q / k / v of
// attention): the parts' gradients packed back into the layer's output gradient, and the bias
// gradient's per-block column sums taken in the same pass. Replaces torch's cat (the backward of
// the split) and cuBLASLt's bias-gradient epilogue kernels on the weight-gradient GEMM. Without
// an output, the column sums of one matrix alone (fc1's bias gradient after the DGELU epilogue).
#include "fused_common.cuh"
#include "fused_kernels.h"

#include <cstdlib>
#include <string>

namespace megahost::sdk::kernels {

namespace {

constexpr int kThreads = 256;
constexpr int kRowsInFlight = 4;

// sum[k] += v[k] in float32. bf16 pairs are unpacked from their 32-bit words by a shift and a
// mask, which keeps each pair in one register (one conversion per element held the q/k/v pack's
// eight rows in flight at 112 registers, against 76 for fp16).
template <typename T>
__device__ __forceinline__ void accumulate(float (&sum)[Vec<T>::kSize], const Vec<T>& v) {
#pragma unroll
  for (int k = 0; k < Vec<T>::kSize; ++k) sum[k] += to_f32(v.v[k]);
}
__device__ __forceinline__ void accumulate(float (&sum)[8], const Vec<__nv_bfloat16>& v) {
  const uint4 u = *reinterpret_cast<const uint4*>(&v);
  const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    sum[2 * i] += __uint_as_float(w[i] << 16);
    sum[2 * i + 1] += __uint_as_float(w[i] & 0xFFFF0000u);
  }
}

struct Parts {
  SplitPart part[kMaxSplitParts];
  int count;
};

// Block (x, y) owns the strip of columns [x, x + 1) * blockDim * V and the rows y, y + gridDim.y,
// ...: a thread copies one 16-byte vector per row and keeps its column sums in registers, with
// kRowsInFlight rows' loads issued before the first store. Few registers, so many blocks per SM
// and many loads in flight (a block owning whole rows, 3-4 vectors per thread per row, needed
// ~128 registers and moved 1.4-2.6 TB/s on the H200; eight rows in flight for the sums alone
// needed 116 and ran slower: 3.7 against 2.1 ms/iter).
template <typename T>
__global__ void __launch_bounds__(kThreads, 3)
    mh_pack_split_grads_kernel(Parts parts, int64_t rows, int64_t groups, int64_t width, T* __restrict__ dy,
                               float* __restrict__ partial) {
  constexpr int V = Vec<T>::kSize;
  const int64_t n = groups * width;
  const int64_t col = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) * V;
  if (col >= n) return;
  // Where this column comes from: part p, group g, offset o inside the part.
  const T* src = nullptr;
  int64_t src_off = 0, row_stride = 0;
  {
    const int64_t g = col / width;
    int64_t o = col - g * width;
    for (int p = 0; p < parts.count; ++p) {
      if (o < parts.part[p].size) {
        src = static_cast<const T*>(parts.part[p].src);
        src_off = g * parts.part[p].group_stride + o;
        row_stride = parts.part[p].row_stride;
        break;
      }
      o -= parts.part[p].size;
    }
  }
  float sum[V];
#pragma unroll
  for (int k = 0; k < V; ++k) sum[k] = 0.0f;
  const int64_t step = gridDim.y;
  auto load4 = [&](Vec<T> (&v)[kRowsInFlight], int64_t r0) {
#pragma unroll
    for (int i = 0; i < kRowsInFlight; ++i) {
      const int64_t r = r0 + i * step;
      if (r < rows && src != nullptr) {
        v[i] = load_vec(src + r * row_stride + src_off);
      } else {
        v[i] = Vec<T>{};  // zero bits: past the end, or a part nobody used
      }
    }
  };
  auto store4 = [&](const Vec<T> (&v)[kRowsInFlight], int64_t r0) {
#pragma unroll
    for (int i = 0; i < kRowsInFlight; ++i) {
      const int64_t r = r0 + i * step;
      if (r >= rows) continue;
      if (dy != nullptr) store_vec(dy + r * n + col, v[i]);
      if (partial != nullptr) accumulate(sum, v[i]);
    }
  };
  // Software-pipelined as the column sums below: the next four rows' loads are in flight while
  // the current four are stored (Nsight Compute: loading and storing in turns moved 3.4 TB/s,
  // 81% of the warps' stalls waiting on loads).
  Vec<T> a[kRowsInFlight], b[kRowsInFlight];
  load4(a, blockIdx.y);
  for (int64_t r0 = blockIdx.y; r0 < rows; r0 += 2 * kRowsInFlight * step) {
    load4(b, r0 + kRowsInFlight * step);
    store4(a, r0);
    load4(a, r0 + 2 * kRowsInFlight * step);
    store4(b, r0 + kRowsInFlight * step);
  }
  if (partial != nullptr) {
    float4* out = reinterpret_cast<float4*>(partial + blockIdx.y * n + col);  // V floats: 16-byte aligned
#pragma unroll
    for (int k = 0; k < V; k += 4) out[k / 4] = make_float4(sum[k], sum[k + 1], sum[k + 2], sum[k + 3]);
  }
}

// The column sums of one matrix alone (no packing: fc1's bias gradient after the DGELU
// epilogue), software-pipelined: a thread's next four rows are in flight while it adds the
// current four, so its loads never drain between batches. Same grid and partial rows as above.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    mh_column_partial_sums_kernel(const T* __restrict__ src, int64_t row_stride, int64_t rows, int64_t n,
                                  float* __restrict__ partial) {
  constexpr int V = Vec<T>::kSize;
  const int64_t col = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) * V;
  if (col >= n) return;
  const int64_t step = gridDim.y;
  auto load4 = [&](Vec<T> (&v)[kRowsInFlight], int64_t r0) {
#pragma unroll
    for (int i = 0; i < kRowsInFlight; ++i) {
      const int64_t r = r0 + i * step;
      if (r < rows) {
        v[i] = load_vec(src + r * row_stride + col);
      } else {
#pragma unroll
        for (int k = 0; k < V; ++k) v[i].v[k] = from_f32<T>(0.0f);
      }
    }
  };
  float sum[V];
#pragma unroll
  for (int k = 0; k < V; ++k) sum[k] = 0.0f;
  auto add4 = [&](const Vec<T> (&v)[kRowsInFlight]) {
#pragma unroll
    for (int i = 0; i < kRowsInFlight; ++i)
#pragma unroll
      for (int k = 0; k < V; ++k) sum[k] += to_f32(v[i].v[k]);
  };
  Vec<T> a[kRowsInFlight], b[kRowsInFlight];
  load4(a, blockIdx.y);
  for (int64_t r0 = blockIdx.y; r0 < rows; r0 += 2 * kRowsInFlight * step) {
    load4(b, r0 + kRowsInFlight * step);
    add4(a);
    load4(a, r0 + 2 * kRowsInFlight * step);
    add4(b);
  }
  float4* out = reinterpret_cast<float4*>(partial + blockIdx.y * n + col);  // V floats: 16-byte aligned
#pragma unroll
  for (int k = 0; k < V; k += 4) out[k / 4] = make_float4(sum[k], sum[k + 1], sum[k + 2], sum[k + 3]);
}

// MEGAHOST_COLUMN_SUMS=previous: the sums of one matrix through the packing kernel (the A/B).
bool previous_column_sums() {
  static const bool on = [] {
    const char* v = std::getenv("MEGAHOST_COLUMN_SUMS");
    return v != nullptr && std::string(v) == "previous";
  }();
  return on;
}

int64_t column_strips(int64_t n, int v) {
  const int64_t strip = static_cast<int64_t>(kThreads) * v;
  return (n + strip - 1) / strip;
}

// Row groups (gridDim.y, the partial sums' rows): the blocks resident at once, over the strips.
template <typename T>
int64_t row_groups(int64_t n) {
  int per_sm = 0, device = 0, sms = 0;
  int64_t resident = 132 * 8;
  if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, mh_pack_split_grads_kernel<T>, kThreads, 0) ==
          cudaSuccess &&
      cudaGetDevice(&device) == cudaSuccess &&
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) == cudaSuccess && per_sm * sms > 0)
    resident = static_cast<int64_t>(per_sm) * sms;
  cudaGetLastError();
  const int64_t groups = resident / column_strips(n, Vec<T>::kSize);
  return groups > 0 ? groups : 1;
}

}  // namespace

int64_t pack_split_grads_blocks(int dtype, int64_t rows, int64_t n) {
  int64_t cap = 132;
  if (dtype == kF32) cap = row_groups<float>(n);
  else if (dtype == kBF16) cap = row_groups<__nv_bfloat16>(n);
  else if (dtype == kF16) cap = row_groups<__half>(n);
  return rows < cap ? (rows > 0 ? rows : 1) : cap;
}

int pack_split_grads(int dtype, const SplitPart* parts, int n_parts, int64_t rows, int64_t groups, void* dy,
                     float* partial, int64_t blocks, void* stream) {
  if (n_parts <= 0 || n_parts > kMaxSplitParts || groups <= 0 || rows < 0 || blocks <= 0 || blocks > 65535)
    return cudaErrorInvalidValue;
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    constexpr int V = Vec<T>::kSize;
    Parts all{};
    all.count = n_parts;
    int64_t width = 0;
    for (int p = 0; p < n_parts; ++p) {
      const SplitPart& s = parts[p];
      // Whole 16-byte vectors everywhere: sizes, strides and addresses.
      if (s.size <= 0 || s.size % V != 0 || s.row_stride % V != 0 || s.group_stride % V != 0)
        return cudaErrorInvalidValue;
      if (s.src != nullptr && reinterpret_cast<uintptr_t>(s.src) % 16 != 0) return cudaErrorInvalidValue;
      all.part[p] = s;
      width += s.size;
    }
    if (reinterpret_cast<uintptr_t>(dy) % 16 != 0 || reinterpret_cast<uintptr_t>(partial) % 16 != 0)
      return cudaErrorInvalidValue;
    if (dy == nullptr && (partial == nullptr || n_parts != 1)) return cudaErrorInvalidValue;  // sums of one matrix
    const dim3 grid(static_cast<unsigned>(column_strips(groups * width, V)), static_cast<unsigned>(blocks));
    if (dy == nullptr && all.part[0].src != nullptr && !previous_column_sums()) {
      mh_column_partial_sums_kernel<T><<<grid, kThreads, 0, as_stream(stream)>>>(
          static_cast<const T*>(all.part[0].src), all.part[0].row_stride, rows, groups * width, partial);
      return cudaSuccess;
    }
    mh_pack_split_grads_kernel<T><<<grid, kThreads, 0, as_stream(stream)>>>(all, rows, groups, width,
                                                                           static_cast<T*>(dy), partial);
    return cudaSuccess;
  });
}

}  // namespace megahost::sdk::kernels
