// megahost SDK — fused linear layers: gradient-accumulation fusion and the GeLU MLP on cuBLASLt
// epilogues (see megahost/sdk/nn/fused.h).
#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <vector>

#include "megahost/sdk/error.h"
#include "megahost/sdk/nn/fused.h"
#include "megahost/sdk/nn/params.h"

#if defined(MH_SDK_WITH_CUDA)
#include <ATen/cuda/CUDAContext.h>

#include "fused_cuda.h"
#endif

namespace megahost::sdk::fused {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

#if defined(MH_SDK_WITH_CUDA)
// cuBLASLt's workspace: 32 MiB (its recommendation for Hopper) unless MEGAHOST_GEMM_WORKSPACE_MB
// says otherwise (0: only algorithms that need none, e.g. no split-K reduction).
size_t lt_workspace_bytes() {
  static const size_t bytes = [] {
    const char* v = std::getenv("MEGAHOST_GEMM_WORKSPACE_MB");
    return (v != nullptr && *v != '\0' ? static_cast<size_t>(std::strtoul(v, nullptr, 10)) : size_t{32}) << 20;
  }();
  return bytes;
}

// One workspace per device for the process; never freed. Null when its size is 0.
void* lt_workspace(const at::Device& device) {
  static std::mutex mutex;
  static auto* spaces = new std::vector<at::Tensor>();
  if (lt_workspace_bytes() == 0) return nullptr;
  const std::lock_guard<std::mutex> lock(mutex);
  const auto i = static_cast<size_t>(device.index());
  if (spaces->size() <= i) spaces->resize(i + 1);
  if (!(*spaces)[i].defined())
    (*spaces)[i] = at::empty({static_cast<int64_t>(lt_workspace_bytes())}, at::TensorOptions().dtype(at::kByte).device(device));
  return (*spaces)[i].data_ptr();
}

kernels::GemmArgs lt_args(const at::Tensor& like) {
  kernels::GemmArgs g;
  // A cuBLAS handle is a valid cuBLASLt handle (cuBLAS documentation); torch's is per thread and
  // device.
  g.handle = static_cast<void*>(at::cuda::getCurrentCUDABlasHandle());
  g.stream = detail::stream_of(like);
  g.workspace = lt_workspace(like.device());
  g.workspace_bytes = lt_workspace_bytes();
  g.dtype_ab = g.dtype_d = detail::dtype_code(like);
  return g;
}

// Runs g. False when cuBLASLt has no algorithm for it (nothing ran); throws on a failure.
bool run_lt(const kernels::GemmArgs& g, const char* what) {
  const int rc = kernels::gemm_lt(g);
  if (rc == kernels::kGemmNoAlgorithm) return false;
  MH_CHECK(rc == 0, MH_ERR_INTERNAL, "cuBLASLt ", what, ": ", kernels::gemm_lt_error(rc),
           "\nHINT: MEGAHOST_FUSED=0 runs the plain libtorch path instead");
  return true;
}

bool half_precision(const at::Tensor& t) { return t.scalar_type() == at::kBFloat16 || t.scalar_type() == at::kHalf; }

// The forward and input-gradient products also go through cuBLASLt (its autotuned plans, see
// gemm_lt) unless MEGAHOST_LT_MATMUL=0 (torch's at::mm / at::linear, for comparison).
bool lt_matmul_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("MEGAHOST_LT_MATMUL");
    return v == nullptr || std::string(v) != "0";
  }();
  return on;
}

// A linear's bias gradient from the weight-gradient GEMM's BGRAD epilogue (cuBLASLt: the GEMM
// gets slower and a reduction kernel follows it) or, with MEGAHOST_BGRAD_EPILOGUE=0, a separate
// column sum of dy.
bool bgrad_epilogue_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("MEGAHOST_BGRAD_EPILOGUE");
    return v == nullptr || std::string(v) != "0";
  }();
  return on;
}

bool lt_operands(const at::Tensor& a, const at::Tensor& w) {
  return lt_matmul_enabled() && available(a) && half_precision(a) && a.dim() == 2 && a.is_contiguous() &&
         w.scalar_type() == a.scalar_type() && w.is_contiguous() && w.device() == a.device();
}
#endif

