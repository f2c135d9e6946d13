// megahost SDK — cuDNN's flash-attention backward through the backend API (see cudnn_sdpa.h).
//
// cuDNN recognizes attention as a graph of primitive operations and runs its fused flash kernels
// for it (the dO·O row sums, the backward kernel, the float32 dQ's conversion). The graph below is
// the causal, dropout-free backward over [b, h, s, d] tensors:
//   softmax_sum = rowsum(dO * O)                                   [b, h, s, 1] float32, workspace
//   P  = exp(mask(Q K^T * scale) - stats)                           virtual [b, h, s, s]
//   dV = P^T dO
//   dS = (dO V^T - softmax_sum) * P * scale                         virtual
//   dK = dS^T Q,   dQ_accum = dS K (float32, workspace),   dQ = dQ_accum
// Every real tensor has the caller's strides, so dQ / dK / dV may be views of one packed buffer.
// Host code only; nvcc compiles it with the kernels. libcudnn is the copy libtorch loaded, found
// with dlopen, so the build needs cuDNN's headers and no library to link.
#include "cudnn_sdpa.h"

#if MH_SDK_WITH_CUDNN_GRAPH
#include <cuda_runtime.h>
#include <cudnn_graph.h>
#include <dlfcn.h>

#include <array>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "fused_kernels.h"

namespace megahost::sdk::kernels {

namespace {

thread_local std::string g_error;

struct Api {
  decltype(&cudnnBackendCreateDescriptor) create = nullptr;
  decltype(&cudnnBackendDestroyDescriptor) destroy = nullptr;
  decltype(&cudnnBackendSetAttribute) set = nullptr;
  decltype(&cudnnBackendGetAttribute) get = nullptr;
  decltype(&cudnnBackendFinalize) finalize = nullptr;
  decltype(&cudnnBackendExecute) execute = nullptr;
  decltype(&cudnnCreate) create_handle = nullptr;
  decltype(&cudnnSetStream) set_stream = nullptr;
  decltype(&cudnnGetErrorString) status_string = nullptr;
  decltype(&cudnnGetLastErrorString) last_error = nullptr;
  std::string missing;  // why the API is not usable, or empty
};

template <typename F>
bool resolve(void* lib, const char* name, F* fn) {
  *fn = reinterpret_cast<F>(dlsym(lib, name));
  return *fn != nullptr;
}

// The libcudnn already in the process (libtorch's), else the first found on the library path.
const Api& api() {
  static const Api a = [] {
    Api r;
    void* lib = nullptr;
    for (const char* name : {"libcudnn.so.9", "libcudnn_graph.so.9"}) {
      lib = dlopen(name, RTLD_NOW | RTLD_NOLOAD);
      if (lib == nullptr) lib = dlopen(name, RTLD_NOW);
      if (lib != nullptr) break;
    }
    if (lib == nullptr) {
      r.missing = "libcudnn.so.9 is not loaded nor on the library path";
      return r;
    }
    const bool ok = resolve(lib, "cudnnBackendCreateDescriptor", &r.create) &&
                    resolve(lib, "cudnnBackendDestroyDescriptor", &r.destroy) &&
                    resolve(lib, "cudnnBackendSetAttribute", &r.set) &&
                    resolve(lib, "cudnnBackendGetAttribute", &r.get) &&
                    resolve(lib, "cudnnBackendFinalize", &r.finalize) &&
                    resolve(lib, "cudnnBackendExecute", &r.execute) && resolve(lib, "cudnnCreate", &r.create_handle) &&
                    resolve(lib, "cudnnSetStream", &r.set_stream) &&
                    resolve(lib, "cudnnGetErrorString", &r.status_string);
    resolve(lib, "cudnnGetLastErrorString", &r.last_error);  // optional: the reason behind a status
    if (!ok) r.missing = "libcudnn.so.9 lacks the backend API (cuDNN 9 needed)";
    return r;
  }();
  return a;
}

std::string describe(cudnnStatus_t status) {
  std::string s = api().status_string(status);
  if (api().last_error != nullptr) {
    char msg[512] = {};
    api().last_error(msg, sizeof(msg));
    if (msg[0] != '\0') s += std::string(" (") + msg + ")";
  }
  return s;
}

// A backend descriptor, destroyed with its owner.
class Desc {
 public:
  explicit Desc(cudnnBackendDescriptor_t d) : d_(d) {}
  Desc(const Desc&) = delete;
  Desc& operator=(const Desc&) = delete;
  ~Desc() {
    if (d_ != nullptr) api().destroy(d_);
  }

