// megahost SDK — fused operations: the CUDA kernels behind autograd functions, or the references
// (see megahost/sdk/nn/fused.h).
#include <ATen/ATen.h>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <vector>

#include "megahost/sdk/error.h"
#include "megahost/sdk/nn/fused.h"
#include "megahost/sdk/param_remainders.h"
#include "megahost/sdk/scaled_state.h"
#include "megahost/sdk/stochastic_round.h"
#include "megahost/sdk/nn/params.h"
#include "megahost/sdk/parallel/dist.h"

#if defined(MH_SDK_WITH_CUDA)
#include <ATen/cuda/CUDAGeneratorImpl.h>
#include <torch/csrc/autograd/custom_function.h>

#include "fused_cuda.h"
#include "megahost/sdk/parallel/random.h"
#endif

namespace megahost::sdk::fused {

bool built_with_cuda() {
#if defined(MH_SDK_WITH_CUDA)
  return true;
#else
  return false;
#endif
}

namespace {
// A switch that is on unless the environment variable says 0.
bool on_unless_zero(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr || std::strcmp(v, "0") != 0;
}
bool fusion_enabled() {
  static const bool on = on_unless_zero("MEGAHOST_FUSED");
  return on;
}
[[maybe_unused]] bool embedding_fusion_enabled() {
  static const bool on = on_unless_zero("MEGAHOST_FUSED_EMBEDDING");
  return on;
}
}  // namespace

bool available(const at::Tensor& t) {
  if (!built_with_cuda() || !fusion_enabled() || !t.defined() || !t.is_cuda()) return false;
  const auto d = t.scalar_type();
  return d == at::kFloat || d == at::kBFloat16 || d == at::kHalf;
}

#if defined(MH_SDK_WITH_CUDA)
namespace detail {

namespace {
// param.grad() is where the sums may go: the leaf's bound gradient, dense, same size and device.
bool grad_takes_sums(const at::Tensor& param, int64_t n) {
  if (!param.defined() || !param.is_leaf() || !param.requires_grad()) return false;
  const at::Tensor& g = param.grad();
  return g.defined() && g.numel() == n && g.is_contiguous() && g.device() == param.device() &&
         (g.scalar_type() == at::kFloat || g.scalar_type() == param.scalar_type());
}
}  // namespace

// ---- column sums held back until the end of a backward (DeferredColumnSums) ----

namespace {

bool defer_column_sums_enabled() {
  static const bool on = on_unless_zero("MEGAHOST_DEFER_COLUMN_SUMS");
  return on;
}

struct HeldSum {
  at::Tensor partial;  // [rows, n] float32: alive until its sums are taken
  kernels::ColumnSumJob job;
  void* stream = nullptr;  // where the partial rows were written
};

struct Deferral {
  std::mutex mutex;
  bool active = false;
  std::vector<HeldSum> held;
};
Deferral& deferral() {
  static Deferral d;
  return d;
}

// One launch per (stream, rows, n) for up to kMaxColumnSumJobs sums. Every held sum targets a
// different gradient (hold() flushes before a second one), so the launches may run in any order;
// no grad-ready call follows (hold() takes only gradients no callback watches).
void launch_held(std::vector<HeldSum>& held) {
  std::vector<bool> done(held.size(), false);
  for (size_t first = 0; first < held.size(); ++first) {
    if (done[first]) continue;
    const HeldSum& a = held[first];
    kernels::ColumnSumJob launch[kernels::kMaxColumnSumJobs];
    int count = 0;
    for (size_t i = first; i < held.size() && count < kernels::kMaxColumnSumJobs; ++i) {
      const HeldSum& b = held[i];
      if (done[i] || b.stream != a.stream || b.partial.sizes() != a.partial.sizes()) continue;
      launch[count++] = b.job;
      done[i] = true;
    }
    const c10::cuda::CUDAGuard guard(a.partial.device());
    check_launch(kernels::column_sums(launch, count, a.partial.size(0), a.partial.size(1), a.stream), "column_sums");
  }
  held.clear();
}

// Holds job back when a DeferredColumnSums is alive and no grad-ready callback waits for the
// gradient; false: the caller launches it now.
bool hold(const at::Tensor& partial, const at::Tensor& param, const kernels::ColumnSumJob& job) {
  if (!defer_column_sums_enabled() || nn::has_grad_ready(param)) return false;
  Deferral& d = deferral();
  const std::lock_guard<std::mutex> lock(d.mutex);
  if (!d.active) return false;
  for (const HeldSum& h : d.held)
    if (h.job.out == job.out) {  // a second sum into the same gradient: the first goes out first
      launch_held(d.held);
      break;
    }
  d.held.push_back({partial, job, stream_of(partial)});
  return true;
}

}  // namespace

std::vector<at::Tensor> grads_from_partial_sums(const std::vector<PartialSums>& jobs) {
  std::vector<at::Tensor> out(jobs.size());
  kernels::ColumnSumJob launch[kernels::kMaxColumnSumJobs];
  std::vector<const at::Tensor*> notify;
  int count = 0;
  int64_t rows = -1, n = -1;
  at::Tensor any;
  MH_CHECK(jobs.size() <= static_cast<size_t>(kernels::kMaxColumnSumJobs), MH_ERR_INTERNAL,
           "grads_from_partial_sums: ", jobs.size(), " jobs");
  for (size_t i = 0; i < jobs.size(); ++i) {
    const at::Tensor& part = jobs[i].partial;
    if (!part.defined()) continue;
    MH_CHECK(part.scalar_type() == at::kFloat && part.dim() == 2 && part.is_contiguous() &&
                 (rows < 0 || (part.size(0) == rows && part.size(1) == n)),
             MH_ERR_INTERNAL, "grads_from_partial_sums: partial sums of shape ", part.sizes());
    rows = part.size(0), n = part.size(1);
    kernels::ColumnSumJob j;
    j.partial = part.data_ptr<float>();
    if (grad_takes_sums(jobs[i].param, n)) {
      at::Tensor g = jobs[i].param.grad();
      // A gradient that counts as zero (zero_grad_deferred) is assigned, not added to.
      j.out = g.data_ptr(), j.out_dtype = dtype_code(g), j.accumulate = nn::take_deferred_zero(jobs[i].param) ? 0 : 1;
      if (hold(part, jobs[i].param, j)) continue;
      notify.push_back(&jobs[i].param);
    } else {
      out[i] = at::empty({n}, part.options().dtype(jobs[i].param.scalar_type()));
      j.out = out[i].data_ptr(), j.out_dtype = dtype_code(out[i]), j.accumulate = 0;
    }
    launch[count++] = j;
    any = part;
  }
  if (count == 0) return out;
  const c10::cuda::CUDAGuard guard(any.device());
  check_launch(kernels::column_sums(launch, count, rows, n, stream_of(any)), "column_sums");
  for (const at::Tensor* p : notify) nn::notify_grad_accumulated(*p);
  return out;
}

}  // namespace detail

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

using detail::check_launch;
using detail::dtype_code;
using detail::or_empty;
using detail::ptr_or_null;
using detail::stream_of;

// ---- norms ----

// Runs the norm kernel; returns (y, sum or undefined, mean, rstd).
// x_bias [h] (may be undefined) is added to x before the residual.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> norm_forward(const at::Tensor& x, const at::Tensor& x_bias,
                                                                        const at::Tensor& residual,
                                                                        const at::Tensor& weight, const at::Tensor& bias,
                                                                        double eps, bool rms,
                                                                        const kernels::NormDropout* dropout = nullptr) {
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t h = x.size(-1), rows = x.numel() / h;
  at::Tensor y = at::empty_like(x), sum = residual.defined() ? at::empty_like(x) : at::Tensor();
  at::Tensor mean = at::empty({rms ? 0 : rows}, x.options().dtype(at::kFloat));
  at::Tensor rstd = at::empty({rows}, x.options().dtype(at::kFloat));
  check_launch(kernels::norm_forward(dtype_code(x), rms, x.data_ptr(), ptr_or_null(x_bias), ptr_or_null(residual),
                                     weight.data_ptr(),
                                     rms ? nullptr : ptr_or_null(bias), y.data_ptr(),
                                     sum.defined() ? sum.data_ptr() : nullptr, rms ? nullptr : mean.data_ptr<float>(),
                                     rstd.data_ptr<float>(), rows, h, static_cast<float>(eps), stream_of(x), dropout),
               "norm_forward");
  return {y, sum, mean, rstd};
}

