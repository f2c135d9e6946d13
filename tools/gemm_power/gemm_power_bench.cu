// GEMM algorithms under the H200's power cap: for one product shape, the cuBLASLt heuristic's
// first candidates, each timed cold (a few launches on an idle GPU, what a one-shot autotune sees)
// and hot (back to back for --ms milliseconds, the second half timed: the clock the power cap
// allows for that kernel). Why: inside a training iteration the GPU runs at its 700 W cap and
// ~1.45 GHz, so the fastest algorithm on a cool GPU need not be the fastest there.
//
//   nvcc -O2 -std=c++17 -arch=sm_90 gemm_power_bench.cu -lcublasLt -o gemm_power_bench
//   ./gemm_power_bench M N K [ta tb f32out accumulate] [--cands 8] [--ms 400] [--dgelu]
// --dgelu: the DGELU epilogue (D = (A B) * gelu'(aux), aux a bf16 [M, N] pre-activation), the
// fused GeLU backward cuBLASLt offers for fc2's input-gradient product.
// --ws-ab: each candidate hot twice, launched with the 32 MiB workspace and without any (the
// heuristic is always asked with it): does the workspace, which every candidate reports needing 0
// bytes of, cost its memset per launch?
// --explore: configurations beyond the heuristic's 8: each of the first three candidates with its
// tile, stages, cluster shape, CTA swizzle and custom option varied over what its algorithm
// reports it supports; every one cublasLtMatmulAlgoCheck accepts is timed cold, the fastest six
// hot beside the heuristic's cold pick, and the best one's output compared with the heuristic's.
// --budget-s S: stop timing new variations after S seconds (default 20; the order is shuffled).
// --plain-algos (with --dgelu, --dgelu-bgrad or --bgradb): the candidates are the heuristic's
// first for the epilogue, then the plain product's (no epilogue) candidates that
// cublasLtMatmulAlgoCheck accepts with the epilogue; each one's D (and bias gradient) is compared
// with the first's. Why: the heuristic answers the DGELU epilogue with xmma kernels ~12% slower
// than the plain product's nvjet ones.
// --dgelu-bgrad: DGELU and the column sums of D into a bias gradient (fc1's); --bgradb: the plain
// product and the sums over k of our A (cuBLAS's B): a weight-gradient product's bias gradient.
// Energy: in the default mode each candidate's hot half also reads NVML's energy counter (the
// driver's libnvidia-ml.so.1, opened at run time; "n/a" without it): mJ per launch and the mean
// power. Under the power cap an iteration's time follows the energy of its kernels, and cuBLASLt's
// first candidate (megahost's default since the thirteenth session) ran GPT-1.3B faster than the
// fastest-alone picks (docs/performance.md). On the H200 the counter moved in steps too coarse
// for --ms 300 (a hot half of 150 ms read either ~430 or ~850 W for kernels of one family): use
// --ms 2000 or more before comparing energies.
// Row-major D[M, N] = op(A) op(B) as megahost's GemmArgs (ta: A stored [K, M]; tb: B stored [N, K]).
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "algo_config.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>
#include <dlfcn.h>
#include <unistd.h>

#define CHECK_CUDA(x) do { cudaError_t e = (x); if (e != cudaSuccess) { std::fprintf(stderr, "%s: %s\n", #x, cudaGetErrorString(e)); std::exit(1); } } while (0)
#define CHECK_LT(x) do { cublasStatus_t s = (x); if (s != CUBLAS_STATUS_SUCCESS) { std::fprintf(stderr, "%s: %s\n", #x, cublasLtGetStatusString(s)); std::exit(1); } } while (0)

// Normal-looking bf16 values (Irwin-Hall of 4 uniforms): power draw depends on the bits.
__global__ void fill(__nv_bfloat16* p, size_t n, unsigned seed, float scale) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    unsigned h = static_cast<unsigned>(i) * 2654435761u ^ seed;
    float s = 0;
    for (int r = 0; r < 4; ++r) { h ^= h << 13; h ^= h >> 17; h ^= h << 5; s += (h & 0xffffff) / 16777216.0f; }
    p[i] = __float2bfloat16((s - 2.0f) * 1.732f * scale);
  }
}

