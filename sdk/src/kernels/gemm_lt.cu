// megahost SDK — cuBLASLt matrix products with epilogues (see fused_kernels.h): bias + tanh-GeLU
// that keeps the pre-activation, a linear's bias gradient, and float32 accumulation under (b)f16
// inputs, the GeLU backward on an input-gradient product. Host code only; nvcc compiles it with
// the kernels so the glue in sdk/src/nn needs no cuBLAS headers.
//
// cuBLASLt is column-major. Row-major D[m, n] = op(A) op(B) is column-major D^T[n, m] =
// op(B)^T op(A)^T, so the call below swaps the operands: cuBLAS sees (rows n, cols m) for D,
// our B as its A and our A as its B; a row-major matrix stored [r, c] is a column-major [c, r].
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <tuple>

#include "fused_kernels.h"

namespace megahost::sdk::kernels {

namespace {

cudaDataType_t cuda_type(int dtype) {
  switch (dtype) {
    case kBF16: return CUDA_R_16BF;
    case kF16: return CUDA_R_16F;
    default: return CUDA_R_32F;
  }
}

cublasLtEpilogue_t lt_epilogue(int e) {
  switch (e) {
    case kGemmGeluAuxBias: return CUBLASLT_EPILOGUE_GELU_AUX_BIAS;
    case kGemmBGradA: return CUBLASLT_EPILOGUE_BGRADB;  // our A is cuBLAS's B
    case kGemmBias: return CUBLASLT_EPILOGUE_BIAS;      // bias along cuBLAS's rows = our n
    case kGemmDGelu: return CUBLASLT_EPILOGUE_DGELU;
    default: return CUBLASLT_EPILOGUE_DEFAULT;
  }
}

bool uses_bias(int e) { return e == kGemmGeluAuxBias || e == kGemmBGradA || e == kGemmBias; }
bool uses_aux(int e) { return e == kGemmGeluAuxBias || e == kGemmDGelu; }

// Largest power of two (<= 256) dividing the address: the heuristic must only pick algorithms
// that work at the alignment the buffers really have.
uint32_t alignment(const void* p) {
  const auto v = reinterpret_cast<uintptr_t>(p);
  uint32_t a = 256;
  while (a > 1 && v % a != 0) a /= 2;
  return a;
}

// Everything the chosen algorithm depends on (pointers excepted, their alignment included).
using PlanKey = std::tuple<int, int, bool, bool, int, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int,
                           uint32_t, uint32_t, uint32_t, int>;

// beta = 1 over D itself (accumulate), over another buffer C, or beta = 0.
int beta_mode(const GemmArgs& g) { return g.accumulate ? 1 : g.c != nullptr ? 2 : 0; }

// Descriptors and the heuristic's algorithm for one shape: built once, reused every iteration
// (the heuristic alone costs tens of microseconds of host time).
struct Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};
  bool has_algo = false;
  bool use_workspace = true;  // false: launched without one (see tiny_workspace_off)
};

std::mutex plans_mutex;
std::map<PlanKey, Plan>& plans() {
  static auto* p = new std::map<PlanKey, Plan>();  // never destroyed: cuBLAS may be gone at exit
  return *p;
}

int status(cublasStatus_t s) { return s == CUBLAS_STATUS_SUCCESS ? 0 : kGemmCublasError + static_cast<int>(s); }

#define MH_LT_TRY(expr)                  \
  do {                                   \
    if (int rc_ = status(expr)) return rc_; \
  } while (0)

constexpr int kMaxCandidates = 8;

bool env_flag(const char* name, bool fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  return std::strcmp(v, "0") != 0;
}
// Off by default: cuBLASLt's first heuristic algorithm ran GPT-1.3B's iteration 1.1-4.0 ms faster
// on the H200 than the autotune's picks, in 5 alternating pairs over two calls. The fastest
// algorithm alone is not the fastest inside an iteration under the power cap: the timed picks drew
// more power and the clock fell (docs/performance.md). MEGAHOST_GEMM_AUTOTUNE=1 times the
// heuristic's first 8 on first use and keeps the fastest (pick_fastest).
bool autotune_enabled() {
  static const bool on = env_flag("MEGAHOST_GEMM_AUTOTUNE", false);
  return on;
}
// MEGAHOST_GEMM_AUTOTUNE=rounds: the candidates take turns in interleaved rounds (f3f2185)
// instead of one after another; kept for A/B runs (it picked slower products: pick_fastest).
bool autotune_in_rounds() {
  static const bool on = [] {
    const char* v = std::getenv("MEGAHOST_GEMM_AUTOTUNE");
    return v != nullptr && std::strcmp(v, "rounds") == 0;
  }();
  return on;
}
bool log_enabled() {
  static const bool on = env_flag("MEGAHOST_GEMM_LOG", false);
  return on;
}

