// megahost SDK — the backward of a linear layer whose output is split into parts (q / k / v of
// attention): the parts' gradients packed back into the layer's output gradient, and the bias
// gradient's per-block column sums taken in the same pass. Replaces torch's cat (the backward of
// the split) and cuBLASLt's bias-gradient epilogue kernels on the weight-gradient GEMM. Without
// an output, the column sums of one matrix alone (fc1's bias gradient after the DGELU epilogue).
#include "fused_common.cuh"
#include "fused_kernels.h"

namespace megahost::sdk::kernels {

namespace {

constexpr int kThreads = 256;

struct Parts {
  SplitPart part[kMaxSplitParts];
  int count;
};

// A thread owns the same S vectors of every row: where each comes from is worked out once.
template <typename T, int S>
__global__ void __launch_bounds__(kThreads, 2)
    mh_pack_split_grads_kernel(Parts parts, int64_t rows, int64_t groups, int64_t width, T* __restrict__ dy,
                               float* __restrict__ partial) {
  constexpr int V = Vec<T>::kSize;
  const int64_t n = groups * width;
  const T* src[S];
  int64_t src_off[S], row_stride[S], col[S];
  float sum[S][V];
#pragma unroll
  for (int s = 0; s < S; ++s) {
    col[s] = (static_cast<int64_t>(s) * blockDim.x + threadIdx.x) * V;
    src[s] = nullptr, src_off[s] = 0, row_stride[s] = 0;
    if (col[s] < n) {
      const int64_t g = col[s] / width;
      int64_t o = col[s] - g * width;
      for (int p = 0; p < parts.count; ++p) {
        if (o < parts.part[p].size) {
          src[s] = static_cast<const T*>(parts.part[p].src);
          src_off[s] = g * parts.part[p].group_stride + o;
          row_stride[s] = parts.part[p].row_stride;
          break;
        }
        o -= parts.part[p].size;
      }
    }
#pragma unroll
    for (int k = 0; k < V; ++k) sum[s][k] = 0.0f;
  }
  // Two rows per step, all their loads in flight before the first store (one row's three 16-byte
  // loads per thread left the copy at ~2.5 TB/s on the H200).
  for (int64_t r0 = blockIdx.x; r0 < rows; r0 += 2 * static_cast<int64_t>(gridDim.x)) {
    const int64_t rr[2] = {r0, r0 + gridDim.x};
    Vec<T> v[2][S];
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
      for (int s = 0; s < S; ++s) {
        if (col[s] >= n || rr[i] >= rows) continue;
        if (src[s] != nullptr) {
          v[i][s] = load_vec(src[s] + rr[i] * row_stride[s] + src_off[s]);
        } else {
#pragma unroll
          for (int k = 0; k < V; ++k) v[i][s].v[k] = from_f32<T>(0.0f);  // a part nobody used
        }
      }
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
      for (int s = 0; s < S; ++s) {
        if (col[s] >= n || rr[i] >= rows) continue;
        if (dy != nullptr) store_vec(dy + rr[i] * n + col[s], v[i][s]);
        if (partial != nullptr)
#pragma unroll
          for (int k = 0; k < V; ++k) sum[s][k] += to_f32(v[i][s].v[k]);
      }
  }
  if (partial != nullptr) store_partial_row(partial, n, col, sum);
}

template <typename T>
using PackKernel = void (*)(Parts, int64_t, int64_t, int64_t, T*, float*);

template <typename T>
PackKernel<T> pack_kernel(int64_t n) {
  const int64_t strip = static_cast<int64_t>(kThreads) * Vec<T>::kSize, strips = (n + strip - 1) / strip;
  if (strips == 1) return mh_pack_split_grads_kernel<T, 1>;
  if (strips == 2) return mh_pack_split_grads_kernel<T, 2>;
  if (strips == 3) return mh_pack_split_grads_kernel<T, 3>;  // q / k / v of hidden 2048 in bf16
  if (strips == 4) return mh_pack_split_grads_kernel<T, 4>;
  if (strips <= 8) return mh_pack_split_grads_kernel<T, 8>;
  return nullptr;
}

template <typename T>
int64_t resident_blocks(int64_t n) {
  auto* kernel = pack_kernel<T>(n);
  int per_sm = 0, device = 0, sms = 0;
  if (kernel == nullptr || cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, 0) != cudaSuccess ||
      cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess || per_sm * sms <= 0) {
    cudaGetLastError();
    return 132 * 2;
  }
  return static_cast<int64_t>(per_sm) * sms;
}

}  // namespace

int64_t pack_split_grads_blocks(int dtype, int64_t rows, int64_t n) {
  int64_t cap = 132 * 2;
  if (dtype == kF32) cap = resident_blocks<float>(n);
  else if (dtype == kBF16) cap = resident_blocks<__nv_bfloat16>(n);
  else if (dtype == kF16) cap = resident_blocks<__half>(n);
  return rows < cap ? (rows > 0 ? rows : 1) : cap;
}

int pack_split_grads(int dtype, const SplitPart* parts, int n_parts, int64_t rows, int64_t groups, void* dy,
                     float* partial, int64_t blocks, void* stream) {
  if (n_parts <= 0 || n_parts > kMaxSplitParts || groups <= 0 || rows < 0 || blocks <= 0) return cudaErrorInvalidValue;
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
    if (reinterpret_cast<uintptr_t>(dy) % 16 != 0) return cudaErrorInvalidValue;
    if (dy == nullptr && (partial == nullptr || n_parts != 1)) return cudaErrorInvalidValue;  // sums of one matrix
    auto* kernel = pack_kernel<T>(groups * width);
    if (kernel == nullptr) return cudaErrorInvalidValue;  // rows wider than 8 strips: the caller cats
    kernel<<<static_cast<unsigned>(blocks), kThreads, 0, as_stream(stream)>>>(all, rows, groups, width,
                                                                             static_cast<T*>(dy), partial);
    return cudaSuccess;
  });
}

}  // namespace megahost::sdk::kernels
