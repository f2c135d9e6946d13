// megahost SDK — multi-tensor AdamW (see fused_kernels.h): every parameter tensor of a step in
// one launch. The work is cut into chunks of kAdamWChunk elements; a block takes chunks in a
// grid-stride loop and finds its tensor by binary search over the chunk prefix sums. The
// gradient scale (clipping x 1/loss scale, times a device scalar when given: the clipping
// coefficient computed on the GPU) is applied on the fly: no separate pass over the grads. With
// store_param_remainders the fp32 master is read from and written back to the bf16 parameter and
// its int16 remainder (28 instead of 30 bytes per parameter); with bf16 moments (Megatron's
// --exp-avg-dtype / --exp-avg-sq-dtype bf16, rounded stochastically) 20 bytes per parameter.
// fp16 / fp8 moments (scaled per tensor, as Transformer Engine's FusedAdam) take two passes: the
// first finds each tensor's largest updated moments, the second recomputes the update (the same
// operations, so the same values) and stores the moments scaled by those.
#include <cuda_fp8.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "fused_common.cuh"
#include "fused_kernels.h"
#include "megahost/sdk/stochastic_round_bits.h"

namespace megahost::sdk::kernels {

namespace {

constexpr int kThreads = 512;

// Megatron's store_param_remainders (param_remainders.h): the fp32 value from the bf16 upper half
// and the int16 lower half, and back. Exact for every finite value.
__device__ __forceinline__ float compose_fp32(uint32_t hi16, uint32_t lo16) {
  return __uint_as_float(((hi16 - (lo16 >> 15)) << 16) | lo16);  // lo16 bit 15: hi16 was rounded up
}
__device__ __forceinline__ void split_fp32(float x, uint32_t& hi16, uint32_t& lo16) {
  const uint32_t u = __float_as_uint(x);
  if (isnan(x)) {  // a quiet NaN of the same sign
    hi16 = ((u >> 16) & 0x8000u) | 0x7FC0u;
    lo16 = 0;
    return;
  }
  lo16 = u & 0xFFFFu;
  hi16 = (u >> 16) + (lo16 >> 15);  // rounded half away from zero; inf has lo16 = 0
}

// The scaled moments' formats (sdk/scaled_state.h): fp16 up to 65504 / 2, E4M3 up to 448, each
// value rounded to nearest. E4M3 by the hardware's conversions (pairs; satfinite, which differs from
// libtorch's float8_e4m3fn only past 464 and at infinity, neither of which a scaled value reaches:
// scaling maps the largest finite magnitude to 448, and an infinite one makes every value NaN).
__device__ __forceinline__ float scaled_range(int32_t dtype) { return dtype == kF16 ? 65504.0f / 2 : 448.0f; }
__device__ __forceinline__ float e4m3_to_f32(uint32_t byte) {
  return __half2float(__half(__nv_cvt_fp8_to_halfraw(static_cast<__nv_fp8_storage_t>(byte), __NV_E4M3)));
}
__device__ __forceinline__ uint32_t f32_to_e4m3(float x) {
  return static_cast<uint32_t>(__nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3));
}
// Two E4M3 values (the low 16 bits of `pair`) as float32, and back.
__device__ __forceinline__ float2 e4m3x2_to_f32x2(uint32_t pair) {
  return __half22float2(__half2(__nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(pair), __NV_E4M3)));
}
__device__ __forceinline__ uint32_t f32x2_to_e4m3x2(float lo, float hi) {
  return static_cast<uint32_t>(__nv_cvt_float2_to_fp8x2(make_float2(lo, hi), __NV_SATFINITE, __NV_E4M3));
}
__device__ __forceinline__ float f16_to_f32(uint32_t bits) { return __half2float(__ushort_as_half(static_cast<unsigned short>(bits))); }
__device__ __forceinline__ uint32_t f32_to_f16(float x) { return __half_as_ushort(__float2half_rn(x)); }
// 1 / scale, or 0 for a zero (or NaN) scale: the multiplier that stores values, as torch computes it.
__device__ __forceinline__ float inverse_scale(float scale) { return scale > 0.0f ? __fdiv_rn(1.0f, scale) : 0.0f; }