 private:
  cudnnBackendDescriptor_t d_;
};

// Assembles descriptors; the first failure is kept (later calls do nothing) and reported once.
class Builder {
 public:
  explicit Builder(std::vector<std::unique_ptr<Desc>>* keep) : keep_(keep) {}
  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }
  void fail(const std::string& what) {
    if (error_.empty()) error_ = what;
  }

  cudnnBackendDescriptor_t make(cudnnBackendDescriptorType_t type, const char* what) {
    if (!ok()) return nullptr;
    cudnnBackendDescriptor_t d = nullptr;
    const cudnnStatus_t st = api().create(type, &d);
    if (st != CUDNN_STATUS_SUCCESS) {
      fail(std::string("create ") + what + ": " + describe(st));
      return nullptr;
    }
    keep_->push_back(std::make_unique<Desc>(d));
    return d;
  }
  void set(cudnnBackendDescriptor_t d, cudnnBackendAttributeName_t attr, cudnnBackendAttributeType_t type,
           int64_t count, const void* value, const char* what) {
    if (!ok()) return;
    const cudnnStatus_t st = api().set(d, attr, type, count, value);
    if (st != CUDNN_STATUS_SUCCESS) fail(std::string("set ") + what + ": " + describe(st));
  }
  void finalize(cudnnBackendDescriptor_t d, const char* what) {
    if (!ok()) return;
    const cudnnStatus_t st = api().finalize(d);
    if (st != CUDNN_STATUS_SUCCESS) fail(std::string("finalize ") + what + ": " + describe(st));
  }

  cudnnBackendDescriptor_t tensor(int64_t uid, cudnnDataType_t type, const std::array<int64_t, 4>& dims,
                                  const std::array<int64_t, 4>& strides, bool is_virtual, bool by_value = false) {
    cudnnBackendDescriptor_t t = make(CUDNN_BACKEND_TENSOR_DESCRIPTOR, "tensor");
    const int64_t alignment = 16;
    set(t, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &type, "tensor type");
    set(t, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, dims.data(), "tensor dims");
    set(t, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, strides.data(), "tensor strides");
    set(t, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid, "tensor uid");
    set(t, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &alignment, "tensor alignment");
    set(t, CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1, &is_virtual, "tensor virtual");
    set(t, CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, 1, &by_value, "tensor by value");
    finalize(t, "tensor");
    return t;
  }
  // A virtual tensor with the next free uid.
  cudnnBackendDescriptor_t temp(cudnnDataType_t type, const std::array<int64_t, 4>& dims,
                                const std::array<int64_t, 4>& strides) {
    return tensor(next_virtual_++, type, dims, strides, /*is_virtual=*/true);
  }