// dx and the per-block partial column sums of (dweight, dbias, dx_bias) from dy (and dsum, the
// gradient of the residual output, may be undefined); dbias only with has_bias, dx_bias (the
// column sums of dx) only with has_x_bias. grads_from_partial_sums finishes them.
// The dropout probability and its keep scale 1 / (1 - p), as both kernels take them.
kernels::NormDropout norm_dropout(double p) {
  kernels::NormDropout d;
  d.p = static_cast<float>(p);
  d.scale = static_cast<float>(1.0 / (1.0 - p));
  return d;
}

// With keep (the forward's dropout mask bytes): also dx_drop, x's gradient through that dropout,
// whose column sums are then dxbias_part.
struct NormGrads {
  at::Tensor dx, dweight_part, dbias_part, dxbias_part, dx_drop;
};
NormGrads norm_backward(const at::Tensor& dy_in, const at::Tensor& dsum_in, const at::Tensor& sum,
                        const at::Tensor& weight, const at::Tensor& mean, const at::Tensor& rstd, bool rms,
                        bool has_bias, bool has_x_bias, const at::Tensor& keep = at::Tensor(), double p = 0.0) {
  const c10::cuda::CUDAGuard guard(sum.device());
  const int64_t h = sum.size(-1), rows = sum.numel() / h;
  const at::Tensor dy = dy_in.defined() ? dy_in.contiguous() : at::zeros_like(sum);
  const at::Tensor dsum = dsum_in.defined() ? dsum_in.contiguous() : at::Tensor();
  NormGrads g;
  g.dx = at::empty_like(sum);
  const int64_t blocks = kernels::norm_backward_blocks(dtype_code(sum), rms, rows, h, has_x_bias);
  const auto part_opts = sum.options().dtype(at::kFloat);
  g.dweight_part = at::empty({blocks, h}, part_opts);
  if (has_bias) g.dbias_part = at::empty({blocks, h}, part_opts);
  if (has_x_bias) g.dxbias_part = at::empty({blocks, h}, part_opts);
  kernels::NormDropout dropout = norm_dropout(p);
  if (keep.defined()) {
    g.dx_drop = at::empty_like(sum);
    dropout.keep = keep.data_ptr<uint8_t>();
    dropout.dx_drop = g.dx_drop.data_ptr();
  }
  check_launch(kernels::norm_backward(dtype_code(sum), rms, dy.data_ptr(), ptr_or_null(dsum), sum.data_ptr(),
                                      weight.data_ptr(), rms ? nullptr : mean.data_ptr<float>(),
                                      rstd.data_ptr<float>(), g.dx.data_ptr(), g.dweight_part.data_ptr<float>(),
                                      has_bias ? g.dbias_part.data_ptr<float>() : nullptr,
                                      has_x_bias ? g.dxbias_part.data_ptr<float>() : nullptr, rows, h, blocks,
                                      stream_of(sum), keep.defined() ? &dropout : nullptr),
               "norm_backward");
  return g;
}

struct NormFn : torch::autograd::Function<NormFn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x_in, const at::Tensor& weight,
                            const at::Tensor& bias, double eps, bool rms) {
    const at::Tensor x = x_in.contiguous();
    auto [y, unused, mean, rstd] = norm_forward(x, at::Tensor(), at::Tensor(), weight, bias, eps, rms);
    ctx->save_for_backward({x, weight, mean, rstd, bias});
    ctx->saved_data["rms"] = rms;
    return y;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    const auto s = ctx->get_saved_variables();
    const at::Tensor &weight = s[1], &bias = s[4];
    const bool rms = ctx->saved_data["rms"].toBool(), has_bias = bias.numel() > 0;
    NormGrads g = norm_backward(grad[0], at::Tensor(), s[0], weight, s[2], s[3], rms, has_bias, false);
    auto sums = detail::grads_from_partial_sums({{g.dweight_part, weight}, {g.dbias_part, bias}});
    return {g.dx, sums[0], sums[1], at::Tensor(), at::Tensor()};
  }
};

