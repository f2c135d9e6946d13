// megahost SDK — the last step of every fused backward that sums columns (norm weight and bias,
// a folded bias, the MLP's fc1 bias): the per-block float32 partial rows summed and written, or
// added, straight into the parameter's gradient (the host's float32 main gradient). One launch
// for up to kMaxColumnSumJobs parameters; before, each was a torch sum, a cast and an add.
#include "fused_common.cuh"
#include "fused_kernels.h"

namespace megahost::sdk::kernels {

namespace {

constexpr int kCols = 32, kRowLanes = 8;  // a block: 32 columns x 8 row lanes

struct Jobs {
  ColumnSumJob job[kMaxColumnSumJobs];
};

template <typename T>
__device__ __forceinline__ void write_out(void* out, int64_t c, float v, bool accumulate) {
  T* o = static_cast<T*>(out) + c;
  *o = from_f32<T>(accumulate ? to_f32(*o) + v : v);
}

// grid (column tiles, jobs); each thread sums every kRowLanes-th row of one column, then the
// block adds its lanes in shared memory (fixed order: the result does not depend on timing).
__global__ void __launch_bounds__(kCols * kRowLanes) mh_column_sums_kernel(Jobs jobs, int64_t rows, int64_t n) {
  __shared__ float lanes[kRowLanes][kCols + 1];
  const ColumnSumJob& j = jobs.job[blockIdx.y];
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kCols + threadIdx.x;
  float s = 0.0f;
  if (c < n)
    for (int64_t r = threadIdx.y; r < rows; r += kRowLanes) s += j.partial[r * n + c];
  lanes[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y != 0 || c >= n) return;
  for (int l = 1; l < kRowLanes; ++l) s += lanes[l][threadIdx.x];
  switch (j.out_dtype) {
    case kF32: write_out<float>(j.out, c, s, j.accumulate != 0); break;
    case kBF16: write_out<__nv_bfloat16>(j.out, c, s, j.accumulate != 0); break;
    default: write_out<__half>(j.out, c, s, j.accumulate != 0); break;
  }
}

}  // namespace

int column_sums(const ColumnSumJob* jobs, int n_jobs, int64_t rows, int64_t n, void* stream) {
  if (n_jobs <= 0 || n_jobs > kMaxColumnSumJobs || n <= 0 || rows < 0) return cudaErrorInvalidValue;
  Jobs all{};
  for (int i = 0; i < n_jobs; ++i) {
    if (jobs[i].partial == nullptr || jobs[i].out == nullptr) return cudaErrorInvalidValue;
    if (jobs[i].out_dtype != kF32 && jobs[i].out_dtype != kBF16 && jobs[i].out_dtype != kF16)
      return cudaErrorInvalidValue;
    all.job[i] = jobs[i];
  }
  const dim3 grid(static_cast<unsigned>((n + kCols - 1) / kCols), static_cast<unsigned>(n_jobs));
  mh_column_sums_kernel<<<grid, dim3(kCols, kRowLanes), 0, as_stream(stream)>>>(all, rows, n);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace megahost::sdk::kernels
