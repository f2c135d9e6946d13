// megahost SDK — launchers of the fused CUDA kernels (fused_*.cu). Plain pointers and sizes, no
// ATen: the .cu files compile with nvcc alone; sdk/src/nn/fused_ops.cpp wraps them for autograd.
// dtype: 0 = float32, 1 = bfloat16, 2 = float16 (tensors of one call share it unless noted).
// Every launcher returns the cudaError_t of its launch as int (0 = success).
#pragma once

#include <cstdint>
#include <initializer_list>

namespace megahost::sdk::kernels {

enum DType : int { kF32 = 0, kBF16 = 1, kF16 = 2, kE4M3 = 3 };  // kE4M3: AdamW's fp8 moments only

// Dropout inside the add + norm (Megatron's bias-dropout-add, then the norm):
//   sum = residual + keep * scale * (x + x_bias).
// The keep mask comes from Philox (curand's Philox4_32_10: key = seed, one subsequence per 16-byte
// vector of the rows, kPhiloxIncrement 32-bit draws each from `offset` on), 16 bits per element
// compared with round(p * 65536). It is stored as one byte per vector (bit k: element k), the
// backward's mask: 1/8 (bf16) of a byte per element where a bool mask takes one.
// The seed and offset come from the caller's CUDA generator; inside a CUDA graph's recording
// (captured) the kernel reads them from device memory at run time, plus offset_intragraph, as
// libtorch's own random kernels do, so replays draw fresh masks.
struct PhiloxArgs {
  uint64_t seed = 0, offset = 0;
  const int64_t* seed_ptr = nullptr;  // captured: read at run time
  const int64_t* offset_ptr = nullptr;
  uint32_t offset_intragraph = 0;
  int captured = 0;
};
constexpr uint64_t kPhiloxIncrement = 4;  // one curand4 per vector
struct NormDropout {
  uint8_t* keep = nullptr;  // [rows * h / norm_dropout_vector(dtype)]: the forward writes it, the backward reads it
  float p = 0.0f, scale = 1.0f;  // scale = 1 / (1 - p)
  PhiloxArgs rng;                // forward only
  void* dx_drop = nullptr;       // backward only: x's gradient, dx * keep * scale (dx is the residual's)
};
int64_t norm_dropout_vector(int dtype);             // elements per mask byte: 16 / sizeof(element)
bool norm_dropout_supported(int dtype, int64_t h);  // h fills whole 16-byte strips of the register kernels
// Whether norm_forward / norm_backward take rows of h at all (with 16-byte aligned rows when
// h % (16 / sizeof(element)) == 0): false past ~12K in float32 or an odd h past ~4K.
bool norm_supported(int dtype, int64_t h);

// LayerNorm / RMSNorm over the last dim of [rows, h] with the residual add folded in:
//   sum = x (+ x_bias) + residual (x_bias [h] may be null; residual may be null: sum = x (+ x_bias)),
//   y = norm(sum) * weight (+ bias).
// sum_out may be null when residual is null. mean (LayerNorm only) and rstd [rows] float32 for backward.
// weight/bias/x_bias share x's dtype.
int norm_forward(int dtype, bool rms, const void* x, const void* x_bias, const void* residual, const void* weight,
                 const void* bias, void* y, void* sum_out, float* mean, float* rstd, int64_t rows, int64_t h, float eps,
                 void* stream, const NormDropout* dropout = nullptr);
// dx = d norm / d sum (+ dsum: the gradient reaching the residual output, may be null);
// dweight_partial / dbias_partial: [blocks, h] float32 per-block column sums (the caller sums dim 0);
// dxbias_partial (may be null): the same for dx itself, x_bias's gradient (with dropout: for
// dropout->dx_drop, the gradient of x and x_bias).
// blocks = norm_backward_blocks(dtype, rms, rows, h, x_bias) (any count works; that one fills the device once).
int norm_backward(int dtype, bool rms, const void* dy, const void* dsum, const void* sum, const void* weight,
                  const float* mean, const float* rstd, void* dx, float* dweight_partial, float* dbias_partial,
                  float* dxbias_partial, int64_t rows, int64_t h, int64_t blocks, void* stream,
                  const NormDropout* dropout = nullptr);
int64_t norm_backward_blocks(int dtype, bool rms, int64_t rows, int64_t h, bool x_bias);

// The elementwise kernels below walk rows in 16-byte vectors: n (f) a multiple of 16 / sizeof(T)
// and 16-byte aligned pointers (elementwise_vectorizable); otherwise they refuse (cudaErrorInvalidValue).
bool elementwise_vectorizable(int dtype, int64_t n, std::initializer_list<const void*> ptrs);

// y = gelu(x + bias) (exact erf; with tanh the tanh approximation), x [rows, n], bias [n] (null: none).
// Backward: dx = dy * gelu'(x + bias)
// and, with dbias_partial [partial_blocks, n] float32, per-block column sums of dx (the bias
// gradient is their sum over dim 0; needs n <= 12,288); partial_blocks =
// bias_gelu_backward_blocks(dtype, tanh, bias != nullptr, rows, n), the blocks that fit on the
// device at once. Half-precision types use the hardware tanh (error ~2^-11, under their rounding).
int bias_gelu_forward(int dtype, bool tanh, const void* x, const void* bias, void* y, int64_t rows, int64_t n,
                      void* stream);
int bias_gelu_backward(int dtype, bool tanh, const void* dy, const void* x, const void* bias, void* dx,
                       float* dbias_partial, int64_t partial_blocks, int64_t rows, int64_t n, void* stream);
int64_t bias_gelu_backward_blocks(int dtype, bool tanh, bool bias, int64_t rows, int64_t n);

// Column sums of float32 partial rows [rows, n] (what the kernels above leave per block), one
// launch for up to kMaxColumnSumJobs of the same shape: out[c] = sum_r partial[r, c], or
// out[c] += that with accumulate (a parameter's float32 main gradient). out_dtype: kF32 / kBF16 /
// kF16. Deterministic (fixed summation order).
struct ColumnSumJob {
  const float* partial = nullptr;
  void* out = nullptr;
  int out_dtype = kF32;
  int accumulate = 0;
};
constexpr int kMaxColumnSumJobs = 64;  // the job table is a kernel parameter: 64 x 24 bytes
int column_sums(const ColumnSumJob* jobs, int n_jobs, int64_t rows, int64_t n, void* stream);

// The gradient of a linear layer's output y [rows, groups * width] that was viewed as
// [rows, groups, width] and split along the last dim into parts (q / k / v): dy packed from the
// parts' gradients, part p [rows, groups, size_p] at src with row_stride / group_stride (elements,
// the last dim contiguous; src null: a part without gradient, zeros). With partial [blocks, n]
// float32, also the column sums of dy per group of rows (the bias gradient is their sum, see
// column_sums); dy null: only those sums (of a single part's matrix: a bias gradient alone).
// Sizes, strides and pointers in whole 16-byte vectors. blocks (the row groups, <= 65535) =
// pack_split_grads_blocks(dtype, rows, groups * width): what fills the device once.
struct SplitPart {
  const void* src = nullptr;
  int64_t size = 0, row_stride = 0, group_stride = 0;
};
constexpr int kMaxSplitParts = 4;
int pack_split_grads(int dtype, const SplitPart* parts, int n_parts, int64_t rows, int64_t groups, void* dy,
                     float* partial, int64_t blocks, void* stream);
int64_t pack_split_grads_blocks(int dtype, int64_t rows, int64_t n);

// GPT's input embedding: out [s, b, h] = word[ids] (+ pos[pos_ids]), ids / pos_ids [b, s] int64
// (pos null: no position table). Backward: grad[id] += the sum of dy's rows of that id, for the
// ids sorted (sorted_ids [b * s] and order, the token index bi * s + si of each): one table per
// call, grad of grad_dtype (float32 main gradient or the table's dtype), deterministic. scratch:
// embedding_backward_scratch_floats(b, s, h) floats (the partial sums of runs longer than a segment).
int embedding_forward(int dtype, const void* word, const int64_t* ids, const void* pos, const int64_t* pos_ids,
                      void* out, int64_t b, int64_t s, int64_t h, void* stream);
int64_t embedding_backward_scratch_floats(int64_t b, int64_t s, int64_t h);
int embedding_backward(int dtype, const void* dy, const int64_t* sorted_ids, const int64_t* order, void* grad,
                       int grad_dtype, float* scratch, int64_t b, int64_t s, int64_t h, void* stream);

// SwiGLU: x [rows, 2f] = [gate | up], y [rows, f] = silu(gate) * up; backward writes dx [rows, 2f].
int swiglu_forward(int dtype, const void* x, void* y, int64_t rows, int64_t f, void* stream);
int swiglu_backward(int dtype, const void* dy, const void* x, void* dx, int64_t rows, int64_t f, void* stream);

// Rotary embedding on t [s, b, n1, n2, d] (strides in elements for s, b, n1, n2; d contiguous; a
// [s, b, n, d] tensor is n1 = n, n2 = 1), angles [s, rot] float32 (rot even, <= d; the first rot
// dims rotate in halves, the rest pass through). out is contiguous [s, b, n1 * n2, d]. sign = -1
// applies the inverse rotation (the backward).
struct RotaryShape {
  int64_t s, b, n1, n2, d, rot;
  int64_t stride_s, stride_b, stride_n1, stride_n2;
};
int rotary(int dtype, const void* t, const RotaryShape& shape, const float* angles, void* out, float sign,
           void* stream);

// The per-head norm of q or k (Megatron's qk_layernorm), then the rotary embedding, in one pass
// (head_norm.cu): each row of d elements of t (laid out as RotaryShape describes) is normed
// (RMSNorm, or LayerNorm with bias) by weight [d], then its first rot dims rotated by angles
// [s, rot] (rot = 0: none; angles may be null). out contiguous [s, b, n1 * n2, d]; mean
// (LayerNorm) and rstd [s * b * n1 * n2] float32 for the backward.
// Taken when d is a power-of-two count of 16-byte vectors up to 32 (bf16: 8 .. 256), rot/2 whole
// vectors, strides whole vectors and every pointer 16-byte aligned.
bool head_norm_supported(int dtype, const RotaryShape& shape, std::initializer_list<const void*> ptrs);
int head_norm_rotary_forward(int dtype, bool rms, const void* t, const RotaryShape& shape, const void* weight,
                             const void* bias, const float* angles, float eps, void* out, float* mean, float* rstd,
                             void* stream);
// The backward: dout laid out as dout_shape ([s, b, n, d] at its strides: n1 = n, n2 = 1), t as
// shape; dt contiguous [s, b, n1 * n2, d]; dweight_partial / dbias_partial (LayerNorm) [blocks, d]
// float32 column sums, blocks = head_norm_backward_blocks (the caller sums dim 0).
int64_t head_norm_backward_blocks(int dtype, const RotaryShape& shape);
int head_norm_rotary_backward(int dtype, bool rms, const void* dout, const RotaryShape& dout_shape, const void* t,
                              const RotaryShape& shape, const void* weight, const float* angles, const float* mean,
                              const float* rstd, void* dt, float* dweight_partial, float* dbias_partial,
                              void* stream);

// Cross entropy over rows of logits [rows, v] (this rank's vocabulary slice [vocab_start, vocab_start + v)):
// per row the slice's max, sum(exp(x - max)) and the target's logit (0 when the target is elsewhere).
int cross_entropy_stats(int dtype, const void* logits, const int64_t* labels, int64_t vocab_start, float* row_max,
                        float* row_sumexp, float* target_logit, int64_t rows, int64_t v, void* stream);
// dlogits = (exp(x - lse) - onehot(target)) * grad_loss, in the logits' dtype.
int cross_entropy_backward(int dtype, const void* logits, const int64_t* labels, int64_t vocab_start, const float* lse,
                           const float* grad_loss, void* dlogits, int64_t rows, int64_t v, void* stream);
// One device's whole vocabulary in one pass: loss [rows] = lse - x[target], and logits [rows, v]
// (bf16 / fp16, 16-byte aligned) overwritten with exp(x - lse) - onehot(target), unscaled.
// cross_entropy_loss_grad_fits: the kernel takes the dtype and v (v % 8 == 0; any size: a row
// past shared memory is staged in part, the rest read twice).
bool cross_entropy_loss_grad_fits(int dtype, int64_t v);
int cross_entropy_loss_grad(int dtype, void* logits, const int64_t* labels, float* loss, int64_t rows, int64_t v,
                            void* stream);
// out [rows, cols] = in [rows, cols] * g[row], float32 math and one rounding to out's dtype
// (dtype_in / dtype_out: any of the codes above; in == out allowed when the dtypes match).
int scale_rows(int dtype_in, const void* in, const float* g, int dtype_out, void* out, int64_t rows, int64_t cols,
               void* stream);

// Multi-tensor AdamW on float32 tensors, Megatron / torch.optim.AdamW's order:
//   g = grad * grad_scale (* grad_scale_on_device[0] when not null); p *= 1 - lr * wd_i; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
//   p -= lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps)
// `table` is a device array of AdamWTensor; chunk_start [count + 1] device prefix sums of chunks.
// remainders: every entry's parameter is param16 + remainder (the exact fp32 master rebuilt and
// split in registers), none has param or model_copy. bf16 moments (Megatron's --exp-avg-dtype /
// --exp-avg-sq-dtype bf16) are read as float32, updated and used in float32, and stored rounded
// stochastically (stochastic_round_bits.h; `salt` is stochastic_round::salt(step)). The update's
// float32 operations are rounded one by one (no contraction into FMAs), so every path of the
// kernel gives the same bits. bf16_moments: every tensor's moments are bf16 (picks the vector width).
struct AdamWTensor {
  float* param;  // [numel] float32, or null when param16 / remainder hold it
  const void* grad;    // [numel] of grad_dtype
  int32_t grad_dtype;  // kF32, or kBF16 (bf16 main gradients: Megatron's --main-grads-dtype bf16)
  int32_t exp_avg_dtype;     // kF32 or kBF16
  int32_t exp_avg_sq_dtype;  // kF32 or kBF16
  void* exp_avg;
  void* exp_avg_sq;
  int64_t numel;
  int64_t index_base;  // the flat index of element 0 within the whole parameter (a shard's start)
  float weight_decay;  // this tensor's decay (0 for no-decay params)
  int32_t copy_dtype;  // kBF16 / kF16: also write the updated param, rounded, to model_copy
  void* model_copy;    // [numel] or null
  // Megatron's store_param_remainders (param_remainders.h): the fp32 master as its bf16 upper
  // half (the model's parameter, rounded half away from zero) and an int16 lower half, both
  // updated in place. Null when param is set. A launch has either every param or none this way.
  uint16_t* param16;
  int16_t* remainder;
  // Megatron's fp16 / fp8 moments (sdk/scaled_state.h): a moment of dtype kF16 or kE4M3 is
  // stored x *scale; null scales for float32 / bf16 moments. amax [2]: the updated moments'
  // largest magnitudes (float bits, zeroed before the launch), which set the new scales.
  float* exp_avg_scale;
  float* exp_avg_sq_scale;
  float* amax;
};
constexpr int64_t kAdamWChunk = 16384;
// scaled: some entry has a scaled moment. Then three launches: the updated moments' largest
// magnitudes, the update storing each scaled moment x (1 / its new scale), the new scales.
int adamw_multi_tensor(const AdamWTensor* table, const int64_t* chunk_start, int64_t count, int64_t total_chunks,
                       float lr, float beta1, float beta2, float eps, float bias_correction1,
                       float bias_correction2_sqrt, float grad_scale, const float* grad_scale_on_device,
                       bool remainders, bool bf16_moments, bool scaled, uint32_t salt, void* stream);

// ---- cuBLASLt matrix products (gemm_lt.cu) ----
// Row-major D[m, n] = op(A)[m, k] op(B)[k, n] (+ D when accumulate, + C when given), with an epilogue torch's own
// GEMMs do not expose. A is stored [m, k] ([k, m] with trans_a), B [k, n] ([n, k] with trans_b);
// lda / ldb / ldd / ld_aux are row strides in elements. A and B share dtype_ab; D may be float32
// under (b)f16 inputs (the gradient-accumulation fusion: the weight gradient lands in the fp32 main
// gradient). handle is a cublasLtHandle_t, workspace device memory.
enum GemmEpilogue : int {
  kGemmPlain = 0,
  kGemmGeluAuxBias = 1,  // aux = AB + bias[n], D = gelu_tanh(aux)
  kGemmBGradA = 2,       // D (+)= AB; bias[m] = sum over k of op(A) (written): a linear's bias gradient
  kGemmBias = 3,         // D = AB + bias[n]
  kGemmDGelu = 4,        // D = AB * gelu_tanh'(aux): the GeLU backward, aux [m, n] its input
};
struct GemmArgs {
  int dtype_ab = kBF16, dtype_d = kBF16;
  bool trans_a = false, trans_b = false, accumulate = false;
  int64_t m = 0, n = 0, k = 0;
  const void* a = nullptr;
  const void* b = nullptr;
  void* d = nullptr;
  // Null, or C [m, n] (ldd, dtype_d) added to the product: D = op(A) op(B) (+ epilogue) + C, with
  // C another buffer than D (a residual stream). Not with accumulate.
  const void* c = nullptr;
  int64_t lda = 0, ldb = 0, ldd = 0;
  int epilogue = kGemmPlain;
  void* bias = nullptr;  // [n] ([m] for kGemmBGradA), dtype_d's dtype
  void* aux = nullptr;   // [m, n] of dtype_d (kGemmGeluAuxBias, kGemmDGelu)
  int64_t ld_aux = 0;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
  void* handle = nullptr;
  void* stream = nullptr;
};
// 0: done. kGemmNoAlgorithm: cuBLASLt has no algorithm for this shape / epilogue (nothing ran:
// the caller takes the plain path). Other values: a cublasStatus_t + kGemmCublasError.
constexpr int kGemmNoAlgorithm = -1, kGemmCublasError = 100000;
// The first call of each shape picks cuBLASLt's algorithm: by timing the heuristic's best few
// candidates on the call's own operands (MEGAHOST_GEMM_AUTOTUNE, default on; 0 takes the
// heuristic's first), MEGAHOST_GEMM_LOG=1 prints each choice to stderr.
int gemm_lt(const GemmArgs& g);
const char* gemm_lt_error(int status);

}  // namespace megahost::sdk::kernels