// y [M, n] = x [M, k] w^T (+ bias [n]) (+ residual [M, n]) with w [n, k].
at::Tensor matmul_wt(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias,
                     const at::Tensor& residual = at::Tensor()) {
#if defined(MH_SDK_WITH_CUDA)
  if (lt_operands(x, w) && (!bias.defined() || bias.scalar_type() == x.scalar_type()) &&
      (!residual.defined() || (residual.scalar_type() == x.scalar_type() && residual.is_contiguous()))) {
    const c10::cuda::CUDAGuard guard(x.device());
    at::Tensor y = at::empty({x.size(0), w.size(0)}, x.options());
    kernels::GemmArgs g = lt_args(x);
    g.trans_b = true;
    g.m = x.size(0), g.n = w.size(0), g.k = x.size(1);
    g.a = x.data_ptr(), g.lda = g.k;
    g.b = w.data_ptr(), g.ldb = g.k;
    g.d = y.data_ptr(), g.ldd = g.n;
    if (residual.defined()) g.c = residual.data_ptr();  // beta = 1 over it: the residual add in the product
    if (bias.defined()) g.epilogue = kernels::kGemmBias, g.bias = bias.data_ptr();
    if (run_lt(g, "linear forward")) return y;
  }
#endif
  const at::Tensor y = bias.defined() ? at::addmm(bias, x, w.t()) : at::mm(x, w.t());
  return residual.defined() ? y.add_(residual) : y;
}

// dx [M, k] = dy [M, n] w with w [n, k]; float32_out: dx in float32 (through cuBLASLt the GEMM's
// accumulator, not rounded to dy's dtype first; the at::mm fallback rounds, then widens).
at::Tensor matmul_w(const at::Tensor& dy, const at::Tensor& w, bool float32_out = false) {
#if defined(MH_SDK_WITH_CUDA)
  if (lt_operands(dy, w)) {
    const c10::cuda::CUDAGuard guard(dy.device());
    at::Tensor dx = at::empty({dy.size(0), w.size(1)}, float32_out ? dy.options().dtype(at::kFloat) : dy.options());
    kernels::GemmArgs g = lt_args(dy);
    g.dtype_d = detail::dtype_code(dx);
    g.m = dy.size(0), g.n = w.size(1), g.k = dy.size(1);
    g.a = dy.data_ptr(), g.lda = g.k;
    g.b = w.data_ptr(), g.ldb = g.n;
    g.d = dx.data_ptr(), g.ldd = g.n;
    if (run_lt(g, "input gradient")) return dx;
  }
#endif
  return float32_out ? at::mm(dy, w).to(at::kFloat) : at::mm(dy, w);
}

// weight.grad() [n, k] += dy^T x in place, dy [M, n] and x [M, k] contiguous. With dbias, also the
// column sums of dy (float32 when .grad is) when the GEMM epilogue can make them. False when there
// is no .grad to add into or no way for these dtypes: the caller returns the gradient instead.
bool accumulate_weight_grad(const at::Tensor& weight, const at::Tensor& dy, const at::Tensor& x, at::Tensor* dbias) {
  at::Tensor grad = weight.grad();
  if (!grad.defined() || grad.sizes() != weight.sizes() || !grad.is_contiguous() || grad.device() != dy.device())
    return false;
  // A gradient that counts as zero (zero_grad_deferred): this write stores (beta = 0), no pass
  // zeroed it before. On the paths below that cannot store it is zeroed first.
  bool store = nn::take_deferred_zero(weight);
#if defined(MH_SDK_WITH_CUDA)
  if (available(dy) && half_precision(dy) && x.scalar_type() == dy.scalar_type() &&
      (grad.scalar_type() == at::kFloat || grad.scalar_type() == dy.scalar_type())) {
    const c10::cuda::CUDAGuard guard(dy.device());
    kernels::GemmArgs g = lt_args(dy);
    g.dtype_d = detail::dtype_code(grad);
    g.trans_a = true;  // dy^T
    g.accumulate = !store;
    g.m = dy.size(1), g.n = x.size(1), g.k = dy.size(0);
    g.a = dy.data_ptr(), g.lda = dy.size(1);
    g.b = x.data_ptr(), g.ldb = x.size(1);
    g.d = grad.data_ptr(), g.ldd = grad.size(1);
    if (dbias != nullptr) {
      at::Tensor db = at::empty({g.m}, grad.options());
      g.epilogue = kernels::kGemmBGradA;
      g.bias = db.data_ptr();
      if (run_lt(g, "weight and bias gradients")) {
        *dbias = db;
        return true;
      }
      g.epilogue = kernels::kGemmPlain;
      g.bias = nullptr;
    }
    if (run_lt(g, "weight gradient")) return true;
  }
#endif
  if (store) grad.zero_();  // autograd (or addmm_ below) adds into it
  if (grad.scalar_type() != dy.scalar_type()) return false;
  grad.addmm_(dy.t(), x);
  return true;
}