  // y = mode(x[, b[, t]]) in `precision`; axis for GEN_INDEX.
  void pointwise(cudnnPointwiseMode_t mode, cudnnDataType_t precision, cudnnBackendDescriptor_t x,
                 cudnnBackendDescriptor_t b, cudnnBackendDescriptor_t t, cudnnBackendDescriptor_t y,
                 int64_t axis = -1) {
    cudnnBackendDescriptor_t pw = make(CUDNN_BACKEND_POINTWISE_DESCRIPTOR, "pointwise");
    set(pw, CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode, "pointwise mode");
    set(pw, CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, 1, &precision, "pointwise precision");
    if (axis >= 0) set(pw, CUDNN_ATTR_POINTWISE_AXIS, CUDNN_TYPE_INT64, 1, &axis, "pointwise axis");
    finalize(pw, "pointwise");
    cudnnBackendDescriptor_t op = make(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR, "pointwise op");
    set(op, CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &pw, "pointwise desc");
    set(op, CUDNN_ATTR_OPERATION_POINTWISE_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x, "pointwise x");
    if (b != nullptr) set(op, CUDNN_ATTR_OPERATION_POINTWISE_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &b, "pointwise b");
    if (t != nullptr) set(op, CUDNN_ATTR_OPERATION_POINTWISE_TDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &t, "pointwise t");
    set(op, CUDNN_ATTR_OPERATION_POINTWISE_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y, "pointwise y");
    finalize(op, "pointwise op");
    ops_.push_back(op);
  }
  void matmul(cudnnBackendDescriptor_t a, cudnnBackendDescriptor_t b, cudnnBackendDescriptor_t c) {
    const cudnnDataType_t fp32 = CUDNN_DATA_FLOAT;
    cudnnBackendDescriptor_t mm = make(CUDNN_BACKEND_MATMUL_DESCRIPTOR, "matmul");
    set(mm, CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &fp32, "matmul precision");
    finalize(mm, "matmul");
    cudnnBackendDescriptor_t op = make(CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR, "matmul op");
    set(op, CUDNN_ATTR_OPERATION_MATMUL_ADESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &a, "matmul a");
    set(op, CUDNN_ATTR_OPERATION_MATMUL_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &b, "matmul b");
    set(op, CUDNN_ATTR_OPERATION_MATMUL_CDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &c, "matmul c");
    set(op, CUDNN_ATTR_OPERATION_MATMUL_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &mm, "matmul desc");
    finalize(op, "matmul op");
    ops_.push_back(op);
  }
  void sum_rows(cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t y) {
    const cudnnDataType_t fp32 = CUDNN_DATA_FLOAT;
    const cudnnReduceTensorOp_t add = CUDNN_REDUCE_TENSOR_ADD;
    cudnnBackendDescriptor_t r = make(CUDNN_BACKEND_REDUCTION_DESCRIPTOR, "reduction");
    set(r, CUDNN_ATTR_REDUCTION_OPERATOR, CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, 1, &add, "reduction operator");
    set(r, CUDNN_ATTR_REDUCTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &fp32, "reduction precision");
    finalize(r, "reduction");
    cudnnBackendDescriptor_t op = make(CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR, "reduction op");
    set(op, CUDNN_ATTR_OPERATION_REDUCTION_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x, "reduction x");
    set(op, CUDNN_ATTR_OPERATION_REDUCTION_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y, "reduction y");
    set(op, CUDNN_ATTR_OPERATION_REDUCTION_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &r, "reduction desc");
    finalize(op, "reduction op");
    ops_.push_back(op);
  }
  void reshape(cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t y) {
    cudnnBackendDescriptor_t op = make(CUDNN_BACKEND_OPERATION_RESHAPE_DESCRIPTOR, "reshape op");
    set(op, CUDNN_ATTR_OPERATION_RESHAPE_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x, "reshape x");
    set(op, CUDNN_ATTR_OPERATION_RESHAPE_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y, "reshape y");
    finalize(op, "reshape op");
    ops_.push_back(op);
  }
  const std::vector<cudnnBackendDescriptor_t>& ops() const { return ops_; }