// The backward of a norm over the residual stream (AddNormFn, NormPassFn): saved (stream, weight,
// mean, rstd, bias, x_bias), grad = (dy, the stream's own gradient); dx and the finished
// gradients of weight, bias and x_bias (those bound to main gradients come back undefined).
struct StreamNormGrads {
  at::Tensor dx, dweight, dbias, dx_bias;
};
StreamNormGrads stream_norm_backward(AutogradContext* ctx, const variable_list& grad) {
  const auto s = ctx->get_saved_variables();
  const at::Tensor &weight = s[1], &bias = s[4], &x_bias = s[5];
  const bool rms = ctx->saved_data["rms"].toBool();
  NormGrads g = norm_backward(grad[0], grad[1], s[0], weight, s[2], s[3], rms, bias.numel() > 0, x_bias.numel() > 0);
  auto sums = detail::grads_from_partial_sums({{g.dweight_part, weight}, {g.dbias_part, bias}, {g.dxbias_part, x_bias}});
  return {g.dx, sums[0], sums[1], sums[2]};
}

struct AddNormFn : torch::autograd::Function<AddNormFn> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& x_bias,
                               const at::Tensor& residual, const at::Tensor& weight, const at::Tensor& bias,
                               double eps, bool rms) {
    const bool has_x_bias = x_bias.numel() > 0;
    auto [y, sum, mean, rstd] = norm_forward(x.contiguous(), has_x_bias ? x_bias : at::Tensor(),
                                             residual.contiguous(), weight, bias, eps, rms);
    ctx->save_for_backward({sum, weight, mean, rstd, bias, x_bias});
    ctx->saved_data["rms"] = rms;
    return {y, sum};
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    const StreamNormGrads g = stream_norm_backward(ctx, grad);
    // d sum / d x = d sum / d residual = 1; d sum / d x_bias sums over the rows.
    return {g.dx, g.dx_bias, g.dx, g.dweight, g.dbias, at::Tensor(), at::Tensor()};
  }
};

// The CUDA generator's Philox state for `increment` draws per subsequence, as libtorch's random
// kernels take it (inside a CUDA graph's recording: device pointers the replays fill). The
// generator is the thread's (a recompute's ScopedDefaultGenerator) or the device's default.
kernels::PhiloxArgs philox_args(const at::Device& device, uint64_t increment) {
  at::Generator gen = parallel::default_generator(device);
  auto* cuda_gen = at::check_generator<at::CUDAGeneratorImpl>(gen);
  at::PhiloxCudaState state;
  {
    std::lock_guard<std::mutex> lock(gen.mutex());
    state = cuda_gen->philox_cuda_state(increment);
  }
  kernels::PhiloxArgs a;
  a.captured = state.captured_ ? 1 : 0;
  if (state.captured_) {
    a.seed_ptr = state.seed_.ptr;
    a.offset_ptr = state.offset_.ptr;
    a.offset_intragraph = state.offset_intragraph_;
  } else {
    a.seed = state.seed_.val;
    a.offset = state.offset_.val;
  }
  return a;
}

// AddNormFn with dropout on x (add_dropout_norm): the forward draws the mask in the norm's pass and
// keeps it as bytes of bits; the backward gives x (and x_bias) the masked gradient, residual the
// plain one.
struct AddDropoutNormFn : torch::autograd::Function<AddDropoutNormFn> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& x_bias,
                               const at::Tensor& residual, const at::Tensor& weight, const at::Tensor& bias,
                               double eps, bool rms, double p) {
    const c10::cuda::CUDAGuard guard(x.device());
    const bool has_x_bias = x_bias.numel() > 0;
    const int64_t vector = kernels::norm_dropout_vector(dtype_code(x));
    at::Tensor keep = at::empty({x.numel() / vector}, x.options().dtype(at::kByte));
    kernels::NormDropout dropout = norm_dropout(p);
    dropout.keep = keep.data_ptr<uint8_t>();
    dropout.rng = philox_args(x.device(), kernels::kPhiloxIncrement);
    auto [y, sum, mean, rstd] = norm_forward(x.contiguous(), has_x_bias ? x_bias : at::Tensor(),
                                             residual.contiguous(), weight, bias, eps, rms, &dropout);
    ctx->save_for_backward({sum, weight, mean, rstd, bias, x_bias, keep});
    ctx->saved_data["rms"] = rms;
    ctx->saved_data["p"] = p;
    return {y, sum};
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    const auto s = ctx->get_saved_variables();  // as saved in forward
    const at::Tensor &sum = s[0], &weight = s[1], &mean = s[2], &rstd = s[3], &bias = s[4], &x_bias = s[5],
                     &keep = s[6];
    NormGrads g = norm_backward(grad[0], grad[1], sum, weight, mean, rstd, ctx->saved_data["rms"].toBool(),
                                bias.numel() > 0, x_bias.numel() > 0, keep, ctx->saved_data["p"].toDouble());
    auto sums =
        detail::grads_from_partial_sums({{g.dweight_part, weight}, {g.dbias_part, bias}, {g.dxbias_part, x_bias}});
    return {g.dx_drop, sums[2], g.dx, sums[0], sums[1], at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// norm(x) and x itself as a second output that x's other use (the residual stream) takes, so the
// backward adds that use's gradient inside the norm's pass (no separate add). x_bias [h] (or
// empty): a bias already inside x (added by the product that made x) whose gradient, the column
// sums of dx, comes out of the same pass.
struct NormPassFn : torch::autograd::Function<NormPassFn> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x_in, const at::Tensor& x_bias,
                               const at::Tensor& weight, const at::Tensor& bias, double eps, bool rms) {
    const at::Tensor x = x_in.contiguous();
    auto [y, unused, mean, rstd] = norm_forward(x, at::Tensor(), at::Tensor(), weight, bias, eps, rms);
    ctx->save_for_backward({x, weight, mean, rstd, bias, x_bias});
    ctx->saved_data["rms"] = rms;
    return {y, x_in};  // x_in comes back as a view with this node as its gradient's way back
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    const StreamNormGrads g = stream_norm_backward(ctx, grad);
    return {g.dx, g.dx_bias, g.dweight, g.dbias, at::Tensor(), at::Tensor()};
  }
};