// An array of float32 or bf16 (dtype) as float32, one element. The gradients and the moments; a
// scaled moment (kF16, kE4M3) times its scale.
__device__ __forceinline__ float load1(const void* a, int32_t dtype, int64_t i, float scale = 1.0f) {
  if (dtype == kBF16) return __uint_as_float(uint32_t(static_cast<const uint16_t*>(a)[i]) << 16);
  if (dtype == kF16) return __fmul_rn(f16_to_f32(static_cast<const uint16_t*>(a)[i]), scale);
  if (dtype == kE4M3) return __fmul_rn(e4m3_to_f32(static_cast<const uint8_t*>(a)[i]), scale);
  return static_cast<const float*>(a)[i];
}
// A moment back to its array: float32 as it is, bf16 rounded stochastically by the 16 bits of r
// at `shift` (the element's random bits: stochastic_round::element_bits), a scaled one times inv.
__device__ __forceinline__ void store1(void* a, int32_t dtype, int64_t i, float x, uint32_t r, int shift,
                                       float inv = 1.0f) {
  if (dtype == kBF16) static_cast<uint16_t*>(a)[i] = stochastic_round::bf16_bits(__float_as_uint(x), r >> shift);
  else if (dtype == kF16) static_cast<uint16_t*>(a)[i] = static_cast<uint16_t>(f32_to_f16(__fmul_rn(x, inv)));
  else if (dtype == kE4M3) static_cast<uint8_t*>(a)[i] = static_cast<uint8_t>(f32_to_e4m3(__fmul_rn(x, inv)));
  else static_cast<float*>(a)[i] = x;
}

// N = 4 or 8 consecutive elements per thread from an N-aligned position: 16-bit arrays as N / 2
// words in one 8- or 16-byte access, float32 arrays as N / 4 16-byte accesses.
template <int N>
__device__ __forceinline__ void load_words(const void* a, uint32_t (&w)[N / 2]) {
  if constexpr (N == 4) {
    const uint2 u = *reinterpret_cast<const uint2*>(a);
    w[0] = u.x, w[1] = u.y;
  } else {
    const uint4 u = *reinterpret_cast<const uint4*>(a);
    w[0] = u.x, w[1] = u.y, w[2] = u.z, w[3] = u.w;
  }
}
template <int N>
__device__ __forceinline__ void store_words(void* a, const uint32_t (&w)[N / 2]) {
  if constexpr (N == 4) *reinterpret_cast<uint2*>(a) = make_uint2(w[0], w[1]);
  else *reinterpret_cast<uint4*>(a) = make_uint4(w[0], w[1], w[2], w[3]);
}
// N E4M3 bytes in one 4- or 8-byte access.
template <int N>
__device__ __forceinline__ void load_bytes(const uint8_t* a, uint32_t (&w)[N / 4]) {
  if constexpr (N == 4) {
    w[0] = *reinterpret_cast<const uint32_t*>(a);
  } else {
    const uint2 u = *reinterpret_cast<const uint2*>(a);
    w[0] = u.x, w[1] = u.y;
  }
}
template <int N>
__device__ __forceinline__ void store_bytes(uint8_t* a, const uint32_t (&w)[N / 4]) {
  if constexpr (N == 4) *reinterpret_cast<uint32_t*>(a) = w[0];
  else *reinterpret_cast<uint2*>(a) = make_uint2(w[0], w[1]);
}
template <int N>
__device__ __forceinline__ void load_n(const void* a, int32_t dtype, int64_t j, float (&x)[N], float scale = 1.0f) {
  if (dtype == kE4M3) {
    uint32_t w[N / 4];
    load_bytes<N>(static_cast<const uint8_t*>(a) + j, w);
#pragma unroll
    for (int k = 0; k < N; k += 2) {
      const float2 f = e4m3x2_to_f32x2(w[k / 4] >> (8 * (k % 4)));
      x[k] = __fmul_rn(f.x, scale), x[k + 1] = __fmul_rn(f.y, scale);
    }
    return;
  }
  if (dtype == kF16) {
    uint32_t w[N / 2];
    load_words<N>(static_cast<const uint16_t*>(a) + j, w);
#pragma unroll
    for (int k = 0; k < N / 2; ++k)
      x[2 * k] = __fmul_rn(f16_to_f32(w[k] & 0xFFFFu), scale), x[2 * k + 1] = __fmul_rn(f16_to_f32(w[k] >> 16), scale);
    return;
  }
  if (dtype != kBF16) {
#pragma unroll
    for (int k = 0; k < N; k += 4) {
      const float4 f = *reinterpret_cast<const float4*>(static_cast<const float*>(a) + j + k);
      x[k] = f.x, x[k + 1] = f.y, x[k + 2] = f.z, x[k + 3] = f.w;
    }
    return;
  }
  uint32_t w[N / 2];
  load_words<N>(static_cast<const uint16_t*>(a) + j, w);
#pragma unroll
  for (int k = 0; k < N / 2; ++k) x[2 * k] = __uint_as_float(w[k] << 16), x[2 * k + 1] = __uint_as_float(w[k] & 0xFFFF0000u);
}
template <int N>
__device__ __forceinline__ void store_n(void* a, int32_t dtype, int64_t j, const float (&x)[N], const uint32_t (&r)[N],
                                        int shift, float inv = 1.0f) {
  if (dtype == kE4M3) {
    uint32_t w[N / 4] = {};
#pragma unroll
    for (int k = 0; k < N; k += 2)
      w[k / 4] |= f32x2_to_e4m3x2(__fmul_rn(x[k], inv), __fmul_rn(x[k + 1], inv)) << (8 * (k % 4));
    store_bytes<N>(static_cast<uint8_t*>(a) + j, w);
    return;
  }
  if (dtype == kF16) {
    uint32_t w[N / 2];
#pragma unroll
    for (int k = 0; k < N / 2; ++k)
      w[k] = f32_to_f16(__fmul_rn(x[2 * k], inv)) | (f32_to_f16(__fmul_rn(x[2 * k + 1], inv)) << 16);
    store_words<N>(static_cast<uint16_t*>(a) + j, w);
    return;
  }
  if (dtype != kBF16) {
#pragma unroll
    for (int k = 0; k < N; k += 4)
      *reinterpret_cast<float4*>(static_cast<float*>(a) + j + k) = make_float4(x[k], x[k + 1], x[k + 2], x[k + 3]);
    return;
  }
  using stochastic_round::bf16_bits;
  uint32_t w[N / 2];
#pragma unroll
  for (int k = 0; k < N / 2; ++k)
    w[k] = uint32_t(bf16_bits(__float_as_uint(x[2 * k]), r[2 * k] >> shift)) |
           (uint32_t(bf16_bits(__float_as_uint(x[2 * k + 1]), r[2 * k + 1] >> shift)) << 16);
  store_words<N>(static_cast<uint16_t*>(a) + j, w);
}

