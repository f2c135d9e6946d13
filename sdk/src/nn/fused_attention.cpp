// megahost SDK — fused::packed_causal_attention: cuDNN's causal attention whose backward writes
// dq / dk / dv into one buffer laid out as the packed q/k/v they were viewed from, so linear_qkv's
// backward reads it as its output gradient with no pack pass (see megahost/sdk/nn/fused.h).
#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <numeric>
#include <string>
#include <vector>

#include "megahost/sdk/compat.h"
#include "megahost/sdk/error.h"
#include "megahost/sdk/nn/fused.h"

#if defined(MH_SDK_WITH_CUDA)
#include <torch/csrc/autograd/custom_function.h>

#include "../kernels/cudnn_sdpa.h"
#include "fused_cuda.h"
#endif

namespace megahost::sdk::fused {

#if defined(MH_SDK_WITH_CUDA)
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
using namespace detail;

bool packed_attention_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("MEGAHOST_PACKED_ATTENTION_BACKWARD");
    return v == nullptr || std::string(v) != "0";
  }();
  return on;
}

// Dense strides in the dimension order of `like` (outermost = largest stride): the layout
// libtorch's cuDNN attention gives its output.
std::vector<int64_t> dense_like(const at::Tensor& like) {
  std::vector<int64_t> order(like.dim());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return like.stride(a) < like.stride(b); });
  std::vector<int64_t> strides(like.dim());
  int64_t next = 1;
  for (int64_t d : order) strides[d] = next, next *= like.size(d);
  return strides;
}

void copy_strides(const at::Tensor& t, int64_t (&out)[4]) {
  for (int i = 0; i < 4; ++i) out[i] = t.stride(i);
}

// q, k, v [b, h, s, d] and the output's strides; dq / dk / dv as q / k / v (one buffer like theirs).
kernels::SdpaBackwardShape shape_of(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                    const std::vector<int64_t>& out_strides) {
  kernels::SdpaBackwardShape sh;
  sh.b = q.size(0), sh.h = q.size(1), sh.s = q.size(2), sh.d = q.size(3);
  sh.dtype = dtype_code(q);
  copy_strides(q, sh.q), copy_strides(k, sh.k), copy_strides(v, sh.v);
  for (int i = 0; i < 4; ++i) sh.o[i] = out_strides[i];
  copy_strides(q, sh.dq), copy_strides(k, sh.dk), copy_strides(v, sh.dv);
  return sh;
}

// Elements of the buffer q, k and v are views of.
int64_t buffer_elements(const at::Tensor& q) {
  return static_cast<int64_t>(q.storage().nbytes() / q.element_size());
}

struct PackedCausalAttentionFn : torch::autograd::Function<PackedCausalAttentionFn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
    const c10::cuda::CUDAGuard guard(q.device());
    auto [out, stats] = compat::cudnn_causal_attention(q, k, v);  // [b, h, s, d], [b, h, s, 1]
    const std::vector<int64_t> planned = dense_like(q);
    if (out.strides().vec() != planned)  // the plan was built for this layout
      out = at::empty_strided(out.sizes(), planned, out.options()).copy_(out);
    ctx->save_for_backward({q, k, v, out, stats.contiguous()});
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &q = saved[0], &k = saved[1], &v = saved[2], &out = saved[3], &stats = saved[4];
    const c10::cuda::CUDAGuard guard(q.device());
    at::Tensor dout = grad[0];
    if (dout.strides() != out.strides()) dout = at::empty_strided(out.sizes(), out.strides(), out.options()).copy_(dout);
    // dq / dk / dv: views of one new buffer at q / k / v's offsets and strides.
    const at::Tensor buffer = at::empty({buffer_elements(q)}, q.options());
    const at::Tensor dq = buffer.as_strided(q.sizes(), q.strides(), q.storage_offset());
    const at::Tensor dk = buffer.as_strided(k.sizes(), k.strides(), k.storage_offset());
    const at::Tensor dv = buffer.as_strided(v.sizes(), v.strides(), v.storage_offset());
    const kernels::SdpaBackwardShape sh = shape_of(q, k, v, out.strides().vec());
    size_t bytes = 0;
    MH_CHECK(kernels::sdpa_backward_plan(sh, &bytes) == 0, MH_ERR_INTERNAL,
             "cuDNN attention backward: ", kernels::sdpa_backward_error(),
             "\nHINT: MEGAHOST_PACKED_ATTENTION_BACKWARD=0 runs libtorch's attention backward instead");
    const at::Tensor workspace = at::empty({static_cast<int64_t>(bytes) + 256}, q.options().dtype(at::kByte));
    kernels::SdpaBackwardArgs a;
    a.q = q.data_ptr(), a.k = k.data_ptr(), a.v = v.data_ptr(), a.o = out.data_ptr(), a.dout = dout.data_ptr();
    a.stats = stats.data_ptr<float>();
    a.dq = dq.data_ptr(), a.dk = dk.data_ptr(), a.dv = dv.data_ptr();
    a.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(q.size(3))));
    const auto base = reinterpret_cast<uintptr_t>(workspace.data_ptr());
    a.workspace = reinterpret_cast<void*>((base + 255) / 256 * 256);
    MH_CHECK(kernels::sdpa_backward(sh, a, stream_of(q)) == 0, MH_ERR_INTERNAL,
             "cuDNN attention backward: ", kernels::sdpa_backward_error(),
             "\nHINT: MEGAHOST_PACKED_ATTENTION_BACKWARD=0 runs libtorch's attention backward instead");
    return {dq, dk, dv};
  }
};

}  // namespace
#endif

at::Tensor packed_causal_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
#if defined(MH_SDK_WITH_CUDA)
  if (!packed_attention_enabled() || !available(q) || q.scalar_type() == at::kFloat || q.dim() != 4 ||
      k.scalar_type() != q.scalar_type() || v.scalar_type() != q.scalar_type() || k.sizes() != q.sizes() ||
      v.sizes() != q.sizes() || !q.is_alias_of(k) || !q.is_alias_of(v) || q.stride(3) != 1 || k.stride(3) != 1 ||
      v.stride(3) != 1)
    return at::Tensor();
  // The three views must tile their buffer (linear_qkv's output), which the gradient copies.
  if (q.numel() + k.numel() + v.numel() != buffer_elements(q)) return at::Tensor();
  if (!compat::sdp_picks_cudnn(q, k, v)) return at::Tensor();  // libtorch would run another kernel
  size_t bytes = 0;
  {
    const c10::cuda::CUDAGuard guard(q.device());
    if (kernels::sdpa_backward_plan(shape_of(q, k, v, dense_like(q)), &bytes) != 0) return at::Tensor();
  }
  return PackedCausalAttentionFn::apply(q, k, v);
#else
  (void)q, (void)k, (void)v;
  return at::Tensor();
#endif
}

}  // namespace megahost::sdk::fused