// ---- activations ----

struct BiasGeluFn : torch::autograd::Function<BiasGeluFn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x_in, const at::Tensor& bias) {
    const c10::cuda::CUDAGuard guard(x_in.device());
    const at::Tensor x = x_in.contiguous();
    const int64_t n = x.size(-1), rows = x.numel() / n;
    at::Tensor y = at::empty_like(x);
    check_launch(kernels::bias_gelu_forward(dtype_code(x), /*tanh=*/false, x.data_ptr(), ptr_or_null(bias),
                                            y.data_ptr(), rows, n, stream_of(x)),
                 "bias_gelu_forward");
    ctx->save_for_backward({x, bias});
    return y;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    const auto s = ctx->get_saved_variables();
    const at::Tensor &x = s[0], &bias = s[1];
    const c10::cuda::CUDAGuard guard(x.device());
    const at::Tensor dy = grad[0].contiguous();
    const int64_t n = x.size(-1), rows = x.numel() / n;
    at::Tensor dx = at::empty_like(x);
    // The bias gradient comes out of the same pass as per-block column sums (n <= 12,288).
    const bool has_bias = bias.numel() > 0, sums_in_kernel = has_bias && n <= 12288;
    const int64_t blocks = sums_in_kernel ? kernels::bias_gelu_backward_blocks(dtype_code(x), false, bias.numel() > 0, rows, n) : 0;
    at::Tensor partial = sums_in_kernel ? at::empty({blocks, n}, x.options().dtype(at::kFloat)) : at::Tensor();
    check_launch(kernels::bias_gelu_backward(dtype_code(x), /*tanh=*/false, dy.data_ptr(), x.data_ptr(),
                                             ptr_or_null(bias), dx.data_ptr(),
                                             sums_in_kernel ? partial.data_ptr<float>() : nullptr, blocks, rows, n,
                                             stream_of(x)),
                 "bias_gelu_backward");
    at::Tensor dbias;
    if (sums_in_kernel) dbias = detail::grads_from_partial_sums({{partial, bias}})[0];
    else if (has_bias) dbias = dx.view({rows, n}).sum(0, false, at::kFloat).to(bias.scalar_type());
    return {dx, dbias};
  }
};

struct SwigluFn : torch::autograd::Function<SwigluFn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x_in) {
    const c10::cuda::CUDAGuard guard(x_in.device());
    const at::Tensor x = x_in.contiguous();
    const int64_t f = x.size(-1) / 2, rows = x.numel() / (2 * f);
    std::vector<int64_t> shape = x.sizes().vec();
    shape.back() = f;
    at::Tensor y = at::empty(shape, x.options());
    check_launch(kernels::swiglu_forward(dtype_code(x), x.data_ptr(), y.data_ptr(), rows, f, stream_of(x)),
                 "swiglu_forward");
    ctx->save_for_backward({x});
    return y;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    const at::Tensor x = ctx->get_saved_variables()[0];
    const c10::cuda::CUDAGuard guard(x.device());
    const at::Tensor dy = grad[0].contiguous();
    const int64_t f = x.size(-1) / 2, rows = x.numel() / (2 * f);
    at::Tensor dx = at::empty_like(x);
    check_launch(kernels::swiglu_backward(dtype_code(x), dy.data_ptr(), x.data_ptr(), dx.data_ptr(), rows, f,
                                          stream_of(x)),
                 "swiglu_backward");
    return {dx};
  }
};

// ---- rotary ----

// t [s, b, n, d] or [s, b, n1, n2, d] at any strides (d contiguous) -> contiguous [s, b, n1 * n2, d].
at::Tensor rotary_launch(const at::Tensor& t, const at::Tensor& angles, float sign) {
  const c10::cuda::CUDAGuard guard(t.device());
  const bool grouped = t.dim() == 5;
  kernels::RotaryShape shape{};
  shape.s = t.size(0), shape.b = t.size(1), shape.n1 = t.size(2), shape.n2 = grouped ? t.size(3) : 1;
  shape.d = t.size(-1), shape.rot = angles.size(-1);
  shape.stride_s = t.stride(0), shape.stride_b = t.stride(1), shape.stride_n1 = t.stride(2);
  shape.stride_n2 = grouped ? t.stride(3) : 0;
  at::Tensor out = at::empty({shape.s, shape.b, shape.n1 * shape.n2, shape.d}, t.options());
  check_launch(kernels::rotary(dtype_code(t), t.data_ptr(), shape, angles.data_ptr<float>(), out.data_ptr(), sign,
                               stream_of(t)),
               "rotary");
  return out;
}

struct RotaryFn : torch::autograd::Function<RotaryFn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& t_in, const at::Tensor& angles_in) {
    const at::Tensor t = t_in.stride(-1) == 1 ? t_in : t_in.contiguous();
    const at::Tensor angles = angles_in.reshape({angles_in.size(0), angles_in.size(-1)}).to(at::kFloat).contiguous();
    ctx->save_for_backward({angles});
    ctx->saved_data["sizes"] = t_in.sizes().vec();
    return rotary_launch(t, angles, 1.0f);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    const at::Tensor angles = ctx->get_saved_variables()[0];
    const at::Tensor g = grad[0].stride(-1) == 1 ? grad[0] : grad[0].contiguous();  // read at its strides
    const at::Tensor dt = rotary_launch(g, angles, -1.0f);                           // the inverse rotation
    return {dt.view(ctx->saved_data["sizes"].toIntVector()), at::Tensor()};
  }
};

// ---- cross entropy ----

