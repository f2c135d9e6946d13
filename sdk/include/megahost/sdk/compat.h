// megahost — the ONE place that knows the differences between libtorch 1.13 (Debian, CPU) and
// libtorch 2.x (PyTorch 2.x wheels, CUDA). Everything else calls these wrappers.
#pragma once

#include <ATen/ATen.h>
#include <torch/version.h>

#include <atomic>
#include <optional>

#include "megahost/sdk/float8.h"

// c10d (core only: plugins never include it). Debian's libtorch 1.13 does not export the macros.
// Gloo needs gloo's own headers: Debian ships them (libgloo-dev); PyTorch wheels do not, so a
// CUDA build has NCCL only (multi-process CPU runs then refuse with a hint).
#if defined(MEGAHOST_C10D)
#if defined(USE_C10D_GLOO) && !__has_include(<gloo/algorithm.h>)
#undef USE_C10D_GLOO  // the wheel's CMake flag, without the headers it needs
#endif
#if !defined(USE_C10D_GLOO) && __has_include(<gloo/algorithm.h>)
#define USE_C10D_GLOO
#endif
#if defined(MEGAHOST_WITH_NCCL) && !defined(USE_C10D_NCCL)
#define USE_C10D_NCCL
#endif
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#if defined(USE_C10D_GLOO)
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#if defined(USE_C10D_NCCL)
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif
#endif

#define MH_TORCH_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) || (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

namespace megahost::compat {

// FP8 E4M3 storage as uint8 bits (Megatron's --exp-avg-dtype fp8). 2.1+: libtorch's
// float8_e4m3fn dtype converts, on any device. 1.13 has no float8 dtype: the scalar codec of
// float8.h over a CPU copy (same rounding: to nearest even, NaN past 464).
inline at::Tensor to_e4m3_bits(const at::Tensor& x) {
#if MH_TORCH_AT_LEAST(2, 1)
  return x.to(at::kFloat).to(at::kFloat8_e4m3fn).view(at::kByte);
#else
  const at::Tensor src = x.to(at::kCPU, at::kFloat).contiguous();
  at::Tensor out = at::empty(src.sizes(), src.options().dtype(at::kByte));
  const float* in = src.data_ptr<float>();
  uint8_t* bits = out.data_ptr<uint8_t>();
  for (int64_t i = 0, n = src.numel(); i < n; ++i) bits[i] = sdk::float_to_e4m3(in[i]);
  return out.to(x.device());
#endif
}
inline at::Tensor from_e4m3_bits(const at::Tensor& bits) {
#if MH_TORCH_AT_LEAST(2, 1)
  return bits.view(at::kFloat8_e4m3fn).to(at::kFloat);
#else
  const at::Tensor src = bits.to(at::kCPU).contiguous();
  at::Tensor out = at::empty(src.sizes(), src.options().dtype(at::kFloat));
  const uint8_t* in = src.data_ptr<uint8_t>();
  float* values = out.data_ptr<float>();
  for (int64_t i = 0, n = src.numel(); i < n; ++i) values[i] = sdk::e4m3_to_float(in[i]);
  return out.to(bits.device());
#endif
}

// Causal scaled-dot-product attention. q, k, v: [b, heads, s, head_dim].
// 2.x: at::scaled_dot_product_attention (flash / memory-efficient kernels on CUDA).
// 1.13: at::_scaled_dot_product_attention (math path, returns (out, attn)).
inline at::Tensor causal_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                   double dropout_p) {
#if MH_TORCH_AT_LEAST(2, 0)
  return at::scaled_dot_product_attention(q, k, v, /*attn_mask=*/{}, dropout_p, /*is_causal=*/true);
#else
  return std::get<0>(at::_scaled_dot_product_attention(q, k, v, /*attn_mask=*/{}, dropout_p,
                                                      /*need_attn_weights=*/false, /*is_causal=*/true));
#endif
}

