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

// The backward sums each run of equal ids in pieces of at most kPiece rows, so that a frequent
// id's run (hundreds of rows: "the", ",", padding) is summed by many blocks: one block per run
// made that run's block the kernel's tail (Nsight Compute: 454 us for GPT-1.3B's word table of
// 16,384 English tokens, whose rows take ~30 us to read).
// Pass 1, one block per sorted position j (most return at once): j heads a piece when a run
// starts there or when j is a multiple of kPiece inside a run. The piece ends at the run's end or
// the next multiple of kPiece. A run that fits one piece is added to grad[id] here; the pieces of
// a longer run are stored: at slot j / kPiece (a piece starting on a multiple) or, for the first
// piece of a run starting elsewhere, at slot pieces_total + j / kPiece.
// Pass 2, one block per (multiple of kPiece, column strip): where a longer run starts in that
// stretch of kPiece positions, its pieces are added in order and the sum goes to grad[id].
// A fixed order throughout: deterministic.
constexpr int kPiece = 32, kRowsInFlight = 4;

template <typename T, typename G>
__global__ void __launch_bounds__(kThreads)
    mh_embedding_backward_pieces_kernel(const T* __restrict__ dy, const int64_t* __restrict__ sorted_ids,
                                        const int64_t* __restrict__ order, G* __restrict__ grad,
                                        float* __restrict__ pieces, int64_t n, int64_t b, int64_t s, int64_t h) {
  constexpr int V = Vec<T>::kSize;
  const int64_t j = blockIdx.x, id = sorted_ids[j];
  const bool run_start = j == 0 || sorted_ids[j - 1] != id;
  if (!run_start && j % kPiece != 0) return;
  const int64_t limit = (j / kPiece + 1) * kPiece < n ? (j / kPiece + 1) * kPiece : n;
  int64_t end = j + 1;
  while (end < limit && sorted_ids[end] == id) ++end;
  const bool whole = run_start && (end == n || sorted_ids[end] != id);
  const int64_t slots = (n + kPiece - 1) / kPiece;
  float* piece = pieces + (j % kPiece == 0 ? j / kPiece : slots + j / kPiece) * h;
  auto row = [&](int64_t k) {
    const int64_t token = order[k], bi = token / s, si = token - bi * s;
    return dy + (si * b + bi) * h;
  };
  for (int64_t c = threadIdx.x * V; c < h; c += blockDim.x * V) {
    float acc[V] = {};
    int64_t k = j;
    for (; k + kRowsInFlight <= end; k += kRowsInFlight) {
      Vec<T> v[kRowsInFlight];
#pragma unroll
      for (int u = 0; u < kRowsInFlight; ++u) v[u] = load_vec(row(k + u) + c);
#pragma unroll
      for (int u = 0; u < kRowsInFlight; ++u)
#pragma unroll
        for (int e = 0; e < V; ++e) acc[e] += to_f32(v[u].v[e]);
    }
    for (; k < end; ++k) {
      const Vec<T> v = load_vec(row(k) + c);
#pragma unroll
      for (int e = 0; e < V; ++e) acc[e] += to_f32(v.v[e]);
    }
    if (whole) {
#pragma unroll
      for (int e = 0; e < V; ++e) add_to(grad + id * h + c + e, acc[e]);
    } else {
#pragma unroll
      for (int e = 0; e < V; ++e) piece[c + e] = acc[e];
    }
  }
}

template <typename G>
__global__ void __launch_bounds__(kThreads)
    mh_embedding_backward_runs_kernel(const int64_t* __restrict__ sorted_ids, const float* __restrict__ pieces,
                                      G* __restrict__ grad, int64_t n, int64_t h) {
  const int64_t slots = (n + kPiece - 1) / kPiece, first = blockIdx.x * kPiece;
  const int64_t last = first + kPiece < n ? first + kPiece : n;
  if (last >= n) return;  // a run starting in the last stretch ends there: a whole run
  // A run longer than its piece starts in [first, last) only as the run of position last - 1
  // that goes on past `last`.
  const int64_t id = sorted_ids[last - 1];
  if (sorted_ids[last] != id) return;
  int64_t start = last - 1;
  while (start > first && sorted_ids[start - 1] == id) --start;
  if (start == first && first > 0 && sorted_ids[first - 1] == id) return;  // it began in an earlier stretch
  const int64_t head = start % kPiece == 0 ? start / kPiece : slots + start / kPiece;
  // The run's later pieces: slots blockIdx.x + 1 .. stop - 1, the stretches starting inside it
  // (a prefix of the later ones, as the ids are sorted: found by bisection).
  int64_t lo = blockIdx.x + 1, stop = slots;
  while (lo < stop) {
    const int64_t mid = (lo + stop) / 2;
    if (sorted_ids[mid * kPiece] == id) lo = mid + 1;
    else stop = mid;
  }
  const int64_t c = static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x;
  if (c >= h) return;
  float acc = pieces[head * h + c];
#pragma unroll 8
  for (int64_t p = blockIdx.x + 1; p < stop; ++p) acc += pieces[p * h + c];
  add_to(grad + id * h + c, acc);
}

template <typename T, typename G>
void launch_embedding_backward(const T* dy, const int64_t* sorted_ids, const int64_t* order, G* grad, float* pieces,
                               int64_t n, int64_t b, int64_t s, int64_t h, cudaStream_t stream) {
  mh_embedding_backward_pieces_kernel<T, G><<<static_cast<unsigned>(n), kThreads, 0, stream>>>(
      dy, sorted_ids, order, grad, pieces, n, b, s, h);
  const int64_t slots = (n + kPiece - 1) / kPiece;
  if (slots > 1) {
    const dim3 grid(static_cast<unsigned>(slots), static_cast<unsigned>((h + kThreads - 1) / kThreads));
    mh_embedding_backward_runs_kernel<G><<<grid, kThreads, 0, stream>>>(sorted_ids, pieces, grad, n, h);
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

int64_t embedding_backward_scratch_floats(int64_t b, int64_t s, int64_t h) {
  return (b * s + kPiece - 1) / kPiece * 2 * h;
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