// The weight gradient of y = x W^T (+ b): into W.grad() when asked and possible (then the weight's
// hook fires now, unless `notify` is false), else returned. Without `notify` a gradient that could
// not go through the GEMM is added into W.grad() here: a later use fires the hook and must find
// this one's share there. dy [M, n], x [M, k].
at::Tensor weight_grad(const at::Tensor& weight, const at::Tensor& dy, const at::Tensor& x, bool accumulate,
                       at::Tensor* dbias, bool notify = true) {
  if (accumulate && accumulate_weight_grad(weight, dy, x, dbias)) {
    if (notify) nn::notify_grad_accumulated(weight);
    return {};
  }
  const at::Tensor dw = at::mm(dy.t(), x);
  if (!notify && accumulate && weight.grad().defined()) {
    if (nn::take_deferred_zero(weight)) weight.mutable_grad().copy_(dw);
    else weight.mutable_grad().add_(dw);
    return {};
  }
  return dw;
}

bool bias_in_epilogue() {
#if defined(MH_SDK_WITH_CUDA)
  return bgrad_epilogue_enabled();
#else
  return true;  // the CPU path sums dy itself anyway
#endif
}

// residual: empty, or [..., n] added in the product (its gradient is the output's). bias_grad_elsewhere:
// no bias gradient from here (the next norm's backward sums it).
struct LinearFn : torch::autograd::Function<LinearFn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                            const at::Tensor& bias, const at::Tensor& residual, bool notify, bool bias_grad_elsewhere) {
    const bool has_bias = bias.numel() > 0, has_residual = residual.numel() > 0;
    ctx->save_for_backward({x, weight});
    ctx->saved_data["bias"] = has_bias && !bias_grad_elsewhere;
    ctx->saved_data["notify"] = notify;
    const int64_t k = weight.size(1), n = weight.size(0);
    std::vector<int64_t> shape = x.sizes().vec();
    shape.back() = n;
    return matmul_wt(x.reshape({-1, k}), weight, has_bias ? bias : at::Tensor(),
                     has_residual ? residual.reshape({-1, n}).contiguous() : at::Tensor())
        .view(shape);  // [..., n]
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    const auto s = ctx->get_saved_variables();
    const at::Tensor &x = s[0], &weight = s[1];
    const bool has_bias = ctx->saved_data["bias"].toBool();
    const int64_t n = weight.size(0), k = weight.size(1);
    const at::Tensor dy = grad[0].reshape({-1, n}).contiguous();  // [M, n]
    const at::Tensor x2 = x.reshape({-1, k}).contiguous();        // [M, k]
    at::Tensor dx;
    if (ctx->needs_input_grad(0)) dx = matmul_w(dy, weight).view(x.sizes());
    at::Tensor dbias_lt;
    at::Tensor dw = weight_grad(weight, dy, x2, /*accumulate=*/true, has_bias && bias_in_epilogue() ? &dbias_lt : nullptr,
                                ctx->saved_data["notify"].toBool());
    at::Tensor db;
    if (has_bias) db = dbias_lt.defined() ? dbias_lt.to(weight.scalar_type()) : dy.sum(0);
    const at::Tensor dresidual = ctx->needs_input_grad(3) ? grad[0] : at::Tensor();
    return {dx, dw, db, dresidual, at::Tensor(), at::Tensor()};
  }
};

#if defined(MH_SDK_WITH_CUDA)
// bias's gradient from the column sums of dy [M, n] (into its bound main gradient when it has one).
at::Tensor column_sums_of(const at::Tensor& dy, const at::Tensor& bias) {
  const int dtype = detail::dtype_code(dy);
  const int64_t m = dy.size(0), n = dy.size(1);
  const int64_t blocks = kernels::pack_split_grads_blocks(dtype, m, n);
  at::Tensor partial = at::empty({blocks, n}, dy.options().dtype(at::kFloat));
  kernels::SplitPart whole;
  whole.src = dy.data_ptr(), whole.size = n, whole.row_stride = n, whole.group_stride = 0;
  if (kernels::pack_split_grads(dtype, &whole, 1, m, /*groups=*/1, nullptr, partial.data_ptr<float>(), blocks,
                                detail::stream_of(dy)) == 0)
    return detail::grads_from_partial_sums({{partial, bias}})[0];
  return dy.sum(0, false, at::kFloat).to(bias.scalar_type());
}