// Causal attention with k, v in fewer heads than q (grouped-query): q [b, np, s, hn], k, v
// [b, ng, s, hn]; query head i reads group i / (np / ng). 2.5+: SDPA takes the groups itself
// (enable_gqa: the cuDNN and flash kernels, and math), without the repeated k / v copies.
// Returns an undefined tensor where this libtorch cannot (1.13, or none of the kernels allowed
// takes groups — then for the rest of the process): the caller repeats k and v.
inline at::Tensor causal_attention_grouped(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                           double dropout_p) {
#if MH_TORCH_AT_LEAST(2, 5)
  static std::atomic<bool> refused{false};
  if (!refused.load(std::memory_order_relaxed)) {
    try {
      return at::scaled_dot_product_attention(q, k, v, /*attn_mask=*/{}, dropout_p, /*is_causal=*/true,
                                              /*scale=*/std::nullopt, /*enable_gqa=*/true);
    } catch (const c10::OutOfMemoryError&) {
      throw;  // not a refusal of groups: the repeat would need more memory still
    } catch (const c10::Error&) {  // "No available kernel": e.g. only the memory-efficient one allowed
      refused.store(true, std::memory_order_relaxed);
    }
  }
#else
  (void)q, (void)k, (void)v, (void)dropout_p;
#endif
  return at::Tensor();
}

// Attention under a mask. q [b, n, sq, hn], k, v [b, n, sk, hn], keep [b or 1, 1 or n, sq, sk]
// bool (true: attend). 2.x: SDPA (memory-efficient / cuDNN kernels on CUDA); 1.13: the math path.
inline at::Tensor masked_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                   const at::Tensor& keep, double dropout_p) {
#if MH_TORCH_AT_LEAST(2, 0)
  return at::scaled_dot_product_attention(q, k, v, keep, dropout_p, /*is_causal=*/false);
#else
  return std::get<0>(at::_scaled_dot_product_attention(q, k, v, keep, dropout_p, /*need_attn_weights=*/false,
                                                      /*is_causal=*/false));
#endif
}

// Whether libtorch's own dispatch would run causal attention on these q, k, v [b, n, s, hn]
// through cuDNN (sdp::SDPBackend::cudnn_attention = 3), honouring the kernels allowed above.
inline bool sdp_picks_cudnn(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
#if MH_TORCH_AT_LEAST(2, 5)
  return at::_fused_sdp_choice(q, k, v, /*attn_mask=*/{}, /*dropout_p=*/0.0, /*is_causal=*/true) == 3;
#else
  (void)q, (void)k, (void)v;
  return false;
#endif
}

// cuDNN's causal attention forward, as scaled_dot_product_attention runs it, also returning the
// softmax statistics its backward reads: (out [b, n, s, hn] in q's dimension order, stats float32
// [b, n, s, 1]). 2.5+ only (sdp_picks_cudnn is false before).
inline std::pair<at::Tensor, at::Tensor> cudnn_causal_attention(const at::Tensor& q, const at::Tensor& k,
                                                                const at::Tensor& v) {
#if MH_TORCH_AT_LEAST(2, 5)
  auto r = at::_scaled_dot_product_cudnn_attention(q, k, v, /*attn_bias=*/std::nullopt, /*compute_log_sumexp=*/true,
                                                   /*dropout_p=*/0.0, /*is_causal=*/true);
  return {std::get<0>(r), std::get<1>(r)};
#else
  (void)k, (void)v;
  return {q, at::Tensor()};
#endif
}

// Which scaled-dot-product-attention kernels libtorch may pick (process-wide). False when this
// libtorch cannot restrict them (1.13: one math path; cuDNN attention only from 2.4 on).
inline bool set_attention_kernels(bool flash, bool efficient, bool cudnn, bool math) {
#if MH_TORCH_AT_LEAST(2, 4)
  auto& ctx = at::globalContext();
  ctx.setSDPUseFlash(flash);
  ctx.setSDPUseMemEfficient(efficient);
  ctx.setSDPUseCuDNN(cudnn);
  ctx.setSDPUseMath(math);
  return true;
#else
  (void)flash, (void)efficient, (void)cudnn, (void)math;
  return false;
#endif
}

#if defined(MEGAHOST_C10D)
// The base class of ProcessGroupGloo / ProcessGroupNCCL: ProcessGroup in 1.13, Backend in 2.x.
#if MH_TORCH_AT_LEAST(2, 0)
using C10dBackend = c10d::Backend;
#else
using C10dBackend = c10d::ProcessGroup;
#endif

// Before a backend is destroyed: libtorch 2.x's ProcessGroupNCCL wants shutdown() (flushes and
// frees its communicators); its destructor otherwise aborts them, which fails once the CUDA
// runtime is unloading (process exit). 1.13 and Gloo: nothing to do.
inline void shutdown_backend(C10dBackend& pg, bool nccl) {
#if defined(USE_C10D_NCCL) && MH_TORCH_AT_LEAST(2, 0)
  if (nccl) static_cast<c10d::ProcessGroupNCCL&>(pg).shutdown();
#endif
  (void)pg;
  (void)nccl;
}
#endif

}  // namespace megahost::compat