struct CrossEntropyFn : torch::autograd::Function<CrossEntropyFn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& logits_in, const at::Tensor& labels_in,
                            const parallel::DistGroup* tp) {
    const c10::cuda::CUDAGuard guard(logits_in.device());
    const at::Tensor logits = logits_in.contiguous(), labels = labels_in.to(at::kLong).contiguous();
    const int64_t rows = logits.size(0), v = logits.size(1);
    const int64_t start = tp != nullptr ? static_cast<int64_t>(tp->rank()) * v : 0;
    const auto f32 = logits.options().dtype(at::kFloat);
    at::Tensor max = at::empty({rows}, f32), sumexp = at::empty({rows}, f32), target = at::empty({rows}, f32);
    check_launch(kernels::cross_entropy_stats(dtype_code(logits), logits.data_ptr(), labels.data_ptr<int64_t>(), start,
                                              max.data_ptr<float>(), sumexp.data_ptr<float>(),
                                              target.data_ptr<float>(), rows, v, stream_of(logits)),
                 "cross_entropy_stats");
    if (tp != nullptr && tp->size() > 1) {  // combine the vocabulary slices (Megatron's three all-reduces)
      at::Tensor global_max = max.clone();
      tp->all_reduce(global_max, MH_REDUCE_MAX);
      sumexp = sumexp * at::exp(max - global_max);
      tp->all_reduce(sumexp);
      tp->all_reduce(target);
      max = global_max;
    }
    const at::Tensor lse = max + at::log(sumexp);  // [rows]
    ctx->save_for_backward({logits, labels, lse});
    ctx->saved_data["start"] = start;
    return lse - target;  // [rows]
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    const auto s = ctx->get_saved_variables();
    const at::Tensor &logits = s[0], &labels = s[1], &lse = s[2];
    const c10::cuda::CUDAGuard guard(logits.device());
    const at::Tensor g = grad[0].to(at::kFloat).contiguous();
    at::Tensor dlogits = at::empty_like(logits);
    check_launch(kernels::cross_entropy_backward(dtype_code(logits), logits.data_ptr(), labels.data_ptr<int64_t>(),
                                                 ctx->saved_data["start"].toInt(), lse.data_ptr<float>(),
                                                 g.data_ptr<float>(), dlogits.data_ptr(), logits.size(0),
                                                 logits.size(1), stream_of(logits)),
                 "cross_entropy_backward");
    return {dlogits, at::Tensor(), at::Tensor()};
  }
};

// ---- input embedding ----

// The table's gradient for the embedding backward: its bound main gradient (added into), else a
// fresh zero tensor returned to autograd.
at::Tensor embedding_grad_target(const at::Tensor& table, bool* bound) {
  *bound = detail::grad_takes_sums(table, table.numel());
  return *bound ? table.grad() : at::zeros_like(table);
}

struct EmbeddingFn : torch::autograd::Function<EmbeddingFn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& word, const at::Tensor& ids_in,
                            const at::Tensor& pos, const at::Tensor& pos_ids_in, bool word_other_use) {
    const c10::cuda::CUDAGuard guard(word.device());
    const at::Tensor ids = ids_in.to(at::kLong).contiguous();  // [b, s]
    const bool has_pos = pos.numel() > 0;
    const at::Tensor pos_ids = has_pos ? pos_ids_in.to(at::kLong).expand(ids.sizes()).contiguous() : at::Tensor();
    const int64_t b = ids.size(0), s = ids.size(1), h = word.size(1);
    at::Tensor out = at::empty({s, b, h}, word.options());
    check_launch(kernels::embedding_forward(dtype_code(word), word.data_ptr(), ids.data_ptr<int64_t>(),
                                            has_pos ? pos.data_ptr() : nullptr,
                                            has_pos ? pos_ids.data_ptr<int64_t>() : nullptr, out.data_ptr(), b, s, h,
                                            stream_of(word)),
                 "embedding_forward");
    ctx->save_for_backward({word, ids, pos, has_pos ? pos_ids : ids});
    ctx->saved_data["word_other_use"] = word_other_use;
    return out;  // [s, b, h]
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &word = saved[0], &ids = saved[1], &pos = saved[2], &pos_ids = saved[3];
    const c10::cuda::CUDAGuard guard(word.device());
    const at::Tensor dy = grad[0].contiguous();  // [s, b, h]
    const int64_t b = ids.size(0), s = ids.size(1), h = word.size(1);
    // One table: its ids sorted (stable: a run's rows are summed in token order, every time).
    auto table_backward = [&](const at::Tensor& table, const at::Tensor& table_ids, bool notify) -> at::Tensor {
      bool bound = false;
      at::Tensor g = embedding_grad_target(table, &bound);
      if (bound && nn::take_deferred_zero(table)) g.zero_();  // rows are added sparsely: zero it first
      const auto [sorted, order] = at::sort(table_ids.reshape({-1}), /*stable=*/true, /*dim=*/0, /*descending=*/false);
      at::Tensor scratch = at::empty({kernels::embedding_backward_scratch_floats(b, s, h)},
                                     dy.options().dtype(at::kFloat));  // partial sums of long runs
      check_launch(kernels::embedding_backward(dtype_code(dy), dy.data_ptr(), sorted.data_ptr<int64_t>(),
                                               order.data_ptr<int64_t>(), g.data_ptr(), dtype_code(g),
                                               scratch.data_ptr<float>(), b, s, h, stream_of(dy)),
                   "embedding_backward");
      if (!bound) return g;
      // With another use of the table in the graph, autograd's accumulation of that use fires
      // the grad-ready hook (after this ran: it waits for every use); without, it is ours.
      if (notify) nn::notify_grad_accumulated(table);
      return {};
    };
    const at::Tensor dword = table_backward(word, ids, !ctx->saved_data["word_other_use"].toBool());
    const at::Tensor dpos = pos.numel() > 0 ? table_backward(pos, pos_ids, true) : at::Tensor();
    return {dword, at::Tensor(), dpos, at::Tensor(), at::Tensor()};
  }
};

}  // namespace
#endif  // MH_SDK_WITH_CUDA

DeferredColumnSums::DeferredColumnSums() {
#if defined(MH_SDK_WITH_CUDA)
  if (!detail::defer_column_sums_enabled()) return;
  detail::Deferral& d = detail::deferral();
  const std::lock_guard<std::mutex> lock(d.mutex);
  if (d.active) return;  // nested: the outer one holds and flushes
  d.active = owner_ = true;
#endif
}