// NVML's total energy counter (mJ since the driver loaded) through dlopen: no header or link-time
// dependency. energy_mj() is negative when NVML is not there.
struct Nvml {
  using Init = int (*)();
  using Handle = int (*)(unsigned, void**);
  using Energy = int (*)(void*, unsigned long long*);
  Energy energy = nullptr;
  void* device = nullptr;
  Nvml() {
    void* lib = dlopen("libnvidia-ml.so.1", RTLD_NOW);
    if (lib == nullptr) return;
    auto init = reinterpret_cast<Init>(dlsym(lib, "nvmlInit_v2"));
    auto handle = reinterpret_cast<Handle>(dlsym(lib, "nvmlDeviceGetHandleByIndex_v2"));
    auto e = reinterpret_cast<Energy>(dlsym(lib, "nvmlDeviceGetTotalEnergyConsumption"));
    int cuda_device = 0;
    cudaGetDevice(&cuda_device);  // assumes CUDA and NVML number the GPUs alike (CUDA_VISIBLE_DEVICES unset)
    if (init != nullptr && handle != nullptr && e != nullptr && init() == 0 && handle(cuda_device, &device) == 0)
      energy = e;
  }
  double energy_mj() const {
    unsigned long long mj = 0;
    return energy != nullptr && energy(device, &mj) == 0 ? static_cast<double>(mj) : -1.0;
  }
};

using lt_config::config_text;
using lt_config::read_config;

template <class Launch>
float time_launches(Launch& launch, const cublasLtMatmulAlgo_t* algo, int reps) {
  cudaEvent_t e0, e1; cudaEventCreate(&e0); cudaEventCreate(&e1);
  cudaEventRecord(e0);
  const bool ok = launch(algo, reps);
  cudaEventRecord(e1); cudaEventSynchronize(e1);
  float ms = 0; cudaEventElapsedTime(&ms, e0, e1);
  cudaEventDestroy(e0); cudaEventDestroy(e1);
  return ok && cudaGetLastError() == cudaSuccess ? ms / reps : 1e30f;
}