 private:
  std::vector<std::unique_ptr<Desc>>* keep_;
  std::vector<cudnnBackendDescriptor_t> ops_;
  std::string error_;
  int64_t next_virtual_ = 1000;
};

// The real tensors' uids in the variant pack.
enum Uid : int64_t {
  kQ = 1, kK, kV, kO, kDO, kStats, kDQ, kDK, kDV, kSoftmaxSum, kDQAccum, kScale, kOne, kNegInf
};

// Graph layouts cuDNN's releases have matched (cudnn-frontend versions differ in where the causal
// mask sits and in the index type); the first one that gets an engine is kept.
struct Variant {
  bool mask_after_stats;
  cudnnDataType_t index_type;
  const char* name;
};
constexpr Variant kVariants[] = {
    {true, CUDNN_DATA_INT32, "mask after the statistics, int32 indices"},
    {false, CUDNN_DATA_INT32, "mask before the statistics, int32 indices"},
    {false, CUDNN_DATA_FLOAT, "mask before the statistics, float indices"},
};

using Dims = std::array<int64_t, 4>;
Dims dims_of(const int64_t (&s)[4]) { return {s[0], s[1], s[2], s[3]}; }
Dims swap23(const Dims& d) { return {d[0], d[1], d[3], d[2]}; }

void add_graph(Builder& g, const SdpaBackwardShape& sh, const Variant& var) {
  const cudnnDataType_t io = sh.dtype == kF16 ? CUDNN_DATA_HALF : CUDNN_DATA_BFLOAT16;
  const cudnnDataType_t f32 = CUDNN_DATA_FLOAT;
  const int64_t b = sh.b, h = sh.h, s = sh.s, d = sh.d;
  const Dims bhsd = {b, h, s, d}, bhs1 = {b, h, s, 1}, bhss = {b, h, s, s}, bhdS = {b, h, d, s};
  const Dims stride_bhs1 = {h * s, s, 1, 1}, stride_bhss = {h * s * s, s * s, s, 1};
  const Dims stride_bhss_t = {h * s * s, s * s, 1, s};  // [b, h, s_kv, s_q] over the same storage
  const Dims one = {1, 1, 1, 1};

  cudnnBackendDescriptor_t q = g.tensor(kQ, io, bhsd, dims_of(sh.q), false);
  cudnnBackendDescriptor_t kt = g.tensor(kK, io, bhdS, swap23(dims_of(sh.k)), false);  // K^T
  cudnnBackendDescriptor_t vt = g.tensor(kV, io, bhdS, swap23(dims_of(sh.v)), false);  // V^T
  cudnnBackendDescriptor_t o = g.tensor(kO, io, bhsd, dims_of(sh.o), false);
  cudnnBackendDescriptor_t dout = g.tensor(kDO, io, bhsd, dims_of(sh.o), false);
  cudnnBackendDescriptor_t stats = g.tensor(kStats, f32, bhs1, stride_bhs1, false);
  cudnnBackendDescriptor_t dq = g.tensor(kDQ, io, bhsd, dims_of(sh.dq), false);
  cudnnBackendDescriptor_t dk = g.tensor(kDK, io, bhsd, dims_of(sh.dk), false);
  cudnnBackendDescriptor_t dv = g.tensor(kDV, io, bhsd, dims_of(sh.dv), false);
  cudnnBackendDescriptor_t softmax_sum = g.tensor(kSoftmaxSum, f32, bhs1, stride_bhs1, false);
  cudnnBackendDescriptor_t dq_accum = g.tensor(kDQAccum, f32, bhsd, {h * s * d, s * d, d, 1}, false);
  cudnnBackendDescriptor_t scale = g.tensor(kScale, f32, one, one, false, /*by_value=*/true);
  cudnnBackendDescriptor_t unit = g.tensor(kOne, f32, one, one, false, true);
  cudnnBackendDescriptor_t neg_inf = g.tensor(kNegInf, f32, one, one, false, true);

  // softmax_sum = rowsum(dO * O) * 1
  cudnnBackendDescriptor_t do_o = g.temp(f32, bhsd, {h * s * d, s * d, d, 1});
  g.pointwise(CUDNN_POINTWISE_MUL, f32, dout, o, nullptr, do_o);
  cudnnBackendDescriptor_t row_sum = g.temp(f32, bhs1, stride_bhs1);
  g.sum_rows(do_o, row_sum);
  g.pointwise(CUDNN_POINTWISE_MUL, f32, row_sum, unit, nullptr, softmax_sum);

  // P = exp(mask(Q K^T * scale) - stats)
  cudnnBackendDescriptor_t scores = g.temp(f32, bhss, stride_bhss);
  g.matmul(q, kt, scores);
  cudnnBackendDescriptor_t scaled = g.temp(f32, bhss, stride_bhss);
  g.pointwise(CUDNN_POINTWISE_MUL, f32, scores, scale, nullptr, scaled);
  auto causal = [&](cudnnBackendDescriptor_t x) {  // keep row >= col, else the most negative float
    cudnnBackendDescriptor_t row = g.temp(var.index_type, bhss, stride_bhss);
    g.pointwise(CUDNN_POINTWISE_GEN_INDEX, var.index_type, x, nullptr, nullptr, row, /*axis=*/2);
    cudnnBackendDescriptor_t col = g.temp(var.index_type, bhss, stride_bhss);
    g.pointwise(CUDNN_POINTWISE_GEN_INDEX, var.index_type, x, nullptr, nullptr, col, /*axis=*/3);
    cudnnBackendDescriptor_t keep = g.temp(CUDNN_DATA_BOOLEAN, bhss, stride_bhss);
    g.pointwise(CUDNN_POINTWISE_CMP_GE, CUDNN_DATA_BOOLEAN, row, col, nullptr, keep);
    cudnnBackendDescriptor_t y = g.temp(f32, bhss, stride_bhss);
    g.pointwise(CUDNN_POINTWISE_BINARY_SELECT, f32, x, neg_inf, keep, y);
    return y;
  };
  cudnnBackendDescriptor_t logits = scaled;
  if (!var.mask_after_stats) logits = causal(logits);
  cudnnBackendDescriptor_t centered = g.temp(f32, bhss, stride_bhss);
  g.pointwise(CUDNN_POINTWISE_SUB, f32, logits, stats, nullptr, centered);
  if (var.mask_after_stats) centered = causal(centered);
  cudnnBackendDescriptor_t p = g.temp(f32, bhss, stride_bhss);
  g.pointwise(CUDNN_POINTWISE_EXP, f32, centered, nullptr, nullptr, p);

  // dV = P^T dO
  cudnnBackendDescriptor_t pt = g.temp(io, bhss, stride_bhss_t);
  g.reshape(p, pt);
  g.matmul(pt, dout, dv);

  // dS = (dO V^T - softmax_sum) * P * scale
  cudnnBackendDescriptor_t dp = g.temp(f32, bhss, stride_bhss);
  g.matmul(dout, vt, dp);
  cudnnBackendDescriptor_t dp_centered = g.temp(f32, bhss, stride_bhss);
  g.pointwise(CUDNN_POINTWISE_SUB, f32, dp, softmax_sum, nullptr, dp_centered);
  cudnnBackendDescriptor_t ds_unscaled = g.temp(f32, bhss, stride_bhss);
  g.pointwise(CUDNN_POINTWISE_MUL, f32, dp_centered, p, nullptr, ds_unscaled);
  cudnnBackendDescriptor_t ds = g.temp(f32, bhss, stride_bhss);
  g.pointwise(CUDNN_POINTWISE_MUL, f32, ds_unscaled, scale, nullptr, ds);

  // dK = dS^T Q
  cudnnBackendDescriptor_t dst = g.temp(io, bhss, stride_bhss_t);
  g.reshape(ds, dst);
  g.matmul(dst, q, dk);

  // dQ = dS K, accumulated in float32, then converted
  cudnnBackendDescriptor_t k = g.temp(io, bhsd, dims_of(sh.k));
  g.reshape(kt, k);
  g.matmul(ds, k, dq_accum);
  g.pointwise(CUDNN_POINTWISE_IDENTITY, f32, dq_accum, nullptr, nullptr, dq);
}

constexpr size_t kAlign = 256;
size_t aligned(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

struct Plan {
  std::vector<std::unique_ptr<Desc>> keep;  // every descriptor the plan refers to
  cudnnBackendDescriptor_t plan = nullptr;
  int64_t engine_workspace = 0;
  size_t softmax_sum_bytes = 0, dq_accum_bytes = 0;
  std::string error;  // empty: usable
  size_t workspace() const { return aligned(engine_workspace) + aligned(softmax_sum_bytes) + dq_accum_bytes; }
};

bool log_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("MEGAHOST_CUDNN_SDPA_LOG");
    return v != nullptr && *v != '\0' && std::string(v) != "0";
  }();
  return on;
}