DeferredColumnSums::~DeferredColumnSums() {
#if defined(MH_SDK_WITH_CUDA)
  if (!owner_) return;
  detail::Deferral& d = detail::deferral();
  const std::lock_guard<std::mutex> lock(d.mutex);
  // Not flushed (the backward threw), or held from a second thread's backward while this one was
  // alive: their partial rows are written on their streams, so the sums may run now.
  try {
    detail::launch_held(d.held);
  } catch (...) {
    d.held.clear();
  }
  d.active = false;
#endif
}

void DeferredColumnSums::flush() {
#if defined(MH_SDK_WITH_CUDA)
  if (!owner_) return;
  detail::Deferral& d = detail::deferral();
  const std::lock_guard<std::mutex> lock(d.mutex);
  detail::launch_held(d.held);
#endif
}

at::Tensor embedding_sbh(const at::Tensor& word, const at::Tensor& ids, const at::Tensor& pos,
                         const at::Tensor& pos_ids, bool word_other_use) {
#if defined(MH_SDK_WITH_CUDA)
  const bool has_pos = pos.defined();
  if (available(word) && word.dim() == 2 && word.is_contiguous() && ids.dim() == 2 && ids.device() == word.device() &&
      word.size(1) % 8 == 0 && embedding_fusion_enabled() &&
      (!has_pos || (pos.scalar_type() == word.scalar_type() && pos.is_contiguous() && pos.size(1) == word.size(1) &&
                    pos_ids.defined() && pos_ids.device() == word.device())))
    return EmbeddingFn::apply(word, ids, has_pos ? pos : at::empty({0}, word.options()),
                              has_pos ? pos_ids : at::empty({0}, ids.options()), word_other_use);
#endif
  return reference::embedding_sbh(word, ids, pos, pos_ids);
}

#if defined(MH_SDK_WITH_CUDA)
namespace {
// The norm kernels take rows of x's hidden size (GPT-3 175B's 12288 in bf16: yes; in float32 the
// libtorch reference runs).
bool norm_kernels_take(const at::Tensor& x) {
  return available(x) && x.dim() > 0 && kernels::norm_supported(dtype_code(x), x.size(-1));
}
}  // namespace
#endif

bool dropout_in_norm(const at::Tensor& x) {
#if defined(MH_SDK_WITH_CUDA)
  return norm_kernels_take(x) && kernels::norm_dropout_supported(dtype_code(x), x.size(-1));
#else
  (void)x;
  return false;
#endif
}

std::pair<at::Tensor, at::Tensor> add_norm(const at::Tensor& x, const at::Tensor& residual, const at::Tensor& weight,
                                           const at::Tensor& bias, double eps, bool rms, const at::Tensor& x_bias) {
#if defined(MH_SDK_WITH_CUDA)
  if (norm_kernels_take(x) && x.sizes() == residual.sizes() && x.scalar_type() == residual.scalar_type() &&
      x.scalar_type() == weight.scalar_type() &&
      (!x_bias.defined() || (x_bias.scalar_type() == x.scalar_type() && x_bias.numel() == x.size(-1)))) {
    auto out = AddNormFn::apply(x, or_empty(x_bias, x), residual, weight,
                                rms ? or_empty({}, weight) : or_empty(bias, weight), eps, rms);
    return {out[0], out[1]};
  }
#endif
  return reference::add_norm(x, residual, weight, bias, eps, rms, x_bias);
}

std::pair<at::Tensor, at::Tensor> add_dropout_norm(const at::Tensor& x, const at::Tensor& residual,
                                                   const at::Tensor& weight, const at::Tensor& bias, double eps,
                                                   bool rms, const at::Tensor& x_bias, double p) {
  if (p <= 0.0) return add_norm(x, residual, weight, bias, eps, rms, x_bias);
  MH_CHECK(p < 1.0, MH_ERR_INVALID_ARG, "add_dropout_norm: dropout probability ", p, " must be below 1");
#if defined(MH_SDK_WITH_CUDA)
  if (dropout_in_norm(x) && x.sizes() == residual.sizes() && x.scalar_type() == residual.scalar_type() &&
      x.scalar_type() == weight.scalar_type() &&
      (!x_bias.defined() || (x_bias.scalar_type() == x.scalar_type() && x_bias.numel() == x.size(-1)))) {
    auto out = AddDropoutNormFn::apply(x, or_empty(x_bias, x), residual, weight,
                                       rms ? or_empty({}, weight) : or_empty(bias, weight), eps, rms, p);
    return {out[0], out[1]};
  }
  // A hidden size the register kernels do not fill exactly (1020): libtorch's dropout on the
  // thread's generator, then the fused add + norm (not the reference's separate add and norm).
  if (norm_kernels_take(x)) {
    const at::Tensor dropped = parallel::replicated_dropout(x_bias.defined() ? x + x_bias : x, p, /*training=*/true);
    return add_norm(dropped, residual, weight, bias, eps, rms);
  }
#endif
  return reference::add_dropout_norm(x, residual, weight, bias, eps, rms, x_bias, p);
}

std::pair<at::Tensor, at::Tensor> norm_passthrough(const at::Tensor& x, const at::Tensor& weight,
                                                   const at::Tensor& bias, double eps, bool rms,
                                                   const at::Tensor& x_bias) {
#if defined(MH_SDK_WITH_CUDA)
  if (norm_kernels_take(x) && x.scalar_type() == weight.scalar_type() &&
      (!x_bias.defined() || (x_bias.scalar_type() == x.scalar_type() && x_bias.numel() == x.size(-1)))) {
    auto out = NormPassFn::apply(x, or_empty(x_bias, x), weight, rms ? or_empty({}, weight) : or_empty(bias, weight),
                                 eps, rms);
    return {out[0], out[1]};
  }
#endif
  return reference::norm_passthrough(x, weight, bias, eps, rms, x_bias);
}

at::Tensor norm(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, double eps, bool rms) {
#if defined(MH_SDK_WITH_CUDA)
  if (norm_kernels_take(x) && x.scalar_type() == weight.scalar_type())
    return NormFn::apply(x, weight, rms ? or_empty({}, weight) : or_empty(bias, weight), eps, rms);
#endif
  return reference::norm(x, weight, bias, eps, rms);
}

