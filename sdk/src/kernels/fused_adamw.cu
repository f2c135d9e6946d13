// megahost SDK — multi-tensor AdamW (see fused_kernels.h): every parameter tensor of a step in
// one launch. The work is cut into chunks of kAdamWChunk elements; a block takes chunks in a
// grid-stride loop and finds its tensor by binary search over the chunk prefix sums. The
// gradient scale (clipping x 1/loss scale, times a device scalar when given: the clipping
// coefficient computed on the GPU) is applied on the fly: no separate pass over the grads. With
// store_param_remainders the fp32 master is read from and written back to the bf16 parameter and
// its int16 remainder (28 instead of 30 bytes per parameter); with bf16 moments (Megatron's
// --exp-avg-dtype / --exp-avg-sq-dtype bf16, rounded stochastically) 20 bytes per parameter.
#include <cstdint>

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

// An array of float32 or bf16 (dtype) as float32: one element, or four from a 16-byte (float32) or
// 8-byte (bf16) aligned position j. The gradients and the moments.
__device__ __forceinline__ float load1(const void* a, int32_t dtype, int64_t i) {
  return dtype == kBF16 ? __uint_as_float(uint32_t(static_cast<const uint16_t*>(a)[i]) << 16) : static_cast<const float*>(a)[i];
}
__device__ __forceinline__ float4 load4(const void* a, int32_t dtype, int64_t j) {
  if (dtype != kBF16) return *reinterpret_cast<const float4*>(static_cast<const float*>(a) + j);
  const uint2 u = *reinterpret_cast<const uint2*>(static_cast<const uint16_t*>(a) + j);
  return make_float4(__uint_as_float(u.x << 16), __uint_as_float(u.x & 0xFFFF0000u), __uint_as_float(u.y << 16),
                     __uint_as_float(u.y & 0xFFFF0000u));
}
// A moment back to its array: float32 as it is, bf16 rounded stochastically by the 16 bits of r
// at `shift` (the element's random bits: stochastic_round::element_bits).
__device__ __forceinline__ void store1(void* a, int32_t dtype, int64_t i, float x, uint32_t r, int shift) {
  if (dtype != kBF16) static_cast<float*>(a)[i] = x;
  else static_cast<uint16_t*>(a)[i] = stochastic_round::bf16_bits(__float_as_uint(x), r >> shift);
}
__device__ __forceinline__ void store4(void* a, int32_t dtype, int64_t j, float4 x, uint4 r, int shift) {
  if (dtype != kBF16) {
    *reinterpret_cast<float4*>(static_cast<float*>(a) + j) = x;
    return;
  }
  using stochastic_round::bf16_bits;
  const uint32_t b0 = bf16_bits(__float_as_uint(x.x), r.x >> shift), b1 = bf16_bits(__float_as_uint(x.y), r.y >> shift),
                 b2 = bf16_bits(__float_as_uint(x.z), r.z >> shift), b3 = bf16_bits(__float_as_uint(x.w), r.w >> shift);
  *reinterpret_cast<uint2*>(static_cast<uint16_t*>(a) + j) = make_uint2(b0 | (b1 << 16), b2 | (b3 << 16));
}