// The block's largest |m| and |v| bits (NaN above every number, as torch's max keeps it) into
// amax[0] and amax[1]. Every thread of the block calls it.
__device__ void block_max_into(float* amax, uint32_t m, uint32_t v) {
  __shared__ uint32_t part[2][kThreads / 32];
  for (int o = 16; o > 0; o >>= 1) m = max(m, __shfl_xor_sync(~0u, m, o)), v = max(v, __shfl_xor_sync(~0u, v, o));
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) part[0][warp] = m, part[1][warp] = v;
  __syncthreads();
  if (warp == 0) {
    m = lane < blockDim.x / 32 ? part[0][lane] : 0u;
    v = lane < blockDim.x / 32 ? part[1][lane] : 0u;
    for (int o = 16; o > 0; o >>= 1) m = max(m, __shfl_xor_sync(~0u, m, o)), v = max(v, __shfl_xor_sync(~0u, v, o));
    if (lane == 0 && m != 0u) atomicMax(reinterpret_cast<unsigned int*>(amax), m);
    if (lane == 0 && v != 0u) atomicMax(reinterpret_cast<unsigned int*>(amax) + 1, v);
  }
  __syncthreads();  // part is reused by the next chunk
}

// Two blocks of 512 threads per SM: at most 64 registers (N = 8 needs 66 unbounded).
// kAmaxPass: only the updated moments' largest magnitudes of the tensors with scaled moments (the
// first of the two passes those take); nothing is stored.
template <bool kRemainders, int N, bool kAmaxPass>
__global__ void __launch_bounds__(kThreads, 2) mh_adamw_kernel(const AdamWTensor* __restrict__ table, const int64_t* __restrict__ chunk_start,
                             int64_t count, int64_t total_chunks, float lr, float beta1, float beta2, float eps,
                             float bias_correction1, float bias_correction2_sqrt, float grad_scale,
                             const float* __restrict__ grad_scale_on_device, uint32_t salt) {
  if (grad_scale_on_device != nullptr) grad_scale *= *grad_scale_on_device;
  for (int64_t chunk = blockIdx.x; chunk < total_chunks; chunk += gridDim.x) {
    int64_t lo = 0, hi = count - 1;  // the tensor whose chunks contain `chunk`
    while (lo < hi) {
      const int64_t mid = (lo + hi + 1) / 2;
      if (chunk_start[mid] <= chunk) lo = mid;
      else hi = mid - 1;
    }
    const AdamWTensor t = table[lo];
    const int64_t begin = (chunk - chunk_start[lo]) * kAdamWChunk;
    const int64_t end = begin + kAdamWChunk < t.numel ? begin + kAdamWChunk : t.numel;
    const float decay = 1.0f - lr * t.weight_decay, step = lr / bias_correction1;
    // Scaled moments: read as stored x the old scale, stored x (1 / the new scale), which comes
    // from the first pass's largest magnitudes as torch's ops compute it (sdk/scaled_state.h).
    const float m_scale = t.exp_avg_scale != nullptr ? *t.exp_avg_scale : 1.0f;
    const float v_scale = t.exp_avg_sq_scale != nullptr ? *t.exp_avg_sq_scale : 1.0f;
    float m_inv = 1.0f, v_inv = 1.0f;
    if (!kAmaxPass && t.exp_avg_scale != nullptr)
      m_inv = inverse_scale(__fdiv_rn(t.amax[0], scaled_range(t.exp_avg_dtype)));
    if (!kAmaxPass && t.exp_avg_sq_scale != nullptr)
      v_inv = inverse_scale(__fdiv_rn(t.amax[1], scaled_range(t.exp_avg_sq_dtype)));
    // One element: updates m and v in place (and returns the updated param). Each operation
    // rounded on its own (the _rn intrinsics are never fused into FMAs), so the vector and the
    // element-wise paths below, and both passes, give the same bits whatever the compiler schedules.
    auto moments = [&](float g, float& m, float& v) {
      g = __fmul_rn(g, grad_scale);
      m = __fadd_rn(__fmul_rn(beta1, m), __fmul_rn(1.0f - beta1, g));
      v = __fadd_rn(__fmul_rn(beta2, v), __fmul_rn(__fmul_rn(1.0f - beta2, g), g));
    };
    auto update = [&](float g, float p, float& m, float& v) {
      p = __fmul_rn(p, decay);
      moments(g, m, v);
      const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(v), bias_correction2_sqrt), eps);
      return __fsub_rn(p, __fdiv_rn(__fmul_rn(step, m), denom));
    };
    const bool rounds = t.exp_avg_dtype == kBF16 || t.exp_avg_sq_dtype == kBF16;  // needs random bits
    // N elements per thread when every array allows the accesses (chunks start at multiples of
    // kAdamWChunk elements, so the tensor's alignment holds for the chunk); the tail one by one.
    constexpr uintptr_t kAlign16 = 2 * N;  // bytes of N 16-bit values; float32 arrays take 16-byte accesses
    uintptr_t wide = kRemainders ? 0 : reinterpret_cast<uintptr_t>(t.param), narrow = 0, bytes = 0;
    auto align = [&](const void* a, int32_t dtype) {
      (dtype == kE4M3 ? bytes : dtype == kBF16 || dtype == kF16 ? narrow : wide) |= reinterpret_cast<uintptr_t>(a);
    };
    align(t.grad, t.grad_dtype);
    align(t.exp_avg, t.exp_avg_dtype);
    align(t.exp_avg_sq, t.exp_avg_sq_dtype);
    if (kRemainders) {
      align(t.param16, kBF16);
      align(t.remainder, kBF16);
    } else {
      align(t.model_copy, kBF16);
    }
    const bool vec = wide % 16 == 0 && narrow % kAlign16 == 0 && bytes % N == 0;
    if constexpr (kAmaxPass) {
      if (t.exp_avg_scale == nullptr && t.exp_avg_sq_scale == nullptr) continue;  // the whole block skips it
      uint32_t m_max = 0, v_max = 0;
      auto track = [&](float m, float v) {
        m_max = max(m_max, __float_as_uint(fabsf(m)));
        v_max = max(v_max, __float_as_uint(fabsf(v)));
      };
      int64_t k0 = begin + threadIdx.x;
      if (vec) {
        const int64_t vec_end = begin + (end - begin) / N * N;
        for (int64_t j = begin + N * threadIdx.x; j < vec_end; j += N * blockDim.x) {
          float g[N], m[N], v[N];
          load_n<N>(t.grad, t.grad_dtype, j, g);
          load_n<N>(t.exp_avg, t.exp_avg_dtype, j, m, m_scale);
          load_n<N>(t.exp_avg_sq, t.exp_avg_sq_dtype, j, v, v_scale);
#pragma unroll
          for (int k = 0; k < N; ++k) moments(g[k], m[k], v[k]), track(m[k], v[k]);
        }
        k0 = vec_end + threadIdx.x;
      }
      for (; k0 < end; k0 += blockDim.x) {
        float m = load1(t.exp_avg, t.exp_avg_dtype, k0, m_scale), v = load1(t.exp_avg_sq, t.exp_avg_sq_dtype, k0, v_scale);
        moments(load1(t.grad, t.grad_dtype, k0), m, v);
        track(m, v);
      }
      block_max_into(t.amax, m_max, v_max);
      continue;
    }
    int64_t i = begin + threadIdx.x;
    if (vec) {
      const int64_t vec_end = begin + (end - begin) / N * N;
      for (int64_t j = begin + N * threadIdx.x; j < vec_end; j += N * blockDim.x) {
        float g[N], m[N], v[N], p[N];
        load_n<N>(t.grad, t.grad_dtype, j, g);
        load_n<N>(t.exp_avg, t.exp_avg_dtype, j, m, m_scale);
        load_n<N>(t.exp_avg_sq, t.exp_avg_sq_dtype, j, v, v_scale);
        uint32_t p16[N / 2], rem[N / 2];  // bf16 upper halves and int16 remainders, two per word
        if constexpr (kRemainders) {
          load_words<N>(t.param16 + j, p16);
          load_words<N>(t.remainder + j, rem);
#pragma unroll
          for (int k = 0; k < N / 2; ++k) {
            p[2 * k] = compose_fp32(p16[k] & 0xFFFFu, rem[k] & 0xFFFFu);
            p[2 * k + 1] = compose_fp32(p16[k] >> 16, rem[k] >> 16);
          }
        } else {
          load_n<N>(t.param, kF32, j, p);
        }
        float out[N];
#pragma unroll
        for (int k = 0; k < N; ++k) out[k] = update(g[k], p[k], m[k], v[k]);
        uint32_t r[N] = {};
        if (rounds) {
#pragma unroll
          for (int k = 0; k < N; ++k) r[k] = stochastic_round::element_bits(salt, t.index_base + j + k);
        }
        store_n<N>(t.exp_avg, t.exp_avg_dtype, j, m, r, 0, m_inv);
        store_n<N>(t.exp_avg_sq, t.exp_avg_sq_dtype, j, v, r, 16, v_inv);
        if constexpr (kRemainders) {
#pragma unroll
          for (int k = 0; k < N / 2; ++k) {
            uint32_t h0, l0, h1, l1;
            split_fp32(out[2 * k], h0, l0);
            split_fp32(out[2 * k + 1], h1, l1);
            p16[k] = h0 | (h1 << 16);
            rem[k] = l0 | (l1 << 16);
          }
          store_words<N>(t.param16 + j, p16);
          store_words<N>(t.remainder + j, rem);
        } else {
          store_n<N>(t.param, kF32, j, out, r, 0);
          if (t.model_copy != nullptr) {  // the model's half-precision parameter, in the same pass
            uint32_t w[N / 2];
#pragma unroll
            for (int k = 0; k < N / 2; ++k) {
              if (t.copy_dtype == kBF16) {
                const __nv_bfloat162 b = __floats2bfloat162_rn(out[2 * k], out[2 * k + 1]);
                w[k] = *reinterpret_cast<const uint32_t*>(&b);
              } else {
                const __half2 b = __floats2half2_rn(out[2 * k], out[2 * k + 1]);
                w[k] = *reinterpret_cast<const uint32_t*>(&b);
              }
            }
            store_words<N>(static_cast<uint16_t*>(t.model_copy) + j, w);
          }
        }
      }
      i = vec_end + threadIdx.x;
    }
    for (; i < end; i += blockDim.x) {
      float m = load1(t.exp_avg, t.exp_avg_dtype, i, m_scale), v = load1(t.exp_avg_sq, t.exp_avg_sq_dtype, i, v_scale);
      const float gi = load1(t.grad, t.grad_dtype, i);
      if constexpr (kRemainders) {
        const float updated = update(gi, compose_fp32(t.param16[i], static_cast<uint16_t>(t.remainder[i])), m, v);
        uint32_t h, l;
        split_fp32(updated, h, l);
        t.param16[i] = static_cast<uint16_t>(h);
        t.remainder[i] = static_cast<int16_t>(static_cast<uint16_t>(l));
      } else {
        const float updated = update(gi, t.param[i], m, v);
        t.param[i] = updated;
        // The model's half-precision parameter, in the same pass (no separate master -> model copy).
        if (t.model_copy != nullptr) {
          if (t.copy_dtype == kBF16) static_cast<__nv_bfloat16*>(t.model_copy)[i] = from_f32<__nv_bfloat16>(updated);
          else static_cast<__half*>(t.model_copy)[i] = from_f32<__half>(updated);
        }
      }
      const uint32_t r = rounds ? stochastic_round::element_bits(salt, t.index_base + i) : 0u;
      store1(t.exp_avg, t.exp_avg_dtype, i, m, r, 0, m_inv);
      store1(t.exp_avg_sq, t.exp_avg_sq_dtype, i, v, r, 16, v_inv);
    }
  }
}

