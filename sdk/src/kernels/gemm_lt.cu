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
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "fused_kernels.h"
#include "gemm_algo_config.h"

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
bool autotune_enabled() {
  static const bool on = env_flag("MEGAHOST_GEMM_AUTOTUNE", true);
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

// D for timing candidates: the call's own D, or for an accumulated D a zeroed scratch copy (so
// the call's result is unchanged). Outputs written into the call's buffers (D without
// accumulate, the epilogue's aux and bias) are overwritten by the call's own launch.
struct TimingTarget {
  void* d = nullptr;
  bool owned = false;
  cudaStream_t stream = nullptr;
  explicit TimingTarget(const GemmArgs& g) : d(g.d), stream(static_cast<cudaStream_t>(g.stream)) {
    if (!g.accumulate) return;
    const size_t bytes = static_cast<size_t>(g.m) * g.ldd * dtype_bytes(g.dtype_d);
    if (cudaMallocAsync(&d, bytes, stream) != cudaSuccess) {
      cudaGetLastError();
      d = nullptr;
      return;
    }
    owned = true;
    cudaMemsetAsync(d, 0, bytes, stream);
  }
  ~TimingTarget() {
    if (owned) cudaFreeAsync(d, stream);
    cudaGetLastError();  // a candidate's launch error must not stick to the next call
  }
};

// ms per launch of `reps` back-to-back launches (after one untimed warm-up when `warm`); < 0 on
// any failure.
float time_algo(const GemmArgs& g, const Plan& plan, const cublasLtMatmulAlgo_t& algo, bool ws, void* d, int reps,
                bool warm) {
  auto stream = static_cast<cudaStream_t>(g.stream);
  if (warm && launch(g, plan, algo, ws, d) != CUBLAS_STATUS_SUCCESS) return -1.0f;
  cudaEvent_t start = nullptr, stop = nullptr;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  cudaEventRecord(start, stream);
  bool ok = true;
  for (int r = 0; r < reps && ok; ++r) ok = launch(g, plan, algo, ws, d) == CUBLAS_STATUS_SUCCESS;
  cudaEventRecord(stop, stream);
  float ms = 0.0f;
  if (!ok || cudaEventSynchronize(stop) != cudaSuccess || cudaEventElapsedTime(&ms, start, stop) != cudaSuccess)
    ms = -reps;
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return ms / reps;
}

void log_shape(const GemmArgs& g, const char* what) {
  std::fprintf(stderr, "megahost gemm%s: m=%lld n=%lld k=%lld ta=%d tb=%d beta=%d epilogue=%d d=%s:", what,
               static_cast<long long>(g.m), static_cast<long long>(g.n), static_cast<long long>(g.k), g.trans_a,
               g.trans_b, beta_mode(g), g.epilogue, g.dtype_d == kF32 ? "f32" : "16");
}

// Times each candidate on the call's operands (one warm-up, 3 timed launches) and keeps the
// fastest in plan->algo; times[i] < 0 for a candidate that failed. Runs once per shape, before the
// call's own launch. Any failure keeps the heuristic's first choice.
int pick_fastest(const GemmArgs& g, Plan* plan, const cublasLtMatmulHeuristicResult_t* results, int found,
                 float* times) {
  TimingTarget target(g);
  if (target.d == nullptr) return 0;
  int best = -1;
  for (int i = 0; i < found; ++i) {
    times[i] = -1.0f;
    if (results[i].state != CUBLAS_STATUS_SUCCESS) continue;
    times[i] = time_algo(g, *plan, results[i].algo, !launches_without_workspace(results[i]), target.d, 3, true);
    if (times[i] > 0 && (best < 0 || times[i] < times[best])) best = i;
  }
  if (best >= 0) {
    plan->algo = results[best].algo;
    plan->use_workspace = !launches_without_workspace(results[best]);
  }
  if (log_enabled()) {
    const double flops = 2.0 * static_cast<double>(g.m) * g.n * g.k;
    log_shape(g, "");
    for (int i = 0; i < found; ++i)
      if (times[i] > 0)
        std::fprintf(stderr, " %s%.3fms/%.0fTF/ws%zuB", i == best ? "*" : "", times[i], flops / times[i] / 1e9,
                     results[i].workspaceSize);
    std::fprintf(stderr, "\n");
  }
  return 0;
}

// ---- Exploration and the tuning file ---------------------------------------------------------
//
// MEGAHOST_GEMM_EXPLORE_S=S: for each new shape, S seconds timing configurations beyond the
// heuristic's 8 (lt_config::variations of its first three: tile, cluster shape, swizzle, custom
// option); the six fastest of those and the three fastest heuristic ones are then timed hot (back
// to back for ~60 ms each, the clock the power cap allows) and the fastest hot is kept.
// MEGAHOST_GEMM_TUNING_FILE=PATH: configurations kept that way are appended to PATH, one line per
// shape and GPU; a shape found there is launched with its configuration (after
// cublasLtMatmulAlgoCheck accepts it on this device) without timing anything.

double explore_budget_s() {
  static const double s = [] {
    const char* v = std::getenv("MEGAHOST_GEMM_EXPLORE_S");
    return v != nullptr ? std::atof(v) : 0.0;
  }();
  return s;
}
const std::string& tuning_path() {
  static const std::string p = [] {
    const char* v = std::getenv("MEGAHOST_GEMM_TUNING_FILE");
    return std::string(v != nullptr ? v : "");
  }();
  return p;
}

// "<GPU name>,<cuBLASLt version>,<the plan key's fields>", no spaces: a tuning file line's key.
std::string tuning_key(const GemmArgs& g, int device) {
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, device);
  std::string name = prop.name;
  std::replace(name.begin(), name.end(), ' ', '_');
  const uint32_t align_d = g.c != nullptr && alignment(g.c) < alignment(g.d) ? alignment(g.c) : alignment(g.d);
  char s[320];
  std::snprintf(s, sizeof(s), "%s,lt%zu,ab%d,d%d,ta%d,tb%d,beta%d,m%lld,n%lld,k%lld,lda%lld,ldb%lld,ldd%lld,aux%lld,e%d,"
                "al%u/%u/%u", name.c_str(), cublasLtGetVersion(), g.dtype_ab, g.dtype_d, g.trans_a, g.trans_b,
                beta_mode(g), static_cast<long long>(g.m), static_cast<long long>(g.n), static_cast<long long>(g.k),
                static_cast<long long>(g.lda), static_cast<long long>(g.ldb), static_cast<long long>(g.ldd),
                static_cast<long long>(g.ld_aux), g.epilogue, alignment(g.a), alignment(g.b), align_d);
  return s;
}