// One plan for one graph variant; false with *error when cuDNN has no engine for it.
bool build_plan(cudnnHandle_t handle, const SdpaBackwardShape& sh, const Variant& var, Plan* out, std::string* error) {
  out->keep.clear();
  Builder g(&out->keep);
  add_graph(g, sh, var);
  cudnnBackendDescriptor_t graph = g.make(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR, "operation graph");
  g.set(graph, CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle, "graph handle");
  g.set(graph, CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, static_cast<int64_t>(g.ops().size()),
        g.ops().data(), "graph ops");
  g.finalize(graph, "operation graph");
  cudnnBackendDescriptor_t heur = g.make(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR, "heuristics");
  const cudnnBackendHeurMode_t mode = CUDNN_HEUR_MODE_A;
  g.set(heur, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &graph, "heuristics graph");
  g.set(heur, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode, "heuristics mode");
  g.finalize(heur, "heuristics");
  if (!g.ok()) {
    *error = g.error();
    return false;
  }
  int64_t count = 0;
  cudnnStatus_t st = api().get(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count, nullptr);
  if (st != CUDNN_STATUS_SUCCESS || count <= 0) {
    *error = "no engine configuration for the graph" + (st != CUDNN_STATUS_SUCCESS ? ": " + describe(st) : "");
    return false;
  }
  std::vector<cudnnBackendDescriptor_t> configs(static_cast<size_t>(count));
  for (auto& c : configs) c = g.make(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR, "engine configuration");
  int64_t got = 0;
  if (g.ok()) st = api().get(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, count, &got, configs.data());
  if (!g.ok() || st != CUDNN_STATUS_SUCCESS) {
    *error = g.ok() ? "heuristics results: " + describe(st) : g.error();
    return false;
  }
  std::string refused;
  for (int64_t i = 0; i < got; ++i) {
    cudnnBackendDescriptor_t plan = nullptr;
    if (api().create(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR, &plan) != CUDNN_STATUS_SUCCESS) continue;
    auto owned = std::make_unique<Desc>(plan);
    st = api().set(plan, CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle);
    if (st == CUDNN_STATUS_SUCCESS)
      st = api().set(plan, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &configs[i]);
    if (st == CUDNN_STATUS_SUCCESS) st = api().finalize(plan);
    if (st != CUDNN_STATUS_SUCCESS) {
      if (refused.empty()) refused = describe(st);
      continue;
    }
    int64_t n = 0;
    st = api().get(plan, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, CUDNN_TYPE_INT64, 1, &n, &out->engine_workspace);
    if (st != CUDNN_STATUS_SUCCESS) continue;
    out->plan = plan;
    out->keep.push_back(std::move(owned));
    if (log_enabled())
      std::fprintf(stderr, "[megahost] cuDNN attention backward b=%lld h=%lld s=%lld d=%lld: %s, engine config %lld of %lld\n",
                   static_cast<long long>(sh.b), static_cast<long long>(sh.h), static_cast<long long>(sh.s),
                   static_cast<long long>(sh.d), var.name, static_cast<long long>(i), static_cast<long long>(got));
    return true;
  }
  *error = "no engine configuration finalized" + (refused.empty() ? "" : ": " + refused);
  return false;
}