// fc2's input gradient with the GeLU backward in its epilogue: dpre [M, f] = (dout w2) *
// gelu_tanh'(pre) straight from the GEMM (no [M, f] round trip through memory), then fc1's bias
// gradient as column sums of dpre into b1's main gradient when bound. The GEMM gets ~1.5 ms per
// GPT-1.3B iteration slower, the sums take ~2 ms, the separate GeLU-backward kernel's 4.8 ms go.
// False (nothing done) when switched off (MEGAHOST_DGELU_EPILOGUE=0) or cuBLASLt has no
// algorithm: the caller's kernel runs.
bool dgelu_epilogue_backward(const at::Tensor& dout, const at::Tensor& w2, const at::Tensor& pre,
                             const at::Tensor& b1, at::Tensor* dpre, at::Tensor* db1) {
  static const bool on = [] {
    const char* v = std::getenv("MEGAHOST_DGELU_EPILOGUE");
    return v == nullptr || std::string(v) != "0";
  }();
  if (!on || !lt_operands(dout, w2)) return false;
  const int64_t m = dout.size(0), f = w2.size(1);
  at::Tensor out = at::empty({m, f}, dout.options());  // [M, f]
  kernels::GemmArgs g = lt_args(dout);
  g.m = m, g.n = f, g.k = dout.size(1);
  g.a = dout.data_ptr(), g.lda = g.k;
  g.b = w2.data_ptr(), g.ldb = g.n;
  g.d = out.data_ptr(), g.ldd = g.n;
  g.epilogue = kernels::kGemmDGelu;
  g.aux = pre.data_ptr(), g.ld_aux = f;
  if (!run_lt(g, "fc2 input gradient with the GeLU backward")) return false;
  *db1 = column_sums_of(out, b1);
  *dpre = out;
  return true;
}

struct GeluMlpFn : torch::autograd::Function<GeluMlpFn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w1, const at::Tensor& b1,
                            const at::Tensor& w2, const at::Tensor& b2, const at::Tensor& residual, bool accumulate,
                            bool b2_grad_elsewhere) {
    const c10::cuda::CUDAGuard guard(x.device());
    const int64_t h = x.size(-1), f = w1.size(0), h2 = w2.size(0);
    const at::Tensor x2 = x.reshape({-1, h}).contiguous();  // [M, h]
    const int64_t m = x2.size(0);
    at::Tensor act = at::empty({m, f}, x.options());  // gelu(pre)    [M, f]
    at::Tensor pre = at::empty({m, f}, x.options());  // x w1^T + b1  [M, f]
    kernels::GemmArgs g = lt_args(x2);
    g.trans_b = true;  // w1^T
    g.m = m, g.n = f, g.k = h;
    g.a = x2.data_ptr(), g.lda = h;
    g.b = w1.data_ptr(), g.ldb = h;
    g.d = act.data_ptr(), g.ldd = f;
    g.epilogue = kernels::kGemmGeluAuxBias;
    g.bias = b1.data_ptr();
    g.aux = pre.data_ptr(), g.ld_aux = f;
    if (!run_lt(g, "fc1 with bias and GeLU")) {
      pre = at::linear(x2, w1, b1);
      act = at::gelu(pre, "tanh");
    }
    const bool has_b2 = b2.numel() > 0;
    const at::Tensor out = matmul_wt(act, w2, has_b2 ? b2 : at::Tensor(),
                                     residual.numel() > 0 ? residual.reshape({-1, w2.size(0)}).contiguous()
                                                          : at::Tensor());  // [M, h2]
    ctx->save_for_backward({x2, w1, w2, act, pre, b1});
    ctx->saved_data["accumulate"] = accumulate;
    ctx->saved_data["b2"] = has_b2 && !b2_grad_elsewhere;
    ctx->saved_data["shape"] = x.sizes().vec();
    std::vector<int64_t> shape = x.sizes().vec();
    shape.back() = h2;
    return out.view(shape);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    const auto s = ctx->get_saved_variables();
    const at::Tensor &x2 = s[0], &w1 = s[1], &w2 = s[2], &act = s[3], &pre = s[4], &b1 = s[5];
    const bool accumulate = ctx->saved_data["accumulate"].toBool(), has_b2 = ctx->saved_data["b2"].toBool();
    const c10::cuda::CUDAGuard guard(x2.device());
    const int64_t f = w1.size(0), h2 = w2.size(0), m = x2.size(0);
    const at::Tensor dout = grad[0].reshape({-1, h2}).contiguous();  // [M, h2]
    at::Tensor dpre, db1;
    if (!dgelu_epilogue_backward(dout, w2, pre, b1, &dpre, &db1)) {
      // d pre = (dout w2) * gelu'(pre) and d b1 = its column sums in one pass. (cuBLASLt's
      // DGELU_BGRAD epilogue runs as a separate kernel at ~1 TB/s on the H200: slower than this.)
      const at::Tensor dact = matmul_w(dout, w2);  // [M, f]
      dpre = at::empty_like(pre);
      const int64_t blocks =
          kernels::bias_gelu_backward_blocks(detail::dtype_code(pre), /*tanh=*/true, /*bias=*/false, m, f);
      at::Tensor partial = at::empty({blocks, f}, pre.options().dtype(at::kFloat));
      const int rc = kernels::bias_gelu_backward(detail::dtype_code(pre), /*tanh=*/true, dact.data_ptr(),
                                                 pre.data_ptr(), nullptr, dpre.data_ptr(), partial.data_ptr<float>(),
                                                 blocks, m, f, detail::stream_of(pre));
      if (rc == 0) {
        db1 = detail::grads_from_partial_sums({{partial, b1}})[0];  // into b1's main gradient when bound
      } else {  // too wide for the kernel's column sums: the plain ops
        dpre = at::gelu_backward(dact, pre, "tanh");
        db1 = dpre.sum(0);
      }
    }
    at::Tensor db2_lt, db2;
    at::Tensor dw2 = weight_grad(w2, dout, act, accumulate, has_b2 && bias_in_epilogue() ? &db2_lt : nullptr);
    if (has_b2) db2 = db2_lt.defined() ? db2_lt.to(w2.scalar_type()) : dout.sum(0);
    at::Tensor dx = matmul_w(dpre, w1).view(ctx->saved_data["shape"].toIntVector());  // [..., h]
    at::Tensor dw1 = weight_grad(w1, dpre, x2, accumulate, nullptr);
    const at::Tensor dresidual = ctx->needs_input_grad(5) ? grad[0] : at::Tensor();
    return {dx, dw1, db1, dw2, db2, dresidual, at::Tensor(), at::Tensor()};
  }
};