at::Tensor bias_gelu(const at::Tensor& x, const at::Tensor& bias) {
#if defined(MH_SDK_WITH_CUDA)
  if (available(x) && (!bias.defined() || bias.scalar_type() == x.scalar_type()) &&
      kernels::elementwise_vectorizable(dtype_code(x), x.size(-1), {x.data_ptr(), ptr_or_null(bias)}))
    return BiasGeluFn::apply(x, or_empty(bias, x));
#endif
  return reference::bias_gelu(x, bias);
}

at::Tensor swiglu(const at::Tensor& x) {
#if defined(MH_SDK_WITH_CUDA)
  if (available(x) && kernels::elementwise_vectorizable(dtype_code(x), x.size(-1) / 2, {x.data_ptr()}))
    return SwigluFn::apply(x);
#endif
  return reference::swiglu(x);
}

at::Tensor rotary(const at::Tensor& t, const at::Tensor& angles) {
#if defined(MH_SDK_WITH_CUDA)
  if (available(t) && (t.dim() == 4 || t.dim() == 5) && angles.size(0) == t.size(0) &&
      angles.numel() == t.size(0) * angles.size(-1))
    return RotaryFn::apply(t, angles);
#endif
  return reference::rotary(t, angles);
}

at::Tensor cross_entropy(const at::Tensor& logits, const at::Tensor& labels, const parallel::DistGroup* tp) {
#if defined(MH_SDK_WITH_CUDA)
  if (available(logits) && logits.dim() == 2) return CrossEntropyFn::apply(logits, labels, tp);
#endif
  return reference::cross_entropy(logits, labels, tp);
}