// Elements per thread per step of the vector path. With bf16 moments 8 (every 16-bit array in
// 16-byte accesses: 6.62 against 6.86 ms/iter for GPT-1.3B's update), else 4 (8 measured slower
// there). MEGAHOST_ADAMW_PACK=4 or 8 picks one for A/B runs.
int elements_per_thread(bool bf16_moments) {
  static const int forced = [] {
    const char* e = std::getenv("MEGAHOST_ADAMW_PACK");
    return e == nullptr ? 0 : std::strcmp(e, "8") == 0 ? 8 : std::strcmp(e, "4") == 0 ? 4 : 0;
  }();
  return forced != 0 ? forced : bf16_moments ? 8 : 4;
}

// The new scales of the scaled moments, after the update pass read the old ones.
__global__ void mh_adamw_scales_kernel(const AdamWTensor* __restrict__ table, int64_t count) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x) {
    const AdamWTensor t = table[i];
    if (t.numel == 0) continue;  // torch's store leaves an empty tensor's scale as it was
    if (t.exp_avg_scale != nullptr) *t.exp_avg_scale = __fdiv_rn(t.amax[0], scaled_range(t.exp_avg_dtype));
    if (t.exp_avg_sq_scale != nullptr) *t.exp_avg_sq_scale = __fdiv_rn(t.amax[1], scaled_range(t.exp_avg_sq_dtype));
  }
}