// One handle per device; the stream is set at each call.
cudnnHandle_t handle_for(int device, std::string* error) {
  static std::mutex mu;
  static auto& handles = *new std::map<int, cudnnHandle_t>();  // never destroyed: cuDNN may be gone at exit
  std::lock_guard<std::mutex> lock(mu);
  auto it = handles.find(device);
  if (it != handles.end()) return it->second;
  cudnnHandle_t h = nullptr;
  const cudnnStatus_t st = api().create_handle(&h);
  if (st != CUDNN_STATUS_SUCCESS) {
    *error = "cudnnCreate: " + describe(st);
    return nullptr;
  }
  handles[device] = h;
  return h;
}

using Key = std::tuple<int, int64_t, int64_t, int64_t, int64_t, int, std::vector<int64_t>>;

Key key_of(int device, const SdpaBackwardShape& sh) {
  std::vector<int64_t> strides;
  for (const int64_t* s : {sh.q, sh.k, sh.v, sh.o, sh.dq, sh.dk, sh.dv}) strides.insert(strides.end(), s, s + 4);
  return Key{device, sh.b, sh.h, sh.s, sh.d, sh.dtype, strides};
}

const Plan* plan_for(const SdpaBackwardShape& sh) {
  if (!api().missing.empty()) {
    g_error = api().missing;
    return nullptr;
  }
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) {
    cudaGetLastError();
    g_error = "no CUDA device";
    return nullptr;
  }
  static std::mutex mu;
  // Never destroyed: the plans' descriptors would be destroyed by exit-time destructors, after
  // cuDNN and the CUDA runtime may have begun unloading (as gemm_lt.cu's plans).
  static auto& plans = *new std::map<Key, std::unique_ptr<Plan>>();
  std::lock_guard<std::mutex> lock(mu);
  const Key key = key_of(device, sh);
  auto it = plans.find(key);
  if (it == plans.end()) {
    auto plan = std::make_unique<Plan>();
    std::string error;
    cudnnHandle_t handle = handle_for(device, &error);
    if (handle != nullptr) {
      std::string tried;
      bool built = false;
      for (const Variant& var : kVariants) {
        std::string why;
        if (build_plan(handle, sh, var, plan.get(), &why)) {
          built = true;
          break;
        }
        tried += std::string(tried.empty() ? "" : "; ") + var.name + ": " + why;
      }
      if (!built) error = tried;
    }
    plan->error = error;
    plan->softmax_sum_bytes = static_cast<size_t>(sh.b * sh.h * sh.s) * sizeof(float);
    plan->dq_accum_bytes = static_cast<size_t>(sh.b * sh.h * sh.s * sh.d) * sizeof(float);
    if (!error.empty() && log_enabled())
      std::fprintf(stderr, "[megahost] cuDNN attention backward refused: %s\n", error.c_str());
    it = plans.emplace(key, std::move(plan)).first;
  }
  if (!it->second->error.empty()) {
    g_error = it->second->error;
    return nullptr;
  }
  return it->second.get();
}

