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

// The backward in two passes over segments of kSegment sorted positions, so that a frequent id's
// run (hundreds of rows: "the", ",", padding) is summed by many blocks. One block per run of equal
// ids made that run's block the kernel's tail: Nsight Compute measured 454 us for GPT-1.3B's word
// table (16,384 tokens of English) while the whole table's rows take ~30 us to read.
// Pass 1, one block per segment: each piece of a run inside the segment is summed in sorted order
// (rows loaded kRowsInFlight at a time, whatever the run boundaries) and either added to
// grad[id] (the run lies inside the segment) or stored as the segment's piece 0 (the run began in
// an earlier segment) or piece 1 (the run begins here and goes on past the segment).
// Pass 2, one block per segment whose last run goes on past it: that run's pieces summed in
// segment order and added to grad[id]. A fixed order throughout: deterministic.
constexpr int kSegment = 32, kRowsInFlight = 8;

template <typename T, typename G>
__global__ void __launch_bounds__(kThreads)
    mh_embedding_backward_segments_kernel(const T* __restrict__ dy, const int64_t* __restrict__ sorted_ids,
                                          const int64_t* __restrict__ order, G* __restrict__ grad,
                                          float* __restrict__ pieces, int64_t n, int64_t b, int64_t s, int64_t h) {
  constexpr int V = Vec<T>::kSize;
  const int64_t seg = blockIdx.x, first = seg * kSegment, last = first + kSegment < n ? first + kSegment : n;
  const bool from_before = first > 0 && sorted_ids[first - 1] == sorted_ids[first];
  const bool goes_past = last < n && sorted_ids[last] == sorted_ids[last - 1];
  auto row = [&](int64_t k) {
    const int64_t token = order[k], bi = token / s, si = token - bi * s;
    return dy + (si * b + bi) * h;
  };
  for (int64_t c = threadIdx.x * V; c < h; c += blockDim.x * V) {
    float acc[V] = {};
    int64_t piece_first = first;  // the first row of the piece being summed
    for (int64_t k0 = first; k0 < last; k0 += kRowsInFlight) {
      Vec<T> v[kRowsInFlight];
#pragma unroll
      for (int u = 0; u < kRowsInFlight; ++u)
        if (k0 + u < last) v[u] = load_vec(row(k0 + u) + c);
#pragma unroll
      for (int u = 0; u < kRowsInFlight; ++u) {
        const int64_t k = k0 + u;
        if (k >= last) break;
#pragma unroll
        for (int e = 0; e < V; ++e) acc[e] += to_f32(v[u].v[e]);
        const int64_t id = sorted_ids[k];
        if (k + 1 < last && sorted_ids[k + 1] == id) continue;  // the piece goes on
        const bool starts_segment = piece_first == first;
        if (starts_segment && from_before) {  // piece 0: the rest of a run from an earlier segment
#pragma unroll
          for (int e = 0; e < V; ++e) pieces[(seg * 2) * h + c + e] = acc[e];
        } else if (k + 1 == last && goes_past) {  // the first piece of a run that goes on
          const int64_t slot = seg * 2 + (starts_segment ? 0 : 1);
#pragma unroll
          for (int e = 0; e < V; ++e) pieces[slot * h + c + e] = acc[e];
        } else {  // the whole run
#pragma unroll
          for (int e = 0; e < V; ++e) add_to(grad + id * h + c + e, acc[e]);
        }
#pragma unroll
        for (int e = 0; e < V; ++e) acc[e] = 0.0f;
        piece_first = k + 1;
      }
    }
  }
}

template <typename G>
__global__ void __launch_bounds__(kThreads)
    mh_embedding_backward_spans_kernel(const int64_t* __restrict__ sorted_ids, const float* __restrict__ pieces,
                                       G* __restrict__ grad, int64_t n, int64_t h, int64_t segments) {
  const int64_t seg = blockIdx.x, first = seg * kSegment, last = first + kSegment < n ? first + kSegment : n;
  if (last >= n) return;
  const int64_t id = sorted_ids[last - 1];
  if (sorted_ids[last] != id) return;                     // the segment's last run ends inside it
  if (first > 0 && sorted_ids[first - 1] == id) return;   // it began earlier: that segment's block sums it
  const int64_t slot = seg * 2 + (sorted_ids[first] == id ? 0 : 1);
  int64_t end = seg + 1;  // the run's pieces: `slot`, then piece 0 of segments seg + 1 .. end - 1
  while (end < segments && sorted_ids[end * kSegment] == id) ++end;
  for (int64_t c = threadIdx.x; c < h; c += blockDim.x) {
    float acc = pieces[slot * h + c];
#pragma unroll 4
    for (int64_t next = seg + 1; next < end; ++next) acc += pieces[(next * 2) * h + c];
    add_to(grad + id * h + c, acc);
  }
}

template <typename T, typename G>
void launch_embedding_backward(const T* dy, const int64_t* sorted_ids, const int64_t* order, G* grad, float* pieces,
                               int64_t n, int64_t b, int64_t s, int64_t h, cudaStream_t stream) {
  const int64_t segments = (n + kSegment - 1) / kSegment;
  mh_embedding_backward_segments_kernel<T, G><<<static_cast<unsigned>(segments), kThreads, 0, stream>>>(
      dy, sorted_ids, order, grad, pieces, n, b, s, h);
  if (segments > 1)
    mh_embedding_backward_spans_kernel<G><<<static_cast<unsigned>(segments), kThreads, 0, stream>>>(
        sorted_ids, pieces, grad, n, h, segments);
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

int64_t embedding_backward_scratch_floats(int64_t b, int64_t s, int64_t h) {
  return (b * s + kSegment - 1) / kSegment * 2 * h;
}

int embedding_backward(int dtype, const void* dy, const int64_t* sorted_ids, const int64_t* order, void* grad,
                       int grad_dtype, float* scratch, int64_t b, int64_t s, int64_t h, void* stream) {
  const int64_t n = b * s;
  if (n <= 0) return cudaSuccess;
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    if (!vec_ok<T>(h, {dy})) return cudaErrorInvalidValue;
    const T* d = static_cast<const T*>(dy);
    auto stream_ = as_stream(stream);
    switch (grad_dtype) {
      case kF32:
        launch_embedding_backward(d, sorted_ids, order, static_cast<float*>(grad), scratch, n, b, s, h, stream_);
        break;
      case kBF16:
        launch_embedding_backward(d, sorted_ids, order, static_cast<__nv_bfloat16*>(grad), scratch, n, b, s, h,
                                  stream_);
        break;
      case kF16:
        launch_embedding_backward(d, sorted_ids, order, static_cast<__half*>(grad), scratch, n, b, s, h, stream_);
        break;
      default:
        return cudaErrorInvalidValue;
    }
    return cudaSuccess;
  });
}

}  // namespace megahost::sdk::kernels