// The nvjet algorithms cuBLASLt picks for our shapes ask for a 4-byte workspace (a counter) and,
// when given one, cuBLASLt zeroes it with a memset before every launch: ~3 us with the launch
// gap, 339 times per GPT-1.3B iteration. Launched without a workspace they run and give the same
// bits (tools/gemm_power --ws-ab), so they get none; MEGAHOST_GEMM_TINY_WORKSPACE=1 passes it again.
constexpr size_t kTinyWorkspace = 16;
bool tiny_workspace_off() {
  static const bool off = !env_flag("MEGAHOST_GEMM_TINY_WORKSPACE", false);
  return off;
}
bool launches_without_workspace(const cublasLtMatmulHeuristicResult_t& r) {
  return tiny_workspace_off() && r.workspaceSize <= kTinyWorkspace;
}

size_t dtype_bytes(int dtype) { return dtype == kF32 ? 4 : 2; }

// One launch of g with algo (alpha 1, beta 1 when accumulating or adding C), into d.
cublasStatus_t launch(const GemmArgs& g, const Plan& plan, const cublasLtMatmulAlgo_t& algo, bool use_workspace,
                      void* d) {
  const float alpha = 1.0f, beta = beta_mode(g) != 0 ? 1.0f : 0.0f;
  const void* c = g.c != nullptr && !g.accumulate ? g.c : d;
  return cublasLtMatmul(static_cast<cublasLtHandle_t>(g.handle), plan.desc, &alpha, g.b, plan.a, g.a, plan.b, &beta,
                        c, plan.d, d, plan.d, &algo, use_workspace ? g.workspace : nullptr,
                        use_workspace ? g.workspace_bytes : 0, static_cast<cudaStream_t>(g.stream));
}

// MEGAHOST_GEMM_LOG's line head: the product's shape.
void log_shape(const GemmArgs& g) {
  std::fprintf(stderr, "megahost gemm: m=%lld n=%lld k=%lld ta=%d tb=%d beta=%d epilogue=%d d=%s:",
               static_cast<long long>(g.m), static_cast<long long>(g.n), static_cast<long long>(g.k), g.trans_a,
               g.trans_b, beta_mode(g), g.epilogue, g.dtype_d == kF32 ? "f32" : "16");
}