// MEGAHOST_DEBUG_ATTENTION_BACKWARD_FAIL=N (GPU checks): the process's Nth backward call fails
// as a refused cuDNN execute would, so a test can follow the error out of the autograd engine:
// the message, the exit code, the checkpoints already written.
bool debug_fail_this_call() {
  static const int64_t fail_at = [] {
    const char* v = std::getenv("MEGAHOST_DEBUG_ATTENTION_BACKWARD_FAIL");
    return v == nullptr ? int64_t{0} : static_cast<int64_t>(std::atoll(v));
  }();
  static std::atomic<int64_t> calls{0};
  return fail_at > 0 && calls.fetch_add(1) + 1 == fail_at;
}

bool shape_ok(const SdpaBackwardShape& sh) {
  if (sh.b <= 0 || sh.h <= 0 || sh.s <= 0 || sh.d <= 0 || (sh.dtype != kBF16 && sh.dtype != kF16)) return false;
  for (const int64_t* s : {sh.q, sh.k, sh.v, sh.o, sh.dq, sh.dk, sh.dv})
    if (s[3] != 1) return false;
  return true;
}

}  // namespace

int sdpa_backward_plan(const SdpaBackwardShape& shape, size_t* workspace_bytes) {
  if (!shape_ok(shape)) {
    g_error = "cuDNN attention backward takes bf16 / fp16 [b, h, s, d] tensors with unit last strides";
    return 1;
  }
  const Plan* plan = plan_for(shape);
  if (plan == nullptr) return 1;
  *workspace_bytes = plan->workspace();
  return 0;
}