// cuBLASLt's GeLU epilogues for these operands: (b)f16, one dtype, dims the 16-byte alignment
// of its algorithms allows.
bool gelu_mlp_fusable(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& b1, const at::Tensor& w2,
                      const at::Tensor& b2) {
  if (!available(x) || !half_precision(x) || !b1.defined()) return false;
  if (b2.defined() && (b2.scalar_type() != x.scalar_type() || b2.numel() != w2.size(0))) return false;
  for (const at::Tensor* t : {&w1, &b1, &w2})
    if (t->scalar_type() != x.scalar_type() || !t->is_contiguous() || t->device() != x.device()) return false;
  return x.size(-1) % 8 == 0 && w1.size(0) % 8 == 0 && w2.size(0) % 8 == 0 && w1.size(1) == x.size(-1) &&
         w2.size(1) == w1.size(0) && b1.numel() == w1.size(0);
}

// The parts' gradients as one [M, n] matrix when they already lie packed in one buffer in the
// output's layout (fused::packed_causal_attention's backward writes them so), else undefined.
// grad[p]: [..., groups, sizes[p]] views at column offset sum(sizes[:p]) of rows n apart.
at::Tensor already_packed(const variable_list& grad, int64_t m, int64_t groups, const std::vector<int64_t>& sizes,
                          int64_t n) {
  if (grad.size() < sizes.size() || !grad[0].defined()) return at::Tensor();
  const at::Tensor& first = grad[0];
  const int64_t width = n / groups;
  int64_t offset = 0;
  for (size_t p = 0; p < sizes.size(); ++p) {
    const at::Tensor& g = grad[p];
    if (!g.defined() || !g.is_alias_of(first) || g.dim() < 3 || g.numel() != m * groups * sizes[p]) return at::Tensor();
    if (g.size(-1) != sizes[p] || g.stride(-1) != 1 || g.size(-2) != groups || g.stride(-2) != width)
      return at::Tensor();
    int64_t row_stride = n;  // the leading dims, innermost first, rows of n elements
    for (int64_t d = g.dim() - 3; d >= 0; --d) {
      if (g.size(d) != 1 && g.stride(d) != row_stride) return at::Tensor();
      row_stride *= g.size(d);
    }
    if (g.storage_offset() != first.storage_offset() + offset) return at::Tensor();
    offset += sizes[p];
  }
  if (first.storage_offset() + m * n > static_cast<int64_t>(first.storage().nbytes() / first.element_size()))
    return at::Tensor();
  return first.as_strided({m, n}, {n, 1}, first.storage_offset());
}