// Times each candidate on the call's operands and keeps the fastest in plan->algo. Runs once per
// shape, before the call's own launch: its outputs (D without accumulate, the epilogue's aux and
// bias) are overwritten by that launch; an accumulated D is timed in a scratch copy instead, so
// the result is unchanged. Any failure keeps the heuristic's first choice.
// Each candidate is warmed up, then 3 launches are timed, one candidate after another. Timing
// them in 5 interleaved rounds of 2 launches, judged by the median round (MEGAHOST_GEMM_AUTOTUNE=
// rounds), meant to be steadier under the power cap's clock drift, picked products that summed
// 188.4 / 189.5 against 184.2–184.5 ms per GPT-1.3B iteration on one H200 (docs/performance.md).
int pick_fastest(const GemmArgs& g, Plan* plan, const cublasLtMatmulHeuristicResult_t* results, int found) {
  auto stream = static_cast<cudaStream_t>(g.stream);
  void* d = g.d;
  const size_t d_bytes = static_cast<size_t>(g.m) * g.ldd * dtype_bytes(g.dtype_d);
  if (g.accumulate && cudaMallocAsync(&d, d_bytes, stream) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  if (g.accumulate) cudaMemsetAsync(d, 0, d_bytes, stream);
  constexpr int kRounds = 5;
  const bool sequential = !autotune_in_rounds();
  const int rounds = sequential ? 1 : kRounds, reps = sequential ? 3 : 2;
  bool usable[kMaxCandidates] = {};
  auto warm_up = [&](int i) {  // a refused candidate drops out
    usable[i] = results[i].state == CUBLAS_STATUS_SUCCESS &&
                launch(g, *plan, results[i].algo, !launches_without_workspace(results[i]), d) == CUBLAS_STATUS_SUCCESS;
  };
  if (!sequential)
    for (int i = 0; i < found; ++i) warm_up(i);
  cudaEvent_t marks[kRounds][kMaxCandidates][2] = {};
  for (int r = 0; r < rounds; ++r)
    for (int i = 0; i < found; ++i) {
      if (sequential) warm_up(i);
      if (!usable[i]) continue;
      cudaEventCreate(&marks[r][i][0]);
      cudaEventCreate(&marks[r][i][1]);
      const bool ws = !launches_without_workspace(results[i]);
      cudaEventRecord(marks[r][i][0], stream);
      for (int k = 0; k < reps && usable[i]; ++k)
        usable[i] = launch(g, *plan, results[i].algo, ws, d) == CUBLAS_STATUS_SUCCESS;
      cudaEventRecord(marks[r][i][1], stream);
    }
  const bool synced = cudaStreamSynchronize(stream) == cudaSuccess;
  float best_ms = 0.0f;
  int best = -1;
  float times[kMaxCandidates] = {};
  for (int i = 0; i < found; ++i) {
    times[i] = -1.0f;
    float round_ms[kRounds];
    bool ok = synced && usable[i];
    for (int r = 0; r < rounds && ok; ++r)
      ok = cudaEventElapsedTime(&round_ms[r], marks[r][i][0], marks[r][i][1]) == cudaSuccess;
    for (int r = 0; r < rounds; ++r)
      for (cudaEvent_t e : marks[r][i])
        if (e != nullptr) cudaEventDestroy(e);
    if (!ok) continue;
    std::sort(round_ms, round_ms + rounds);
    times[i] = round_ms[rounds / 2] / reps;
    if (best < 0 || times[i] < best_ms) best = i, best_ms = times[i];
  }
  if (g.accumulate) cudaFreeAsync(d, stream);
  cudaGetLastError();  // a candidate's launch error must not stick to the next call
  if (best >= 0) {
    plan->algo = results[best].algo;
    plan->use_workspace = !launches_without_workspace(results[best]);
  }
  if (log_enabled()) {
    const double flops = 2.0 * static_cast<double>(g.m) * g.n * g.k;
    log_shape(g);
    for (int i = 0; i < found; ++i)
      if (times[i] > 0)
        std::fprintf(stderr, " %s%.3fms/%.0fTF/ws%zuB", i == best ? "*" : "", times[i], flops / times[i] / 1e9,
                     results[i].workspaceSize);
    std::fprintf(stderr, "\n");
  }
  return 0;
}

int build_plan(const GemmArgs& g, size_t workspace_bytes, Plan* plan) {
  const cudaDataType_t ab = cuda_type(g.dtype_ab), dt = cuda_type(g.dtype_d);
  MH_LT_TRY(cublasLtMatmulDescCreate(&plan->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t op_a = g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;  // cuBLAS's A is our B
  const cublasOperation_t op_b = g.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  MH_LT_TRY(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof(op_a)));
  MH_LT_TRY(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof(op_b)));
  const cublasLtEpilogue_t epilogue = lt_epilogue(g.epilogue);
  MH_LT_TRY(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(epilogue)));
  if (uses_bias(g.epilogue)) {
    // The pointers change every call; the heuristic needs them set (to anything aligned) now.
    MH_LT_TRY(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &g.bias, sizeof(g.bias)));
  }
  if (uses_aux(g.epilogue)) {
    MH_LT_TRY(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &g.aux,
                                             sizeof(g.aux)));
    MH_LT_TRY(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &g.ld_aux,
                                             sizeof(g.ld_aux)));
  }
  // cuBLAS A = our B: column-major (n x k) as N, or our stored [n, k] = column-major (k x n) as T.
  MH_LT_TRY(g.trans_b ? cublasLtMatrixLayoutCreate(&plan->a, ab, g.k, g.n, g.ldb)
                      : cublasLtMatrixLayoutCreate(&plan->a, ab, g.n, g.k, g.ldb));
  MH_LT_TRY(g.trans_a ? cublasLtMatrixLayoutCreate(&plan->b, ab, g.m, g.k, g.lda)
                      : cublasLtMatrixLayoutCreate(&plan->b, ab, g.k, g.m, g.lda));
  MH_LT_TRY(cublasLtMatrixLayoutCreate(&plan->d, dt, g.n, g.m, g.ldd));

  cublasLtMatmulPreference_t pref = nullptr;
  MH_LT_TRY(cublasLtMatmulPreferenceCreate(&pref));
  const uint64_t ws = workspace_bytes;
  const uint32_t align_a = alignment(g.b), align_b = alignment(g.a), align_d = alignment(g.d);
  const uint32_t align_c = g.c != nullptr && alignment(g.c) < align_d ? alignment(g.c) : align_d;
  int rc = status(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
  if (rc == 0)
    rc = status(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &align_a,
                                                     sizeof(align_a)));
  if (rc == 0)
    rc = status(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &align_b,
                                                     sizeof(align_b)));
  if (rc == 0)
    rc = status(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align_c,
                                                     sizeof(align_c)));
  if (rc == 0)
    rc = status(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align_d,
                                                     sizeof(align_d)));
  cublasLtMatmulHeuristicResult_t results[kMaxCandidates]{};
  int found = 0;
  if (rc == 0) {
    const int wanted = autotune_enabled() ? kMaxCandidates : 1;
    const cublasStatus_t s = cublasLtMatmulAlgoGetHeuristic(static_cast<cublasLtHandle_t>(g.handle), plan->desc,
                                                            plan->a, plan->b, plan->d, plan->d, pref, wanted, results,
                                                            &found);
    // NOT_SUPPORTED: no algorithm for this combination; the caller falls back.
    if (s != CUBLAS_STATUS_SUCCESS && s != CUBLAS_STATUS_NOT_SUPPORTED) rc = status(s);
  }
  cublasLtMatmulPreferenceDestroy(pref);
  if (rc != 0) return rc;
  plan->has_algo = found > 0;
  if (!plan->has_algo) return 0;
  plan->algo = results[0].algo;
  plan->use_workspace = !launches_without_workspace(results[0]);
  if (found > 1) return pick_fastest(g, plan, results, found);
  if (log_enabled()) {
    log_shape(g);
    std::fprintf(stderr, " the heuristic's first algorithm, ws%zuB\n", results[0].workspaceSize);
  }
  return 0;
}

}  // namespace

