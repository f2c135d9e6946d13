// megahost SDK — GPT's input embedding (see fused_kernels.h): the word and position lookups, their
// sum and the [b, s] -> [s, b] layout change in one pass; backward sums each table's rows per
// distinct id (ids sorted beforehand: a fixed order, so the sums are deterministic) and adds them
// straight into the table's gradient (the host's float32 main gradient). Replaces two gathers, an
// add and a transposing copy forward, and torch's dense embedding backward (a zeroed [V, h]
// buffer, sort, scatter) plus the adds into the main gradient backward.
#include "fused_common.cuh"
#include "fused_kernels.h"

namespace megahost::sdk::kernels {

namespace {

constexpr int kThreads = 256;

// One block per output row o = si * b + bi (token (bi, si) of ids [b, s]).
template <typename T>
__global__ void mh_embedding_forward_kernel(const T* __restrict__ word, const int64_t* __restrict__ ids,
                                            const T* __restrict__ pos, const int64_t* __restrict__ pos_ids,
                                            T* __restrict__ out, int64_t b, int64_t s, int64_t h) {
  constexpr int V = Vec<T>::kSize;
  const int64_t o = blockIdx.x, si = o / b, bi = o - si * b, token = bi * s + si;
  const T* w = word + ids[token] * h;
  const T* p = pos != nullptr ? pos + pos_ids[token] * h : nullptr;
  for (int64_t c = threadIdx.x * V; c < h; c += blockDim.x * V) {
    const Vec<T> wv = load_vec(w + c);
    Vec<T> r = wv;
    if (p != nullptr) {
      const Vec<T> pv = load_vec(p + c);
#pragma unroll
      for (int k = 0; k < V; ++k) r.v[k] = from_f32<T>(to_f32(wv.v[k]) + to_f32(pv.v[k]));
    }
    store_vec(out + o * h + c, r);
  }
}

template <typename G>
__device__ __forceinline__ void add_to(G* g, float v) {
  *g = from_f32<G>(to_f32(*g) + v);
}

// One block per sorted position j; the first of each run of equal ids sums the run's rows of dy
// (in sorted order: order[k] is the token, bi * s + si) and adds the sum to grad[id]. Rows are
// read four at a time (a frequent token's run is hundreds of rows long) and added in run order.
template <typename T, typename G>
__global__ void mh_embedding_backward_kernel(const T* __restrict__ dy, const int64_t* __restrict__ sorted_ids,
                                             const int64_t* __restrict__ order, G* __restrict__ grad, int64_t n,
                                             int64_t b, int64_t s, int64_t h) {
  constexpr int V = Vec<T>::kSize, kUnroll = 4;
  const int64_t j = blockIdx.x;
  const int64_t id = sorted_ids[j];
  if (j > 0 && sorted_ids[j - 1] == id) return;  // not the first of its run
  int64_t end = j + 1;
  while (end < n && sorted_ids[end] == id) ++end;
  auto row = [&](int64_t k) {
    const int64_t token = order[k], bi = token / s, si = token - bi * s;
    return dy + (si * b + bi) * h;
  };
  for (int64_t c = threadIdx.x * V; c < h; c += blockDim.x * V) {
    float acc[V] = {};
    int64_t k = j;
    for (; k + kUnroll <= end; k += kUnroll) {
      Vec<T> v[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) v[u] = load_vec(row(k + u) + c);
#pragma unroll
      for (int u = 0; u < kUnroll; ++u)
#pragma unroll
        for (int e = 0; e < V; ++e) acc[e] += to_f32(v[u].v[e]);
    }
    for (; k < end; ++k) {
      const Vec<T> v = load_vec(row(k) + c);
#pragma unroll
      for (int e = 0; e < V; ++e) acc[e] += to_f32(v.v[e]);
    }
#pragma unroll
    for (int e = 0; e < V; ++e) add_to(grad + id * h + c + e, acc[e]);
  }
}

}  // namespace

int embedding_forward(int dtype, const void* word, const int64_t* ids, const void* pos, const int64_t* pos_ids,
                      void* out, int64_t b, int64_t s, int64_t h, void* stream) {
  if (b <= 0 || s <= 0) return cudaSuccess;
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    if (!vec_ok<T>(h, {word, pos, out})) return cudaErrorInvalidValue;
    mh_embedding_forward_kernel<T><<<static_cast<unsigned>(b * s), kThreads, 0, as_stream(stream)>>>(
        static_cast<const T*>(word), ids, static_cast<const T*>(pos), pos_ids, static_cast<T*>(out), b, s, h);
    return cudaSuccess;
  });
}

int embedding_backward(int dtype, const void* dy, const int64_t* sorted_ids, const int64_t* order, void* grad,
                       int grad_dtype, int64_t b, int64_t s, int64_t h, void* stream) {
  const int64_t n = b * s;
  if (n <= 0) return cudaSuccess;
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    if (!vec_ok<T>(h, {dy})) return cudaErrorInvalidValue;
    const unsigned blocks = static_cast<unsigned>(n);
    auto stream_ = as_stream(stream);
    switch (grad_dtype) {
      case kF32:
        mh_embedding_backward_kernel<T, float><<<blocks, kThreads, 0, stream_>>>(
            static_cast<const T*>(dy), sorted_ids, order, static_cast<float*>(grad), n, b, s, h);
        break;
      case kBF16:
        mh_embedding_backward_kernel<T, __nv_bfloat16><<<blocks, kThreads, 0, stream_>>>(
            static_cast<const T*>(dy), sorted_ids, order, static_cast<__nv_bfloat16*>(grad), n, b, s, h);
        break;
      case kF16:
        mh_embedding_backward_kernel<T, __half><<<blocks, kThreads, 0, stream_>>>(
            static_cast<const T*>(dy), sorted_ids, order, static_cast<__half*>(grad), n, b, s, h);
        break;
      default:
        return cudaErrorInvalidValue;
    }
    return cudaSuccess;
  });
}

}  // namespace megahost::sdk::kernels