template <bool kAmaxPass>
auto pick_kernel(bool remainders, int n) {
  return n == 8 ? (remainders ? mh_adamw_kernel<true, 8, kAmaxPass> : mh_adamw_kernel<false, 8, kAmaxPass>)
                : (remainders ? mh_adamw_kernel<true, 4, kAmaxPass> : mh_adamw_kernel<false, 4, kAmaxPass>);
}

}  // namespace

int adamw_multi_tensor(const AdamWTensor* table, const int64_t* chunk_start, int64_t count, int64_t total_chunks,
                       float lr, float beta1, float beta2, float eps, float bias_correction1,
                       float bias_correction2_sqrt, float grad_scale, const float* grad_scale_on_device,
                       bool remainders, bool bf16_moments, bool scaled, uint32_t salt, void* stream) {
  if (count <= 0 || total_chunks <= 0) return 0;
  const unsigned blocks = static_cast<unsigned>(total_chunks < 132 * 16 ? total_chunks : 132 * 16);
  const int n = elements_per_thread(bf16_moments);
  cudaStream_t s = as_stream(stream);
  if (scaled)
    pick_kernel<true>(remainders, n)<<<blocks, kThreads, 0, s>>>(table, chunk_start, count, total_chunks, lr, beta1,
                                                                beta2, eps, bias_correction1, bias_correction2_sqrt,
                                                                grad_scale, grad_scale_on_device, salt);
  pick_kernel<false>(remainders, n)<<<blocks, kThreads, 0, s>>>(table, chunk_start, count, total_chunks, lr, beta1,
                                                               beta2, eps, bias_correction1, bias_correction2_sqrt,
                                                               grad_scale, grad_scale_on_device, salt);
  if (scaled) mh_adamw_scales_kernel<<<static_cast<unsigned>((count + 255) / 256), 256, 0, s>>>(table, count);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace megahost::sdk::kernels