// linear_split on CUDA: the forward is LinearFn's (bias in the GEMM epilogue) with the output
// split into views; the backward packs the parts' gradients and sums the bias gradient in one
// kernel, then the input- and weight-gradient GEMMs (no BGRAD epilogue).
struct LinearSplitFn : torch::autograd::Function<LinearSplitFn> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                               const at::Tensor& bias, int64_t groups, std::vector<int64_t> sizes, bool accumulate) {
    const c10::cuda::CUDAGuard guard(x.device());
    const int64_t k = weight.size(1), n = weight.size(0);
    const at::Tensor x2 = x.reshape({-1, k}).contiguous();  // [M, k]
    const at::Tensor y = matmul_wt(x2, weight, bias.numel() > 0 ? bias : at::Tensor());  // [M, n]
    std::vector<int64_t> shape = x.sizes().vec();
    shape.back() = groups;
    shape.push_back(n / groups);
    ctx->save_for_backward({x2, weight, bias});
    ctx->saved_data["accumulate"] = accumulate;
    ctx->saved_data["x_shape"] = x.sizes().vec();
    ctx->saved_data["groups"] = groups;
    ctx->saved_data["sizes"] = sizes;
    return at::split_with_sizes(y.view(shape), sizes, -1);  // each [..., groups, size]
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    const auto s = ctx->get_saved_variables();
    const at::Tensor &x2 = s[0], &weight = s[1], &bias = s[2];
    const c10::cuda::CUDAGuard guard(x2.device());
    const int64_t groups = ctx->saved_data["groups"].toInt(), m = x2.size(0), n = weight.size(0);
    const std::vector<int64_t> sizes = ctx->saved_data["sizes"].toIntVector();
    const bool has_bias = bias.numel() > 0;
    at::Tensor packed = already_packed(grad, m, groups, sizes, n);
    if (packed.defined()) {  // cuDNN's attention backward wrote them in place: only the bias sums
      static const bool log = std::getenv("MEGAHOST_CUDNN_SDPA_LOG") != nullptr;
      static bool logged = false;
      if (log && !logged) logged = true, std::fprintf(stderr, "[megahost] linear_split: gradients already packed\n");
      at::Tensor db;
      if (has_bias) db = column_sums_of(packed, bias);
      at::Tensor dx;
      if (ctx->needs_input_grad(0)) dx = matmul_w(packed, weight).view(ctx->saved_data["x_shape"].toIntVector());
      at::Tensor dw = weight_grad(weight, packed, x2, ctx->saved_data["accumulate"].toBool(), nullptr);
      return {dx, dw, db, at::Tensor(), at::Tensor(), at::Tensor()};
    }
    // The parts' gradients as [M, groups, size] with a row stride (a copy only if their layout has none).
    std::vector<at::Tensor> parts(sizes.size());
    std::vector<kernels::SplitPart> spec(sizes.size());
    for (size_t p = 0; p < sizes.size(); ++p) {
      spec[p].size = sizes[p];
      if (!grad[p].defined()) continue;  // unused part: zeros
      at::Tensor g = grad[p].reshape({m, groups, sizes[p]});
      if (g.stride(2) != 1) g = g.contiguous();
      parts[p] = g;
      spec[p].src = g.data_ptr(), spec[p].row_stride = g.stride(0), spec[p].group_stride = g.stride(1);
    }
    at::Tensor dy = at::empty({m, n}, x2.options());  // [M, n]
    const int64_t blocks = kernels::pack_split_grads_blocks(detail::dtype_code(dy), m, n);
    at::Tensor partial = has_bias ? at::empty({blocks, n}, x2.options().dtype(at::kFloat)) : at::Tensor();
    const int rc = kernels::pack_split_grads(detail::dtype_code(dy), spec.data(), static_cast<int>(spec.size()), m,
                                             groups, dy.data_ptr(), has_bias ? partial.data_ptr<float>() : nullptr,
                                             blocks, detail::stream_of(dy));
    at::Tensor db;
    if (rc == 0) {
      if (has_bias) db = detail::grads_from_partial_sums({{partial, bias}})[0];
    } else {  // layouts the kernel does not take: torch's cat and sum
      std::vector<at::Tensor> whole(sizes.size());
      for (size_t p = 0; p < sizes.size(); ++p)
        whole[p] = parts[p].defined() ? parts[p] : at::zeros({m, groups, sizes[p]}, x2.options());
      dy = at::cat(whole, -1).view({m, n});
      if (has_bias) db = dy.sum(0, false, at::kFloat).to(bias.scalar_type());
    }
    at::Tensor dx;
    if (ctx->needs_input_grad(0)) dx = matmul_w(dy, weight).view(ctx->saved_data["x_shape"].toIntVector());
    at::Tensor dw = weight_grad(weight, dy, x2, ctx->saved_data["accumulate"].toBool(), nullptr);
    return {dx, dw, db, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

bool linear_split_fusable(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, int64_t groups,
                          const std::vector<int64_t>& sizes) {
  if (!available(x) || !half_precision(x) || weight.scalar_type() != x.scalar_type() || !weight.is_contiguous() ||
      weight.device() != x.device() || groups <= 0 || weight.size(0) % groups != 0 || sizes.empty() ||
      sizes.size() > static_cast<size_t>(kernels::kMaxSplitParts))
    return false;
  if (bias.defined() && (bias.scalar_type() != x.scalar_type() || bias.numel() != weight.size(0))) return false;
  int64_t width = 0;
  for (int64_t size : sizes) width += size;
  return width * groups == weight.size(0);
}

// ---- the output layer and its cross entropy in one ----

bool lm_head_fusion_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("MEGAHOST_FUSED_LM_HEAD");
    return v == nullptr || std::string(v) != "0";
  }();
  return on;
}