// The tuning file's lines, read once: "KEY = id tile stages cluster swizzle custom inner splitk # note".
std::map<std::string, lt_config::AlgoConfig>& tuned_configs() {
  static auto* table = [] {
    auto* t = new std::map<std::string, lt_config::AlgoConfig>();
    if (tuning_path().empty()) return t;
    std::ifstream in(tuning_path());
    std::string line;
    int line_no = 0;
    while (std::getline(in, line)) {
      ++line_no;
      if (line.empty() || line[0] == '#') continue;
      const size_t eq = line.find(" = ");
      lt_config::AlgoConfig c;
      if (eq == std::string::npos || !lt_config::parse_config(line.c_str() + eq + 3, &c)) {
        std::fprintf(stderr, "megahost gemm: %s:%d: not \"KEY = id tile stages cluster swizzle custom inner splitk\"; "
                     "line ignored\n", tuning_path().c_str(), line_no);
        continue;
      }
      (*t)[line.substr(0, eq)] = c;  // a later line for the same key wins
    }
    return t;
  }();
  return *table;
}

void append_tuning(const std::string& key, const lt_config::AlgoConfig& c, float hot_ms, float heuristic_hot_ms) {
  tuned_configs()[key] = c;
  if (tuning_path().empty()) return;
  std::ofstream out(tuning_path(), std::ios::app);
  out << key << " = " << lt_config::config_text(c) << " # hot " << hot_ms << " ms, heuristic's best " << heuristic_hot_ms
      << " ms\n";
  if (!out) std::fprintf(stderr, "megahost gemm: could not append to %s\n", tuning_path().c_str());
}

// The tuned configuration for this shape, if the file has one this device accepts.
bool use_tuned(const GemmArgs& g, const std::string& key, Plan* plan, const cublasLtMatmulHeuristicResult_t& first) {
  const auto it = tuned_configs().find(key);
  if (it == tuned_configs().end()) return false;
  const lt_config::AlgoConfig& c = it->second;
  cublasLtMatmulAlgo_t algo = first.algo;
  if (lt_config::read_config(algo).id != c.id) {
    const cudaDataType_t ab = cuda_type(g.dtype_ab), dt = cuda_type(g.dtype_d);
    if (cublasLtMatmulAlgoInit(static_cast<cublasLtHandle_t>(g.handle), CUBLAS_COMPUTE_32F, CUDA_R_32F, ab, ab, dt, dt,
                               c.id, &algo) != CUBLAS_STATUS_SUCCESS)
      return false;
  }
  cublasLtMatmulHeuristicResult_t check{};
  if (!lt_config::write_config(&algo, c) ||
      cublasLtMatmulAlgoCheck(static_cast<cublasLtHandle_t>(g.handle), plan->desc, plan->a, plan->b, plan->d, plan->d,
                              &algo, &check) != CUBLAS_STATUS_SUCCESS ||
      check.workspaceSize > g.workspace_bytes)
    return false;
  plan->algo = algo;
  plan->use_workspace = !launches_without_workspace(check);
  return true;
}