void adamw(const std::vector<at::Tensor>& params, const std::vector<at::Tensor>& grads,
           const std::vector<at::Tensor>& exp_avgs, const std::vector<at::Tensor>& exp_avg_sqs,
           const std::vector<double>& weight_decays, const AdamWHyper& h,
           const std::vector<at::Tensor>& model_copies, const std::vector<at::Tensor>& remainders,
           const std::vector<int64_t>& offsets, const AdamWScales& scales) {
  MH_CHECK(offsets.empty() || offsets.size() == params.size(), MH_ERR_INVALID_ARG,
           "fused::adamw: one offset per param, or none");
  MH_CHECK(grads.size() == params.size() && exp_avgs.size() == params.size() && exp_avg_sqs.size() == params.size() &&
               weight_decays.size() == params.size() && (model_copies.empty() || model_copies.size() == params.size()) &&
               (remainders.empty() || remainders.size() == params.size()),
           MH_ERR_INVALID_ARG, "fused::adamw: lists of different lengths");
  MH_CHECK((scales.exp_avg.empty() || scales.exp_avg.size() == params.size()) &&
               (scales.exp_avg_sq.empty() || scales.exp_avg_sq.size() == params.size()),
           MH_ERR_INVALID_ARG, "fused::adamw: one scale per param and moment, or none");
  auto scale_of = [](const std::vector<at::Tensor>& s, size_t i) { return s.empty() ? at::Tensor() : s[i]; };
  bool any_scaled = false;
  for (size_t i = 0; i < params.size(); ++i)
    for (const auto& [moment, scale] : {std::pair{&exp_avgs[i], scale_of(scales.exp_avg, i)},
                                        std::pair{&exp_avg_sqs[i], scale_of(scales.exp_avg_sq, i)}}) {
      MH_CHECK(scale.defined() == is_scaled_dtype(moment->scalar_type()), MH_ERR_INVALID_ARG,
               "fused::adamw: a float16 or uint8 (E4M3) moment needs its float32 scale, and only such a moment");
      any_scaled = any_scaled || scale.defined();
    }
  const bool with_remainders = !remainders.empty();
  MH_CHECK(!with_remainders || model_copies.empty(), MH_ERR_INVALID_ARG,
           "fused::adamw: remainders update the bf16 params in place; pass no model_copies with them");
  for (size_t i = 0; with_remainders && i < params.size(); ++i)
    MH_CHECK(params[i].scalar_type() == at::kBFloat16 && remainders[i].defined() &&
                 remainders[i].scalar_type() == at::kShort && remainders[i].sizes() == params[i].sizes() &&
                 params[i].is_contiguous() && remainders[i].is_contiguous(),
             MH_ERR_INVALID_ARG, "fused::adamw: with remainders, param ", i,
             " must be contiguous bf16 and its remainder a contiguous int16 tensor of its shape");
  auto copy_of = [&](size_t i) { return model_copies.empty() ? at::Tensor() : model_copies[i]; };
  const at::Tensor& scale_tensor = h.grad_scale_tensor;
  MH_CHECK(!scale_tensor.defined() || (scale_tensor.numel() == 1 && scale_tensor.scalar_type() == at::kFloat),
           MH_ERR_INVALID_ARG, "fused::adamw: grad_scale_tensor must be one float32 element");
#if defined(MH_SDK_WITH_CUDA)
  bool fused = !params.empty() && available(params[0]) &&
               (!scale_tensor.defined() || scale_tensor.device() == params[0].device());
  for (size_t i = 0; fused && i < params.size(); ++i) {
    for (const at::Tensor* t : {&grads[i], &exp_avgs[i], &exp_avg_sqs[i]})  // float32 or bf16 each, or scaled moments
      fused = fused && t->is_cuda() &&
              (t->scalar_type() == at::kFloat || t->scalar_type() == at::kBFloat16 ||
               (t != &grads[i] && is_scaled_dtype(t->scalar_type()))) &&
              t->is_contiguous() && t->device() == params[0].device();
    for (const at::Tensor& s : {scale_of(scales.exp_avg, i), scale_of(scales.exp_avg_sq, i)})
      fused = fused && (!s.defined() || (s.device() == params[0].device() && s.scalar_type() == at::kFloat));
    fused = fused && params[i].is_cuda() && params[i].is_contiguous() &&
            (with_remainders ? remainders[i].device() == params[0].device() : params[i].scalar_type() == at::kFloat);
  }
  for (size_t i = 0; fused && i < params.size(); ++i) {
    const at::Tensor c = copy_of(i);
    fused = !c.defined() || ((c.scalar_type() == at::kBFloat16 || c.scalar_type() == at::kHalf) && c.is_contiguous() &&
                             c.device() == params[0].device() && c.numel() == params[i].numel());
  }
  if (fused) {
    const c10::cuda::CUDAGuard guard(params[0].device());
    const int64_t count = static_cast<int64_t>(params.size());
    // The tensor table and chunk prefix sums travel in one pinned buffer (copied on the stream).
    const int64_t table_bytes = count * static_cast<int64_t>(sizeof(kernels::AdamWTensor));
    const int64_t bytes = table_bytes + (count + 1) * static_cast<int64_t>(sizeof(int64_t));
    at::Tensor host = at::empty({bytes}, at::TensorOptions().dtype(at::kByte).pinned_memory(true));
    auto* table = reinterpret_cast<kernels::AdamWTensor*>(host.data_ptr<uint8_t>());
    auto* chunk_start = reinterpret_cast<int64_t*>(host.data_ptr<uint8_t>() + table_bytes);
    chunk_start[0] = 0;
    bool bf16_moments = true;
    // Scaled moments: each tensor's two largest updated magnitudes, found by the first pass.
    const at::Tensor amax = any_scaled ? at::zeros({count, 2}, params[0].options().dtype(at::kFloat)) : at::Tensor();
    auto moment_code = [](const at::Tensor& t) { return t.scalar_type() == at::kByte ? kernels::kE4M3 : dtype_code(t); };
    for (int64_t i = 0; i < count; ++i) {
      const at::Tensor c = copy_of(i);
      kernels::AdamWTensor& e = table[i];
      e = {};
      e.grad = grads[i].data_ptr();  // float32, or bf16 main gradients
      e.grad_dtype = dtype_code(grads[i]);
      e.exp_avg = exp_avgs[i].data_ptr();  // float32, or bf16 / fp16 / fp8 (Megatron's --exp-avg-dtype)
      e.exp_avg_dtype = moment_code(exp_avgs[i]);
      e.exp_avg_sq = exp_avg_sqs[i].data_ptr();
      e.exp_avg_sq_dtype = moment_code(exp_avg_sqs[i]);
      if (any_scaled) {
        const at::Tensor sm = scale_of(scales.exp_avg, i), sv = scale_of(scales.exp_avg_sq, i);
        e.exp_avg_scale = sm.defined() ? sm.data_ptr<float>() : nullptr;
        e.exp_avg_sq_scale = sv.defined() ? sv.data_ptr<float>() : nullptr;
        e.amax = amax.data_ptr<float>() + 2 * i;
      }
      bf16_moments = bf16_moments && e.exp_avg_dtype == kernels::kBF16 && e.exp_avg_sq_dtype == kernels::kBF16;
      e.numel = params[i].numel();
      e.index_base = offsets.empty() ? 0 : offsets[i];
      e.weight_decay = static_cast<float>(weight_decays[i]);
      if (with_remainders) {
        e.param16 = static_cast<uint16_t*>(params[i].data_ptr());
        e.remainder = remainders[i].data_ptr<int16_t>();
      } else {
        e.param = params[i].data_ptr<float>();
        e.copy_dtype = c.defined() ? dtype_code(c) : 0;
        e.model_copy = c.defined() ? c.data_ptr() : nullptr;
      }
      chunk_start[i + 1] = chunk_start[i] + (params[i].numel() + kernels::kAdamWChunk - 1) / kernels::kAdamWChunk;
    }
    const int64_t total_chunks = chunk_start[count];
    const at::Tensor dev = host.to(params[0].device(), /*non_blocking=*/true);
    const double bc1 = 1.0 - std::pow(h.beta1, static_cast<double>(h.step));
    const double bc2 = 1.0 - std::pow(h.beta2, static_cast<double>(h.step));
    check_launch(kernels::adamw_multi_tensor(
                     reinterpret_cast<const kernels::AdamWTensor*>(dev.data_ptr<uint8_t>()),
                     reinterpret_cast<const int64_t*>(dev.data_ptr<uint8_t>() + table_bytes), count, total_chunks,
                     static_cast<float>(h.lr), static_cast<float>(h.beta1), static_cast<float>(h.beta2),
                     static_cast<float>(h.eps), static_cast<float>(bc1), static_cast<float>(std::sqrt(bc2)),
                     static_cast<float>(h.grad_scale),
                     scale_tensor.defined() ? scale_tensor.data_ptr<float>() : nullptr, with_remainders,
                     bf16_moments, any_scaled, stochastic_round::salt(h.step), stream_of(params[0])),
                 "adamw");
    return;
  }
#endif
  if (any_scaled) {  // the float32 values through the path below, stored back scaled
    std::vector<at::Tensor> m = exp_avgs, v = exp_avg_sqs;
    for (size_t i = 0; i < params.size(); ++i) {
      if (scale_of(scales.exp_avg, i).defined()) m[i] = unscale(exp_avgs[i], scales.exp_avg[i]);
      if (scale_of(scales.exp_avg_sq, i).defined()) v[i] = unscale(exp_avg_sqs[i], scales.exp_avg_sq[i]);
    }
    adamw(params, grads, m, v, weight_decays, h, model_copies, remainders, offsets);
    for (size_t i = 0; i < params.size(); ++i) {
      if (scale_of(scales.exp_avg, i).defined()) store_scaled(m[i], exp_avgs[i], scales.exp_avg[i]);
      if (scale_of(scales.exp_avg_sq, i).defined()) store_scaled(v[i], exp_avg_sqs[i], scales.exp_avg_sq[i]);
    }
    return;
  }
  if (with_remainders) {  // the exact fp32 masters, the reference update, split back
    std::vector<at::Tensor> masters;
    for (size_t i = 0; i < params.size(); ++i) masters.push_back(compose_fp32(params[i], remainders[i]));
    reference::adamw(masters, grads, exp_avgs, exp_avg_sqs, weight_decays, h, offsets);
    for (size_t i = 0; i < params.size(); ++i) split_fp32(masters[i], params[i], remainders[i]);
    return;
  }
  reference::adamw(params, grads, exp_avgs, exp_avg_sqs, weight_decays, h, offsets);
  for (size_t i = 0; i < model_copies.size(); ++i)
    if (model_copies[i].defined()) model_copies[i].copy_(params[i]);
}

}  // namespace megahost::sdk::fused