bool lm_head_fusable(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& labels) {
  return lm_head_fusion_enabled() && lt_operands(x, weight) && labels.scalar_type() == at::kLong &&
         labels.is_contiguous() && labels.device() == x.device() && labels.numel() == x.size(0) &&
         x.size(1) == weight.size(1) && kernels::cross_entropy_loss_grad_fits(detail::dtype_code(x), weight.size(0));
}

// t [M, k] with row i times g[i] (float32 [M]), rounded once to dtype.
at::Tensor scaled_rows(const at::Tensor& t, const at::Tensor& g, at::ScalarType dtype) {
  at::Tensor out = at::empty(t.sizes(), t.options().dtype(dtype));
  if (kernels::scale_rows(detail::dtype_code(t), t.data_ptr(), g.data_ptr<float>(), detail::dtype_code(out),
                          out.data_ptr(), t.size(0), t.size(1), detail::stream_of(t)) == 0)
    return out;
  return (t.to(at::kFloat) * g.unsqueeze(1)).to(dtype);  // refused before launching: unaligned rows
}

// loss [M] = cross entropy of the logits x w^T [M, V] (one device's whole vocabulary) at labels.
// The forward overwrites the logits with their gradient for a loss gradient of one per row,
// S = softmax - one_hot (kernels::cross_entropy_loss_grad). The backward gets the real per-row
// gradient g and applies it to the small operands instead of the [M, V] ones: dW += S^T (g x)
// and dx = g (S w). The logits are written once and read once (the two-kernel path reads them
// twice more and writes their gradient anew).
struct LmHeadCrossEntropyFn : torch::autograd::Function<LmHeadCrossEntropyFn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                            const at::Tensor& labels, bool notify) {
    const c10::cuda::CUDAGuard guard(x.device());
    const at::Tensor s = matmul_wt(x, weight, at::Tensor());  // logits [M, V], then S in place
    at::Tensor loss = at::empty({x.size(0)}, x.options().dtype(at::kFloat));
    detail::check_launch(kernels::cross_entropy_loss_grad(detail::dtype_code(s), s.data_ptr(),
                                                          labels.data_ptr<int64_t>(), loss.data_ptr<float>(),
                                                          s.size(0), s.size(1), detail::stream_of(s)),
                         "cross_entropy_loss_grad");
    ctx->save_for_backward({x, weight, s});
    ctx->saved_data["notify"] = notify;
    return loss;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &weight = saved[1], &s = saved[2];
    const c10::cuda::CUDAGuard guard(x.device());
    const at::Tensor g = grad[0].to(at::kFloat).contiguous();  // [M]
    at::Tensor dx;
    if (ctx->needs_input_grad(0)) dx = scaled_rows(matmul_w(s, weight, /*float32_out=*/true), g, x.scalar_type());
    const at::Tensor dw = weight_grad(weight, s, scaled_rows(x, g, x.scalar_type()), /*accumulate=*/true, nullptr,
                                      ctx->saved_data["notify"].toBool());
    return {dx, dw, at::Tensor(), at::Tensor()};
  }
};
#endif

}  // namespace