// --explore (see the top of the file). Returns the process exit code.
template <class Launch>
int explore_configs(cublasLtHandle_t lt, cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t la, cublasLtMatrixLayout_t lb,
                    cublasLtMatrixLayout_t ld, const std::vector<cublasLtMatmulHeuristicResult_t>& res, int found,
                    Launch launch, void* d, size_t d_bytes, int f32, double flop, int hot_ms, double budget_s) {
  for (int i = 0; i < found; ++i) std::printf("  heuristic %d: %s\n", i, config_text(read_config(res[i].algo)).c_str());
  std::vector<cublasLtMatmulAlgo_t> tried;
  std::vector<float> cold;
  std::vector<cublasLtMatmulAlgo_t> pending = lt_config::variations(res.data(), found, 3);
  int checked = 0, rejected = 0;
  const auto t_start = std::chrono::steady_clock::now();
  for (cublasLtMatmulAlgo_t& algo : pending) {
    if (std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count() > budget_s) break;
    cublasLtMatmulHeuristicResult_t check{};
    ++checked;
    if (cublasLtMatmulAlgoCheck(lt, desc, la, lb, ld, ld, &algo, &check) != CUBLAS_STATUS_SUCCESS ||
        check.workspaceSize > (size_t{32} << 20)) { ++rejected; continue; }
    launch(&algo, 1);  // warm (and skip what fails to launch)
    if (cudaDeviceSynchronize() != cudaSuccess) { cudaGetLastError(); ++rejected; continue; }
    tried.push_back(algo);
    cold.push_back(time_launches(launch, &algo, 2));
  }
  std::printf("  %zu variations, %d checked within %.0f s, %d rejected, %zu timed\n", pending.size(), checked, budget_s,
              rejected, tried.size());
  // The heuristic's cold pick, then the six fastest explored ones, each hot.
  std::vector<int> order(tried.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int>(i);
  std::sort(order.begin(), order.end(), [&](int x, int y) { return cold[x] < cold[y]; });
  float heur_cold = 1e30f; int heur_pick = 0;
  for (int i = 0; i < found; ++i) {  // as megahost's autotune: one warm-up launch, then 3 timed
    launch(&res[i].algo, 1);
    cudaDeviceSynchronize();
    const float t = time_launches(launch, &res[i].algo, 3);
    if (t < heur_cold) heur_cold = t, heur_pick = i;
  }
  auto hot = [&](const cublasLtMatmulAlgo_t* algo) {
    usleep(300000);
    const float one = std::max(time_launches(launch, algo, 1), 0.01f);
    const int reps = std::max(4, static_cast<int>(hot_ms / 2 / one));
    launch(algo, reps);
    return time_launches(launch, algo, reps);
  };
  const float heur_hot = hot(&res[heur_pick].algo);
  std::printf("  heuristic pick %d: cold %.3f ms | hot %.3f ms %4.0f TF/s\n", heur_pick, heur_cold, heur_hot, flop / heur_hot / 1e9);
  float heur_best_hot = heur_hot;
  for (int i = 0; i < found; ++i)
    if (i != heur_pick) heur_best_hot = std::min(heur_best_hot, hot(&res[i].algo));
  std::printf("  heuristic's best hot: %.3f ms %4.0f TF/s\n", heur_best_hot, flop / heur_best_hot / 1e9);
  float best_hot = 1e30f; int best = -1;
  for (size_t r = 0; r < std::min<size_t>(6, order.size()); ++r) {
    const int i = order[r];
    const float t = hot(&tried[i]);
    std::printf("  explored: cold %.3f ms | hot %.3f ms %4.0f TF/s (%+.2f%% vs heuristic) %s\n", cold[i], t,
                flop / t / 1e9, 100.0 * (t / heur_hot - 1.0), config_text(read_config(tried[i])).c_str());
    if (t < best_hot) best_hot = t, best = i;
  }
  if (best < 0) return 0;
  // Same result? D from zero, one launch each (onto zero when accumulating).
  std::vector<float> out[2];
  const cublasLtMatmulAlgo_t* algos[2] = {&res[heur_pick].algo, &tried[best]};
  for (int w = 0; w < 2; ++w) {
    CHECK_CUDA(cudaMemset(d, 0, d_bytes));
    launch(algos[w], 1);
    const size_t n = d_bytes / (f32 ? 4 : 2);
    out[w].resize(n);
    if (f32) { CHECK_CUDA(cudaMemcpy(out[w].data(), d, d_bytes, cudaMemcpyDeviceToHost)); }
    else {
      std::vector<__nv_bfloat16> h(n);
      CHECK_CUDA(cudaMemcpy(h.data(), d, d_bytes, cudaMemcpyDeviceToHost));
      for (size_t j = 0; j < n; ++j) out[w][j] = __bfloat162float(h[j]);
    }
  }
  double max_diff = 0, max_abs = 0;
  for (size_t j = 0; j < out[0].size(); ++j) {
    max_diff = std::max(max_diff, static_cast<double>(std::fabs(out[0][j] - out[1][j])));
    max_abs = std::max(max_abs, static_cast<double>(std::fabs(out[0][j])));
  }
  std::printf("  best explored vs heuristic pick: hot %+.2f%% (vs the heuristic's best hot %+.2f%%), max |diff| %.3g of max |D| %.3g%s\n",
              100.0 * (best_hot / heur_hot - 1.0), 100.0 * (best_hot / heur_best_hot - 1.0), max_diff, max_abs,
              out[0] == out[1] ? " (same bits)" : "");
  return 0;
}

int main(int argc, char** argv) {
  if (argc < 4) { std::fprintf(stderr, "usage: %s M N K [ta tb f32out acc] [--cands C] [--ms T]\n", argv[0]); return 2; }
  const long long m = std::atoll(argv[1]), n = std::atoll(argv[2]), k = std::atoll(argv[3]);
  int ta = 0, tb = 1, f32 = 0, acc = 0, cands = 8, hot_ms = 400, pos = 0, dgelu = 0, ws_ab = 0, explore = 0;
  int plain_algos = 0;
  cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_DEFAULT;
  double budget_s = 20;
  for (int i = 4; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--cands")) cands = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--ms")) hot_ms = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--dgelu")) dgelu = 1, epi = CUBLASLT_EPILOGUE_DGELU;
    else if (!std::strcmp(argv[i], "--dgelu-bgrad")) dgelu = 1, epi = CUBLASLT_EPILOGUE_DGELU_BGRAD;
    else if (!std::strcmp(argv[i], "--bgradb")) epi = CUBLASLT_EPILOGUE_BGRADB;
    else if (!std::strcmp(argv[i], "--plain-algos")) plain_algos = 1;
    else if (!std::strcmp(argv[i], "--ws-ab")) ws_ab = 1;
    else if (!std::strcmp(argv[i], "--explore")) explore = 1;
    else if (!std::strcmp(argv[i], "--budget-s")) budget_s = std::atof(argv[++i]);
    else { int v = std::atoi(argv[i]); (pos == 0 ? ta : pos == 1 ? tb : pos == 2 ? f32 : acc) = v; ++pos; }
  }
  __nv_bfloat16 *a, *b; void* d; void* ws;
  const size_t ws_bytes = size_t{32} << 20;
  CHECK_CUDA(cudaMalloc(&a, m * k * 2)); CHECK_CUDA(cudaMalloc(&b, n * k * 2));
  CHECK_CUDA(cudaMalloc(&d, m * n * (f32 ? 4 : 2))); CHECK_CUDA(cudaMalloc(&ws, ws_bytes));
  fill<<<1024, 256>>>(a, m * k, 1, 1.0f); fill<<<1024, 256>>>(b, n * k, 2, 0.02f);
  CHECK_CUDA(cudaMemset(d, 0, m * n * (f32 ? 4 : 2)));
  cublasLtHandle_t lt; CHECK_LT(cublasLtCreate(&lt));
  cublasLtMatmulDesc_t desc; CHECK_LT(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  // Column-major: D^T[n, m] = op(B)^T op(A)^T; cuBLAS A = our B, cuBLAS B = our A.
  const cublasOperation_t op_a = tb ? CUBLAS_OP_T : CUBLAS_OP_N, op_b = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
  CHECK_LT(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof(op_a)));
  CHECK_LT(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof(op_b)));
  cublasLtMatmulDesc_t plain_desc;  // the same product without an epilogue (--plain-algos)
  CHECK_LT(cublasLtMatmulDescCreate(&plain_desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  CHECK_LT(cublasLtMatmulDescSetAttribute(plain_desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof(op_a)));
  CHECK_LT(cublasLtMatmulDescSetAttribute(plain_desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof(op_b)));
  void* bias_grad = nullptr;  // [n] (cuBLAS's rows: our columns), bf16
  if (epi != CUBLASLT_EPILOGUE_DEFAULT)
    CHECK_LT(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)));
  if (dgelu) {
    __nv_bfloat16* aux;
    CHECK_CUDA(cudaMalloc(&aux, m * n * 2));
    fill<<<1024, 256>>>(aux, m * n, 3, 1.0f);
    const int64_t ld_aux = n;
    CHECK_LT(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &aux, sizeof(aux)));
    CHECK_LT(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &ld_aux, sizeof(ld_aux)));
  }
  if (epi == CUBLASLT_EPILOGUE_DGELU_BGRAD || epi == CUBLASLT_EPILOGUE_BGRADB) {
    const long long len = epi == CUBLASLT_EPILOGUE_BGRADB ? m : n;  // BGRADB sums cuBLAS's B = our A over k
    CHECK_CUDA(cudaMalloc(&bias_grad, len * 4));  // D's type by default: bf16 or float32
    CHECK_LT(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias_grad, sizeof(bias_grad)));
  }
  cublasLtMatrixLayout_t la, lb, ld;
  CHECK_LT(tb ? cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, k, n, k) : cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, n, k, n));
  CHECK_LT(ta ? cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, m, k, m) : cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, k, m, k));
  CHECK_LT(cublasLtMatrixLayoutCreate(&ld, f32 ? CUDA_R_32F : CUDA_R_16BF, n, m, n));
  cublasLtMatmulPreference_t pref; CHECK_LT(cublasLtMatmulPreferenceCreate(&pref));
  CHECK_LT(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_bytes, sizeof(ws_bytes)));
  std::vector<cublasLtMatmulHeuristicResult_t> res(cands);
  int found = 0;
  CHECK_LT(cublasLtMatmulAlgoGetHeuristic(lt, desc, la, lb, ld, ld, pref, cands, res.data(), &found));
  if (plain_algos) {
    std::vector<cublasLtMatmulHeuristicResult_t> plain(cands);
    int n_plain = 0;
    CHECK_LT(cublasLtMatmulAlgoGetHeuristic(lt, plain_desc, la, lb, ld, ld, pref, cands, plain.data(), &n_plain));
    std::vector<cublasLtMatmulHeuristicResult_t> merged(res.begin(), res.begin() + std::min(found, 1));
    for (int i = 0; i < n_plain; ++i) {
      cublasLtMatmulHeuristicResult_t checked{};
      const cublasStatus_t st = cublasLtMatmulAlgoCheck(lt, desc, la, lb, ld, ld, &plain[i].algo, &checked);
      std::printf("  plain cand %d (%s) with the epilogue: %s\n", i, config_text(read_config(plain[i].algo)).c_str(),
                  cublasLtGetStatusString(st));
      if (st == CUBLAS_STATUS_SUCCESS) merged.push_back(checked);
    }
    res = merged;
    found = static_cast<int>(merged.size());
  }
  const float alpha = 1.0f, beta = acc ? 1.0f : 0.0f;
  const double flop = 2.0 * m * n * k;
  cudaEvent_t e0, e1; cudaEventCreate(&e0); cudaEventCreate(&e1);
  bool launch_ws = true;
  auto run = [&](int i, int reps) {
    for (int r = 0; r < reps; ++r)
      CHECK_LT(cublasLtMatmul(lt, desc, &alpha, b, la, a, lb, &beta, d, ld, d, ld, &res[i].algo,
                              launch_ws ? ws : nullptr, launch_ws ? ws_bytes : 0, 0));
  };
  auto timed = [&](int i, int reps) {
    cudaEventRecord(e0); run(i, reps); cudaEventRecord(e1); cudaEventSynchronize(e1);
    float ms = 0; cudaEventElapsedTime(&ms, e0, e1); return ms / reps;
  };
  std::printf("gemm m=%lld n=%lld k=%lld ta=%d tb=%d f32out=%d acc=%d%s: %d candidates\n", m, n, k, ta, tb, f32, acc,
              dgelu ? " epilogue=DGELU" : "", found);
  if (ws_ab) {
    for (int i = 0; i < found; ++i) {
      float t[2];
      for (int w = 1; w >= 0; --w) {
        launch_ws = w == 1;
        const int reps = std::max(4, static_cast<int>(hot_ms / 2 / 0.5f));
        run(i, reps);
        t[w] = timed(i, reps);
        cudaDeviceSynchronize();
        usleep(200000);
      }
      // Same bits? D from zero, one launch each way (accumulating onto zero when acc).
      const size_t d_bytes = m * n * (f32 ? 4 : 2);
      std::vector<unsigned char> out[2];
      for (int w = 1; w >= 0; --w) {
        launch_ws = w == 1;
        CHECK_CUDA(cudaMemset(d, 0, d_bytes));
        run(i, 1);
        out[w].resize(d_bytes);
        CHECK_CUDA(cudaMemcpy(out[w].data(), d, d_bytes, cudaMemcpyDeviceToHost));
      }
      std::printf("  cand %d (ws %zu B): hot with workspace %.4f ms, without %.4f ms (%+.2f%%), %s\n", i,
                  res[i].workspaceSize, t[1], t[0], 100.0 * (t[0] / t[1] - 1.0),
                  out[0] == out[1] ? "same bits" : "DIFFERENT BITS");
    }
    return 0;
  }
  if (explore) return explore_configs(lt, desc, la, lb, ld, res, found, [&](const cublasLtMatmulAlgo_t* algo, int reps) {
    for (int r = 0; r < reps; ++r)
      if (cublasLtMatmul(lt, desc, &alpha, b, la, a, lb, &beta, d, ld, d, ld, algo, ws, ws_bytes, 0) != CUBLAS_STATUS_SUCCESS)
        return false;
    return true;
  }, d, m * n * (f32 ? 4 : 2), f32, flop, hot_ms, budget_s);
  // Cold: every candidate after a 1 s idle, 3 launches (the one-shot autotune's view).
  std::vector<float> cold(found), hot(found);
  std::vector<double> mj_per_launch(found, -1.0);
  const Nvml nvml;
  for (int i = 0; i < found; ++i) { run(i, 1); cudaDeviceSynchronize(); cold[i] = timed(i, 3); }
  for (int i = 0; i < found; ++i) {
    const float one = std::max(cold[i], 0.01f);
    const int reps = std::max(4, static_cast<int>(hot_ms / 2 / one));
    run(i, reps);  // first half: reach the power cap's clock
    cudaDeviceSynchronize();
    const double e0 = nvml.energy_mj();
    hot[i] = timed(i, reps);  // synchronizes at its end
    const double e1 = nvml.energy_mj();
    if (e0 >= 0 && e1 >= e0) mj_per_launch[i] = (e1 - e0) / reps;
    usleep(300000);  // cool down a little so the next candidate starts like this one did
  }
  const int best_cold = static_cast<int>(std::min_element(cold.begin(), cold.end()) - cold.begin());
  const int best_hot = static_cast<int>(std::min_element(hot.begin(), hot.end()) - hot.begin());
  for (int i = 0; i < found; ++i) {
    char energy[64] = " | energy n/a";
    if (mj_per_launch[i] >= 0)
      std::snprintf(energy, sizeof(energy), " | %.1f mJ/launch %.0f W", mj_per_launch[i], mj_per_launch[i] / hot[i]);
    std::printf("  cand %d: cold %.3f ms %4.0f TF/s | hot %.3f ms %4.0f TF/s%s%s%s%s\n", i, cold[i], flop / cold[i] / 1e9,
                hot[i], flop / hot[i] / 1e9, energy, i == 0 ? " <heuristic-first" : "",
                i == best_cold ? " <cold-best" : "", i == best_hot ? " <hot-best" : "");
  }
  std::printf("  hot gain of the hot pick over the cold pick: %.1f%%\n", 100.0 * (hot[best_cold] / hot[best_hot] - 1.0));
  if (plain_algos && found > 1) {  // every candidate's D (and bias gradient) against the first's
    const size_t d_bytes = m * n * (f32 ? 4 : 2), b_bytes = bias_grad ? (epi == CUBLASLT_EPILOGUE_BGRADB ? m : n) * (f32 ? 4 : 2) : 0;
    std::vector<std::vector<unsigned char>> outs;
    for (int i = 0; i < found; ++i) {
      CHECK_CUDA(cudaMemset(d, 0, d_bytes));
      run(i, 1);
      std::vector<unsigned char> o(d_bytes + b_bytes);
      CHECK_CUDA(cudaMemcpy(o.data(), d, d_bytes, cudaMemcpyDeviceToHost));
      if (b_bytes) CHECK_CUDA(cudaMemcpy(o.data() + d_bytes, bias_grad, b_bytes, cudaMemcpyDeviceToHost));
      outs.push_back(std::move(o));
    }
    auto widen = [&](const unsigned char* p, size_t i, bool is_f32) {
      float v;
      if (is_f32) { std::memcpy(&v, p + 4 * i, 4); return v; }
      uint32_t w = static_cast<uint32_t>(p[2 * i] | (p[2 * i + 1] << 8)) << 16;
      std::memcpy(&v, &w, 4);
      return v;
    };
    for (int i = 1; i < found; ++i) {
      double dmax = 0, dref = 0, bmax = 0, bref = 0;
      for (size_t e = 0; e < d_bytes / (f32 ? 4 : 2); ++e) {
        const double r = widen(outs[0].data(), e, f32), v = widen(outs[i].data(), e, f32);
        dmax = std::max(dmax, std::fabs(v - r)), dref = std::max(dref, std::fabs(r));
      }
      for (size_t e = 0; e < b_bytes / (f32 ? 4 : 2); ++e) {
        const double r = widen(outs[0].data() + d_bytes, e, f32), v = widen(outs[i].data() + d_bytes, e, f32);
        bmax = std::max(bmax, std::fabs(v - r)), bref = std::max(bref, std::fabs(r));
      }
      std::printf("  cand %d against cand 0: D max |diff| %.3g of %.3g; bias gradient %.3g of %.3g\n", i, dmax, dref, bmax, bref);
    }
  }
  return 0;
}
