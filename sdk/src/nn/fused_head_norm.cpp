// megahost SDK — fused::head_norm_rotary: q / k normed per head (qk_layernorm) and rotated in one
// pass on CUDA (kernels/head_norm.cu), else the reference (see megahost/sdk/nn/fused.h).
#include <ATen/ATen.h>

#include <cstdlib>
#include <string>

#include "megahost/sdk/error.h"
#include "megahost/sdk/nn/fused.h"

#if defined(MH_SDK_WITH_CUDA)
#include <torch/csrc/autograd/custom_function.h>

#include "fused_cuda.h"
#endif

namespace megahost::sdk::fused {

#if defined(MH_SDK_WITH_CUDA)
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
using namespace detail;

// t [s, b, n, d] or [s, b, n1, n2, d] at its strides (d contiguous); rot = 0: no rotation.
kernels::RotaryShape rows_of(const at::Tensor& t, int64_t rot) {
  const bool grouped = t.dim() == 5;
  kernels::RotaryShape shape{};
  shape.s = t.size(0), shape.b = t.size(1), shape.n1 = t.size(2), shape.n2 = grouped ? t.size(3) : 1;
  shape.d = t.size(-1), shape.rot = rot;
  shape.stride_s = t.stride(0), shape.stride_b = t.stride(1), shape.stride_n1 = t.stride(2);
  shape.stride_n2 = grouped ? t.stride(3) : 0;
  return shape;
}

// angles [s, 1, 1, rot] (any float dtype) -> [s, rot] float32 contiguous; undefined -> empty.
at::Tensor angle_rows(const at::Tensor& angles, const at::Tensor& like) {
  if (!angles.defined()) return at::empty({0}, like.options().dtype(at::kFloat));
  return angles.reshape({angles.size(0), angles.size(-1)}).to(like.device(), at::kFloat).contiguous();
}

// Saved: t, weight, bias (LayerNorm; else empty), angles [s, rot] (empty: none), mean, rstd.
struct HeadNormRotaryFn : torch::autograd::Function<HeadNormRotaryFn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& t, const at::Tensor& weight,
                            const at::Tensor& bias, const at::Tensor& angles, double eps, bool rms) {
    const c10::cuda::CUDAGuard guard(t.device());
    const kernels::RotaryShape shape = rows_of(t, angles.numel() > 0 ? angles.size(1) : 0);
    const int64_t rows = shape.s * shape.b * shape.n1 * shape.n2;
    const auto f32 = t.options().dtype(at::kFloat);
    at::Tensor out = at::empty({shape.s, shape.b, shape.n1 * shape.n2, shape.d}, t.options());  // [s, b, n, d]
    at::Tensor mean = at::empty({rms ? 0 : rows}, f32), rstd = at::empty({rows}, f32);
    check_launch(kernels::head_norm_rotary_forward(dtype_code(t), rms, t.data_ptr(), shape, weight.data_ptr(),
                                                   ptr_or_null(bias),
                                                   angles.numel() > 0 ? angles.data_ptr<float>() : nullptr,
                                                   static_cast<float>(eps), out.data_ptr(),
                                                   rms ? nullptr : mean.data_ptr<float>(), rstd.data_ptr<float>(),
                                                   stream_of(t)),
                 "head_norm_rotary_forward");
    ctx->save_for_backward({t, weight, bias, angles, mean, rstd});
    ctx->saved_data["rms"] = rms;
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &t = saved[0], &weight = saved[1], &bias = saved[2], &angles = saved[3];
    const bool rms = ctx->saved_data["rms"].toBool();
    const c10::cuda::CUDAGuard guard(t.device());
    const kernels::RotaryShape shape = rows_of(t, angles.numel() > 0 ? angles.size(1) : 0);
    // The gradient [s, b, n, d] at its strides, when they are whole vectors (else a copy).
    at::Tensor dout = grad[0];
    kernels::RotaryShape dout_shape = rows_of(dout, shape.rot);
    if (!kernels::head_norm_supported(dtype_code(dout), dout_shape, {dout.data_ptr()}) || dout.stride(-1) != 1) {
      dout = dout.contiguous();
      dout_shape = rows_of(dout, shape.rot);
    }
    const int64_t blocks = kernels::head_norm_backward_blocks(dtype_code(t), shape);
    const auto f32 = t.options().dtype(at::kFloat);
    at::Tensor dt = at::empty(t.sizes(), t.options());  // contiguous
    at::Tensor dweight_part = at::empty({blocks, shape.d}, f32);
    at::Tensor dbias_part = rms ? at::Tensor() : at::empty({blocks, shape.d}, f32);
    check_launch(kernels::head_norm_rotary_backward(
                     dtype_code(t), rms, dout.data_ptr(), dout_shape, t.data_ptr(), shape, weight.data_ptr(),
                     angles.numel() > 0 ? angles.data_ptr<float>() : nullptr, rms ? nullptr : saved[4].data_ptr<float>(),
                     saved[5].data_ptr<float>(), dt.data_ptr(), dweight_part.data_ptr<float>(),
                     rms ? nullptr : dbias_part.data_ptr<float>(), stream_of(t)),
                 "head_norm_rotary_backward");
    auto sums = grads_from_partial_sums({{dweight_part, weight}, {dbias_part, bias}});
    return {dt, sums[0], rms ? at::Tensor() : sums[1], at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// MEGAHOST_FUSED_HEAD_NORM=0: the norm and the rotation as two fused passes (the A/B of
// docs/performance.md).
bool head_norm_fusion_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("MEGAHOST_FUSED_HEAD_NORM");
    return v == nullptr || std::string(v) != "0";
  }();
  return on;
}

bool head_norm_kernel_takes(const at::Tensor& t, const at::Tensor& weight, const at::Tensor& bias, bool rms,
                            const at::Tensor& angles) {
  if (!head_norm_fusion_enabled() || !available(t) || (t.dim() != 4 && t.dim() != 5) || t.stride(-1) != 1) return false;
  if (weight.scalar_type() != t.scalar_type() || weight.numel() != t.size(-1) || !weight.is_contiguous()) return false;
  if (!rms && (!bias.defined() || bias.scalar_type() != t.scalar_type() || bias.numel() != t.size(-1) ||
               !bias.is_contiguous()))
    return false;
  if (angles.defined() && (angles.size(0) != t.size(0) || angles.numel() != t.size(0) * angles.size(-1))) return false;
  const int64_t rot = angles.defined() ? angles.size(-1) : 0;
  return kernels::head_norm_supported(dtype_code(t), rows_of(t, rot),
                                      {t.data_ptr(), weight.data_ptr(), rms ? nullptr : bias.data_ptr()});
}

}  // namespace
#endif

at::Tensor head_norm_rotary(const at::Tensor& t, const at::Tensor& weight, const at::Tensor& bias, double eps,
                            bool rms, const at::Tensor& angles) {
#if defined(MH_SDK_WITH_CUDA)
  if (head_norm_kernel_takes(t, weight, bias, rms, angles))
    return HeadNormRotaryFn::apply(t, weight, rms ? or_empty({}, weight) : bias, angle_rows(angles, t), eps, rms);
#endif
  // Two passes, each fused where it can be (on the CPU: the reference's norm, then its rotation).
  const at::Tensor normed = norm(t, weight, bias, eps, rms);  // [s, b, n1, (n2,) d]
  if (angles.defined()) return rotary(normed, angles);
  return normed.reshape({t.size(0), t.size(1), -1, t.size(-1)});
}

}  // namespace megahost::sdk::fused