// Exploration (above), after pick_fastest timed the heuristic's candidates (`times`).
void explore(const GemmArgs& g, const std::string& key, Plan* plan, const cublasLtMatmulHeuristicResult_t* results,
             int found, const float* times) {
  TimingTarget target(g);
  if (target.d == nullptr) return;
  struct Candidate {
    cublasLtMatmulAlgo_t algo;
    bool ws;
    float cold, hot;
  };
  std::vector<Candidate> heuristic, explored;
  for (int i = 0; i < found; ++i)
    if (times[i] > 0) heuristic.push_back({results[i].algo, !launches_without_workspace(results[i]), times[i], 0.0f});
  const std::vector<cublasLtMatmulAlgo_t> todo = lt_config::variations(results, found, 3);
  const auto start = std::chrono::steady_clock::now();
  for (const cublasLtMatmulAlgo_t& algo : todo) {
    if (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() > explore_budget_s()) break;
    cublasLtMatmulHeuristicResult_t check{};
    if (cublasLtMatmulAlgoCheck(static_cast<cublasLtHandle_t>(g.handle), plan->desc, plan->a, plan->b, plan->d,
                                plan->d, &algo, &check) != CUBLAS_STATUS_SUCCESS ||
        check.workspaceSize > g.workspace_bytes)
      continue;
    const bool ws = !launches_without_workspace(check);
    const float ms = time_algo(g, *plan, algo, ws, target.d, 2, true);
    if (ms > 0) explored.push_back({algo, ws, ms, 0.0f});
  }
  const size_t timed = explored.size();
  auto by_cold = [](const Candidate& a, const Candidate& b) { return a.cold < b.cold; };
  std::sort(heuristic.begin(), heuristic.end(), by_cold);
  std::sort(explored.begin(), explored.end(), by_cold);
  heuristic.resize(std::min<size_t>(heuristic.size(), 3));
  explored.resize(std::min<size_t>(explored.size(), 6));
  // Hot: back to back for ~60 ms, the second half timed.
  auto hot = [&](Candidate& c) {
    const int reps = std::max(4, static_cast<int>(30.0f / std::max(c.cold, 0.01f)));
    time_algo(g, *plan, c.algo, c.ws, target.d, reps, false);
    c.hot = time_algo(g, *plan, c.algo, c.ws, target.d, reps, false);
    if (c.hot <= 0) c.hot = 1e30f;
  };
  for (Candidate& c : heuristic) hot(c);
  for (Candidate& c : explored) hot(c);
  if (heuristic.empty()) return;
  auto by_hot = [](const Candidate& a, const Candidate& b) { return a.hot < b.hot; };
  const Candidate best_heuristic = *std::min_element(heuristic.begin(), heuristic.end(), by_hot);
  Candidate best = best_heuristic;
  for (const Candidate& c : explored)
    if (c.hot < best.hot) best = c;
  plan->algo = best.algo;
  plan->use_workspace = best.ws;
  const lt_config::AlgoConfig config = lt_config::read_config(best.algo);
  append_tuning(key, config, best.hot, best_heuristic.hot);
  log_shape(g, " explore");
  std::fprintf(stderr, " %zu of %zu variations timed in %.1f s; hot: heuristic's best %.3f ms, kept %.3f ms (%s)\n",
               timed, todo.size(), explore_budget_s(), best_heuristic.hot,
               best.hot, lt_config::config_text(config).c_str());
}

int build_plan(const GemmArgs& g, size_t workspace_bytes, int device, Plan* plan) {
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
  const bool tuning = explore_budget_s() > 0 || !tuning_path().empty();
  const std::string key = tuning ? tuning_key(g, device) : std::string();
  if (tuning && use_tuned(g, key, plan, results[0])) return 0;
  float times[kMaxCandidates] = {};
  if (found > 1 || explore_budget_s() > 0)
    if (int rc = pick_fastest(g, plan, results, found, times)) return rc;
  if (explore_budget_s() > 0) explore(g, key, plan, results, found, times);
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
    if (int rc = build_plan(g, g.workspace_bytes, device, &plan)) return rc;
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