template <bool kRemainders>
__global__ void mh_adamw_kernel(const AdamWTensor* __restrict__ table, const int64_t* __restrict__ chunk_start,
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
    // One element: updates m and v in place, returns the updated param. Each operation rounded on
    // its own (the _rn intrinsics are never fused into FMAs), so the vector and the element-wise
    // paths below give the same bits whatever the compiler schedules.
    auto update = [&](float g, float p, float& m, float& v) {
      g = __fmul_rn(g, grad_scale);
      p = __fmul_rn(p, decay);
      m = __fadd_rn(__fmul_rn(beta1, m), __fmul_rn(1.0f - beta1, g));
      v = __fadd_rn(__fmul_rn(beta2, v), __fmul_rn(__fmul_rn(1.0f - beta2, g), g));
      const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(v), bias_correction2_sqrt), eps);
      return __fsub_rn(p, __fdiv_rn(__fmul_rn(step, m), denom));
    };
    const bool rounds = t.exp_avg_dtype == kBF16 || t.exp_avg_sq_dtype == kBF16;  // needs random bits
    auto store_copy = [&](int64_t i, float updated) {
      if (t.copy_dtype == kBF16) static_cast<__nv_bfloat16*>(t.model_copy)[i] = from_f32<__nv_bfloat16>(updated);
      else static_cast<__half*>(t.model_copy)[i] = from_f32<__half>(updated);
    };
    // 16-byte loads and stores when every array allows them (chunks start at multiples of
    // kAdamWChunk elements, so the tensor's alignment holds for the chunk); the tail one by one.
    // Four float32 take 16 bytes, four bf16 / int16 take 8.
    uintptr_t wide = kRemainders ? 0 : reinterpret_cast<uintptr_t>(t.param), narrow = 0;
    auto align = [&](const void* a, bool is16) { (is16 ? narrow : wide) |= reinterpret_cast<uintptr_t>(a); };
    align(t.grad, t.grad_dtype == kBF16);
    align(t.exp_avg, t.exp_avg_dtype == kBF16);
    align(t.exp_avg_sq, t.exp_avg_sq_dtype == kBF16);
    if (kRemainders) {
      align(t.param16, true);
      align(t.remainder, true);
    } else {
      align(t.model_copy, true);
    }
    const bool vec = wide % 16 == 0 && narrow % 8 == 0;
    int64_t i = begin + threadIdx.x;
    if (vec) {
      const int64_t vec_end = begin + (end - begin) / 4 * 4;
      for (int64_t j = begin + 4 * threadIdx.x; j < vec_end; j += 4 * blockDim.x) {
        const float4 g = load4(t.grad, t.grad_dtype, j);
        float4 m = load4(t.exp_avg, t.exp_avg_dtype, j), v = load4(t.exp_avg_sq, t.exp_avg_sq_dtype, j);
        float4 p;
        uint2 p16, rem;  // four bf16 upper halves, four int16 remainders
        if constexpr (kRemainders) {
          p16 = *reinterpret_cast<const uint2*>(t.param16 + j);
          rem = *reinterpret_cast<const uint2*>(t.remainder + j);
          p = make_float4(compose_fp32(p16.x & 0xFFFFu, rem.x & 0xFFFFu), compose_fp32(p16.x >> 16, rem.x >> 16),
                          compose_fp32(p16.y & 0xFFFFu, rem.y & 0xFFFFu), compose_fp32(p16.y >> 16, rem.y >> 16));
        } else {
          p = *reinterpret_cast<const float4*>(t.param + j);
        }
        float4 out;
        out.x = update(g.x, p.x, m.x, v.x);
        out.y = update(g.y, p.y, m.y, v.y);
        out.z = update(g.z, p.z, m.z, v.z);
        out.w = update(g.w, p.w, m.w, v.w);
        uint4 r = make_uint4(0, 0, 0, 0);
        if (rounds) {
          using stochastic_round::element_bits;
          r = make_uint4(element_bits(salt, j), element_bits(salt, j + 1), element_bits(salt, j + 2),
                         element_bits(salt, j + 3));
        }
        store4(t.exp_avg, t.exp_avg_dtype, j, m, r, 0);
        store4(t.exp_avg_sq, t.exp_avg_sq_dtype, j, v, r, 16);
        if constexpr (kRemainders) {
          uint32_t h[4], l[4];
          split_fp32(out.x, h[0], l[0]);
          split_fp32(out.y, h[1], l[1]);
          split_fp32(out.z, h[2], l[2]);
          split_fp32(out.w, h[3], l[3]);
          *reinterpret_cast<uint2*>(t.param16 + j) = make_uint2(h[0] | (h[1] << 16), h[2] | (h[3] << 16));
          *reinterpret_cast<uint2*>(t.remainder + j) = make_uint2(l[0] | (l[1] << 16), l[2] | (l[3] << 16));
        } else {
          *reinterpret_cast<float4*>(t.param + j) = out;
          if (t.model_copy != nullptr) {
            if (t.copy_dtype == kBF16) {
              __nv_bfloat16* c = static_cast<__nv_bfloat16*>(t.model_copy) + j;
              *reinterpret_cast<__nv_bfloat162*>(c) = __floats2bfloat162_rn(out.x, out.y);
              *reinterpret_cast<__nv_bfloat162*>(c + 2) = __floats2bfloat162_rn(out.z, out.w);
            } else {
              __half* c = static_cast<__half*>(t.model_copy) + j;
              *reinterpret_cast<__half2*>(c) = __floats2half2_rn(out.x, out.y);
              *reinterpret_cast<__half2*>(c + 2) = __floats2half2_rn(out.z, out.w);
            }
          }
        }
      }
      i = vec_end + threadIdx.x;
    }
    for (; i < end; i += blockDim.x) {
      float m = load1(t.exp_avg, t.exp_avg_dtype, i), v = load1(t.exp_avg_sq, t.exp_avg_sq_dtype, i);
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
        if (t.model_copy != nullptr) store_copy(i, updated);
      }
      const uint32_t r = rounds ? stochastic_round::element_bits(salt, i) : 0u;
      store1(t.exp_avg, t.exp_avg_dtype, i, m, r, 0);
      store1(t.exp_avg_sq, t.exp_avg_sq_dtype, i, v, r, 16);
    }
  }
}

}  // namespace

int adamw_multi_tensor(const AdamWTensor* table, const int64_t* chunk_start, int64_t count, int64_t total_chunks,
                       float lr, float beta1, float beta2, float eps, float bias_correction1,
                       float bias_correction2_sqrt, float grad_scale, const float* grad_scale_on_device,
                       bool remainders, uint32_t salt, void* stream) {
  if (count <= 0 || total_chunks <= 0) return 0;
  const unsigned blocks = static_cast<unsigned>(total_chunks < 132 * 16 ? total_chunks : 132 * 16);
  auto* kernel = remainders ? mh_adamw_kernel<true> : mh_adamw_kernel<false>;
  kernel<<<blocks, kThreads, 0, as_stream(stream)>>>(table, chunk_start, count, total_chunks, lr, beta1, beta2, eps,
                                                     bias_correction1, bias_correction2_sqrt, grad_scale,
                                                     grad_scale_on_device, salt);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace megahost::sdk::kernels