int sdpa_backward(const SdpaBackwardShape& shape, const SdpaBackwardArgs& a, void* stream) {
  if (!shape_ok(shape)) return 1;
  const Plan* plan = plan_for(shape);
  if (plan == nullptr) return 1;
  int device = 0;
  cudaGetDevice(&device);
  std::string error;
  cudnnHandle_t handle = handle_for(device, &error);
  if (handle == nullptr) {
    g_error = error;
    return 1;
  }
  cudnnStatus_t st = api().set_stream(handle, static_cast<cudaStream_t>(stream));
  if (st != CUDNN_STATUS_SUCCESS) {
    g_error = "cudnnSetStream: " + describe(st);
    return 1;
  }
  char* ws = static_cast<char*>(a.workspace);
  void* softmax_sum = ws + aligned(static_cast<size_t>(plan->engine_workspace));
  void* dq_accum = static_cast<char*>(softmax_sum) + aligned(plan->softmax_sum_bytes);
  float scale = a.scale, one = 1.0f, neg_inf = std::numeric_limits<float>::lowest();
  const int64_t uids[] = {kQ, kK, kV, kO, kDO, kStats, kDQ, kDK, kDV, kSoftmaxSum, kDQAccum, kScale, kOne, kNegInf};
  void* ptrs[] = {const_cast<void*>(a.q), const_cast<void*>(a.k), const_cast<void*>(a.v), const_cast<void*>(a.o),
                  const_cast<void*>(a.dout), const_cast<float*>(a.stats), a.dq, a.dk, a.dv, softmax_sum, dq_accum,
                  &scale, &one, &neg_inf};
  std::vector<std::unique_ptr<Desc>> keep;
  Builder g(&keep);
  cudnnBackendDescriptor_t pack = g.make(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, "variant pack");
  g.set(pack, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, 14, uids, "variant pack uids");
  g.set(pack, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, 14, ptrs, "variant pack pointers");
  g.set(pack, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &ws, "variant pack workspace");
  g.finalize(pack, "variant pack");
  if (!g.ok()) {
    g_error = g.error();
    return 1;
  }
  if (debug_fail_this_call()) {
    g_error = "cudnnBackendExecute: refused on purpose (MEGAHOST_DEBUG_ATTENTION_BACKWARD_FAIL)";
    return 1;
  }
  st = api().execute(handle, plan->plan, pack);
  if (st != CUDNN_STATUS_SUCCESS) {
    g_error = "cudnnBackendExecute: " + describe(st);
    return 1;
  }
  return 0;
}

const char* sdpa_backward_error() { return g_error.c_str(); }

}  // namespace megahost::sdk::kernels

#else  // built without cuDNN's headers: the callers keep libtorch's attention backward

namespace megahost::sdk::kernels {
int sdpa_backward_plan(const SdpaBackwardShape&, size_t*) { return 1; }
int sdpa_backward(const SdpaBackwardShape&, const SdpaBackwardArgs&, void*) { return 1; }
const char* sdpa_backward_error() { return "built without cuDNN's headers (cudnn_graph.h)"; }
}  // namespace megahost::sdk::kernels

#endif