at::Tensor linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, bool accumulate_into_grad,
                  bool notify_grad_ready) {
  if (!accumulate_into_grad || !at::GradMode::is_enabled() || !weight.requires_grad())
    return at::linear(x, weight, bias);
  const at::Tensor none = at::empty({0}, weight.options());
  return LinearFn::apply(x, weight, bias.defined() ? bias : none, none, notify_grad_ready, false);
}

at::Tensor linear_add(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, const at::Tensor& residual,
                      bool accumulate_into_grad, bool bias_grad_elsewhere) {
  if (!accumulate_into_grad || !at::GradMode::is_enabled() || !weight.requires_grad()) {
    const at::Tensor y = at::linear(x, weight, bias_grad_elsewhere && bias.defined() ? bias.detach() : bias);
    return y + residual;
  }
  return LinearFn::apply(x, weight, bias.defined() ? bias : at::empty({0}, weight.options()), residual, true,
                         bias_grad_elsewhere);
}

std::vector<at::Tensor> linear_split(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                                     int64_t groups, const std::vector<int64_t>& sizes, bool accumulate_into_grad) {
#if defined(MH_SDK_WITH_CUDA)
  if (accumulate_into_grad && at::GradMode::is_enabled() && weight.requires_grad() &&
      linear_split_fusable(x, weight, bias, groups, sizes))
    return LinearSplitFn::apply(x, weight, bias.defined() ? bias : at::empty({0}, weight.options()), groups, sizes,
                                accumulate_into_grad);
#endif
  const at::Tensor y = linear(x, weight, bias, accumulate_into_grad);  // [..., n]
  std::vector<int64_t> shape = y.sizes().vec();
  shape.back() = groups;
  shape.push_back(y.size(-1) / groups);
  return at::split_with_sizes(y.view(shape), sizes, -1);
}

at::Tensor gelu_mlp(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& b1, const at::Tensor& w2,
                    const at::Tensor& b2, bool accumulate_into_grad) {
#if defined(MH_SDK_WITH_CUDA)
  if (gelu_mlp_fusable(x, w1, b1, w2, b2)) {
    const at::Tensor none = at::empty({0}, w2.options());
    return GeluMlpFn::apply(x, w1, b1, w2, b2.defined() ? b2 : none, none, accumulate_into_grad, false);
  }
#endif
  if (!accumulate_into_grad) return reference::gelu_mlp(x, w1, b1, w2, b2);
  return linear(at::gelu(linear(x, w1, b1, true), "tanh"), w2, b2, true);
}

at::Tensor gelu_mlp_add(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& b1, const at::Tensor& w2,
                        const at::Tensor& b2, const at::Tensor& residual, bool accumulate_into_grad,
                        bool b2_grad_elsewhere) {
#if defined(MH_SDK_WITH_CUDA)
  if (gelu_mlp_fusable(x, w1, b1, w2, b2) && residual.scalar_type() == x.scalar_type())
    return GeluMlpFn::apply(x, w1, b1, w2, b2.defined() ? b2 : at::empty({0}, w2.options()), residual,
                            accumulate_into_grad, b2_grad_elsewhere);
#endif
  const at::Tensor b2_used = b2_grad_elsewhere && b2.defined() ? b2.detach() : b2;
  return gelu_mlp(x, w1, b1, w2, b2_used, accumulate_into_grad) + residual;
}

at::Tensor lm_head_cross_entropy(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& labels,
                                 bool accumulate_into_grad, bool notify_grad_ready) {
#if defined(MH_SDK_WITH_CUDA)
  if (accumulate_into_grad && at::GradMode::is_enabled() && weight.requires_grad() &&
      lm_head_fusable(x, weight, labels))
    return LmHeadCrossEntropyFn::apply(x, weight, labels, notify_grad_ready);
#endif
  return cross_entropy(linear(x, weight, at::Tensor(), accumulate_into_grad, notify_grad_ready), labels, nullptr);
}

bool lm_head_fuses(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& labels) {
#if defined(MH_SDK_WITH_CUDA)
  return lm_head_fusable(x, weight, labels);
#else
  (void)x, (void)weight, (void)labels;
  return false;
#endif
}

namespace reference {
at::Tensor gelu_mlp(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& b1, const at::Tensor& w2,
                    const at::Tensor& b2) {
  return at::linear(at::gelu(at::linear(x, w1, b1), "tanh"), w2, b2);
}
}  // namespace reference

}  // namespace megahost::sdk::fused