int gemm_lt(const GemmArgs& g) {
  int device = 0;
  if (cudaError_t e = cudaGetDevice(&device)) return e;
  const uint32_t align_d = g.c != nullptr && alignment(g.c) < alignment(g.d) ? alignment(g.c) : alignment(g.d);
  const PlanKey key{g.dtype_ab,       g.dtype_d,      g.trans_a,      g.trans_b,          beta_mode(g), g.m,
                    g.n,              g.k,            g.lda,          g.ldb,              g.ldd,        g.ld_aux,
                    g.epilogue,       alignment(g.a), alignment(g.b), align_d,            device};
  const std::lock_guard<std::mutex> lock(plans_mutex);
  auto it = plans().find(key);
  if (it == plans().end()) {
    Plan plan;
    if (int rc = build_plan(g, g.workspace_bytes, &plan)) return rc;
    it = plans().emplace(key, plan).first;
  }
  Plan& plan = it->second;
  if (!plan.has_algo) return kGemmNoAlgorithm;
  if (uses_bias(g.epilogue))
    MH_LT_TRY(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &g.bias, sizeof(g.bias)));
  if (uses_aux(g.epilogue))
    MH_LT_TRY(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &g.aux,
                                             sizeof(g.aux)));
  cublasStatus_t s = launch(g, plan, plan.algo, plan.use_workspace, g.d);
  if (s != CUBLAS_STATUS_SUCCESS && !plan.use_workspace) {
    // Refused without its few bytes (cuBLASLt checks before launching): from now on with them.
    plan.use_workspace = true;
    s = launch(g, plan, plan.algo, true, g.d);
  }
  return status(s);
}

const char* gemm_lt_error(int rc) {
  if (rc == kGemmNoAlgorithm) return "cuBLASLt has no algorithm for this product";
  if (rc >= kGemmCublasError) return cublasLtGetStatusString(static_cast<cublasStatus_t>(rc - kGemmCublasError));
  return cudaGetErrorString(static_cast<cudaError_t>(rc));
}

}  // namespace megahost::sdk::kernels
