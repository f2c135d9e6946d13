// megahost SDK — fused operations. Each has a plain libtorch reference (namespace reference,
// used on the CPU and by the tests) and, in CUDA builds on CUDA tensors, a fused kernel of
// sdk/src/kernels with its own backward. Same signatures, same results within rounding:
// tests/fused_kernels compares both against float64 on fresh random inputs.
//
//   add_norm       LayerNorm / RMSNorm of (x + residual), also returning the sum (the residual
//                  stream), in one read of each input
//   norm           the same without a residual
//   bias_gelu      gelu(x + bias), exact erf GeLU (the GEMM then runs without its bias epilogue)
//   swiglu         silu(gate) * up of [..., 2f] -> [..., f]
//   rotary         rotary position embedding from float32 angles, strided input
//   head_norm_rotary  q or k normed per head (qk_layernorm), then rotated, in one pass
//   cross_entropy  per-token loss from (b)f16 logits without a float32 copy of them, vocab-parallel
//   lm_head_cross_entropy  the output layer + cross entropy, the logits written and read once
//   adamw          multi-tensor AdamW with the gradient scale (clipping, 1/loss scale) folded in
//   linear         x W^T + b whose backward adds the weight gradient straight into weight.grad()
//                  (Megatron's gradient-accumulation fusion; cuBLASLt float32 accumulation on CUDA)
//   gelu_mlp       gelu_tanh(x W1^T + b1) W2^T (+ b2): bias + GeLU in fc1's GEMM epilogue (cuBLASLt,
//                  keeping the pre-activation), the GeLU and bias gradients in one fused pass
//   packed_causal_attention  cuDNN's causal attention whose backward writes dq / dk / dv into one
//                  buffer in the packed q/k/v layout (linear_split's backward then packs nothing)
#pragma once

#include <ATen/core/Tensor.h>

#include <utility>
#include <vector>

namespace megahost::sdk::parallel {
class DistGroup;
}

namespace megahost::sdk::fused {

// This build has the CUDA kernels (MH_SDK_WITH_CUDA).
bool built_with_cuda();
// The fused kernel would run for t: CUDA build, CUDA tensor, a dtype the kernels take
// (float32, bfloat16, float16), and fusion not switched off with MEGAHOST_FUSED=0.
bool available(const at::Tensor& t);

// x, residual [..., h]; weight, bias [h] (bias undefined: none; RMSNorm: ignored) -> (y, x + residual).
// x_bias [h] (may be undefined): a bias of x added with it, (y, (x + x_bias) + residual) — the
// sub-layer's output bias when its linear skipped it (Megatron's skip_bias_add + bias-add fusion);
// its gradient comes out of the norm's backward pass.
std::pair<at::Tensor, at::Tensor> add_norm(const at::Tensor& x, const at::Tensor& residual, const at::Tensor& weight,
                                           const at::Tensor& bias, double eps, bool rms,
                                           const at::Tensor& x_bias = at::Tensor());
// add_norm with dropout on x (Megatron's bias-dropout-add, then the norm), for training:
// (y, residual + dropout(x + x_bias, p)). CUDA: one pass that draws the mask from the CUDA
// generator's Philox stream (graph-safe) and keeps it as one bit per element for the backward
// pass, which yields x's gradient beside the residual's. For shapes the register kernels do not
// cover (dropout_in_norm false: h not a whole number of 16-byte vectors for 64-512 threads x 1, 2
// or 4 each) libtorch's dropout, then the fused add_norm; off CUDA the reference (libtorch's
// dropout, add and norm).
std::pair<at::Tensor, at::Tensor> add_dropout_norm(const at::Tensor& x, const at::Tensor& residual,
                                                   const at::Tensor& weight, const at::Tensor& bias, double eps,
                                                   bool rms, const at::Tensor& x_bias, double p);
// Whether add_dropout_norm draws x's mask inside the norm's kernel (x's device, dtype and hidden
// size x.size(-1): bf16 768, 1024, 1536, 2048, 2560, 4096, 5120, 8192, 12288, ... on CUDA).
bool dropout_in_norm(const at::Tensor& x);
at::Tensor norm(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, double eps, bool rms);
// (norm(x), x') where x' equals x and is what x's other use (the residual stream) must take: the
// backward then adds that use's gradient inside the norm's pass. x_bias [h] (may be undefined): a
// bias already added into x by the product that made x (linear_add / gelu_mlp_add with the bias's
// gradient left elsewhere); its gradient, the column sums of x's, comes out of the same pass.
std::pair<at::Tensor, at::Tensor> norm_passthrough(const at::Tensor& x, const at::Tensor& weight,
                                                   const at::Tensor& bias, double eps, bool rms,
                                                   const at::Tensor& x_bias = at::Tensor());
at::Tensor bias_gelu(const at::Tensor& x, const at::Tensor& bias);  // [..., n], [n] (may be undefined)
at::Tensor swiglu(const at::Tensor& x);                             // [..., 2f] -> [..., f]
// t [s, b, n, d] or [s, b, n1, n2, d] (any strides, d contiguous: q read straight from the grouped
// q/k/v layout [s, b, ng, np/ng, hn]), angles [s, 1, 1, rot] float32 (both halves equal, as
// RotaryEmbedding makes them) -> contiguous [s, b, n, d] (n = n1 * n2)
at::Tensor rotary(const at::Tensor& t, const at::Tensor& angles);
// Megatron's qk_layernorm and then the rotary embedding: each head's d values of t (laid out as
// `rotary` takes it) normed over d (RMSNorm, or LayerNorm with bias) by weight [d], then rotated
// by angles (undefined: not rotated) -> contiguous [s, b, n, d]. On CUDA one pass that reads t at
// its strides and writes the result once (the backward: one pass too, the weight's gradient from
// column sums) for d of 8, 16, 32, 64, 128 or 256 bf16 values; else `norm`, then `rotary`
// (MEGAHOST_FUSED_HEAD_NORM=0: always).
at::Tensor head_norm_rotary(const at::Tensor& t, const at::Tensor& weight, const at::Tensor& bias, double eps,
                            bool rms, const at::Tensor& angles);
// logits [N, V/tp] (rank r holds ids [r V/tp, (r+1) V/tp)), labels [N] int64 -> loss [N] float32.
// tp null: one device.
at::Tensor cross_entropy(const at::Tensor& logits, const at::Tensor& labels, const parallel::DistGroup* tp);

// The fused norms' and linears' weight and bias gradients end in a column sum of per-block partial
// rows. While a DeferredColumnSums is alive, the sums whose target is a parameter's own gradient
// (and no grad-ready callback watches it: an overlapped reduction needs it on time) are held back
// and flush() runs them all, one launch per shape, instead of one launch per layer in the
// backward. Create one before a backward and flush() right after it (the destructor runs what is
// left: a backward that threw). One holds back per process at a time; a second one alive at once
// holds nothing itself, and its sums wait at most until the first one flushes. No-op without
// CUDA; MEGAHOST_DEFER_COLUMN_SUMS=0 turns it off.
class DeferredColumnSums {
 public:
  DeferredColumnSums();
  ~DeferredColumnSums();
  DeferredColumnSums(const DeferredColumnSums&) = delete;
  DeferredColumnSums& operator=(const DeferredColumnSums&) = delete;
  void flush();

 private:
  bool owner_ = false;
};

struct AdamWHyper {
  double lr = 0, beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  int64_t step = 1;         // 1-based, for the bias corrections
  double grad_scale = 1.0;  // multiplies every gradient first
  // Undefined, or a one-element float32 tensor on the params' device that multiplies every
  // gradient too (the clipping coefficient computed on the device: read on the stream only).
  at::Tensor grad_scale_tensor;
};
// float32 params / grads / states; weight_decay per tensor. Updates in place. The grads and each
// moment may also be bf16 (Megatron's --main-grads-dtype, --exp-avg-dtype, --exp-avg-sq-dtype):
// read as float32; a bf16 moment is updated and used in float32 and stored rounded stochastically
// (stochastic_round.h, salted by h.step: 0 for exp_avg, 1 for exp_avg_sq). model_copies: empty,
// or per param undefined or a same-shape bfloat16 / float16 tensor that receives the updated
// param, rounded (the fp32 master -> model parameter copy, in the same pass on CUDA).
// remainders: empty, or one contiguous int16 tensor per param, and then every param is the bf16
// upper half of an fp32 master whose lower half the remainder holds (param_remainders.h); both
// are updated in place (no model_copies then). offsets: empty, or per param the flat index of its
// first element within the whole parameter it is a shard of (the rounding bits follow the index).
// scales: empty, or per param and moment undefined or the float32 [1] scale of a moment stored in
// float16 or E4M3 bits (uint8): Megatron's fp16 / fp8 moments (sdk/scaled_state.h), read as
// stored x scale and stored back with the scale of the updated values (two passes on CUDA).
struct AdamWScales {
  std::vector<at::Tensor> exp_avg, exp_avg_sq;
};
void adamw(const std::vector<at::Tensor>& params, const std::vector<at::Tensor>& grads,
           const std::vector<at::Tensor>& exp_avgs, const std::vector<at::Tensor>& exp_avg_sqs,
           const std::vector<double>& weight_decays, const AdamWHyper& h,
           const std::vector<at::Tensor>& model_copies = {}, const std::vector<at::Tensor>& remainders = {},
           const std::vector<int64_t>& offsets = {}, const AdamWScales& scales = {});

// x [..., k], weight [n, k], bias [n] (may be undefined) -> [..., n]. With accumulate_into_grad, a
// backward where weight.grad() is defined adds x^T dy into it in place and returns no weight
// gradient to autograd (nn::notify_grad_accumulated fires the weight's grad-ready hook); the
// weight must have no other use in the graph. Without, this is at::linear. notify_grad_ready =
// false: a later backward use of the weight fires the hook instead (the tied word table, whose
// input embedding's backward runs after the output layer's); the gradient is still added in place
// whenever weight.grad() is defined, never returned.
at::Tensor linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, bool accumulate_into_grad,
                  bool notify_grad_ready = true);
// residual + x W^T + b in the product itself (cuBLASLt: the bias in the epilogue, beta = 1 over
// residual [..., n]): a sub-layer's output joining the residual stream without a pass of its own
// (tp = 1, no dropout). The residual's gradient is the output's. bias_grad_elsewhere: no gradient
// for the bias from here; the next norm_passthrough (x_bias) sums it. Weight gradients as `linear`.
at::Tensor linear_add(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, const at::Tensor& residual,
                      bool accumulate_into_grad, bool bias_grad_elsewhere);
// linear, its output [..., n] viewed as [..., groups, width] and split along the last dim into
// parts of `sizes` (width = their sum): attention's q / k / v from linear_qkv. On CUDA the
// backward packs the parts' gradients in one pass that also sums the bias gradient (no cat, no
// bias-gradient epilogue on the weight-gradient GEMM); elsewhere linear + view + split.
std::vector<at::Tensor> linear_split(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                                     int64_t groups, const std::vector<int64_t>& sizes, bool accumulate_into_grad);
// Causal attention of q, k, v [b, n, s, hn] that are views tiling one buffer (linear_split's
// output, permuted), through cuDNN: its backward returns dq / dk / dv as views of one new buffer
// at the same offsets and strides, written there by cuDNN's backward called through its backend
// API (kernels/cudnn_sdpa.cu), so linear_split's backward finds its output gradient already
// packed. Undefined where it does not apply (not CUDA, float32, grouped-query k / v, views that
// do not tile one buffer, libtorch would pick another kernel than cuDNN's, cuDNN refuses the
// graph, MEGAHOST_PACKED_ATTENTION_BACKWARD=0): the caller runs scaled_dot_product_attention.
at::Tensor packed_causal_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v);
// GPT's input embedding: word [V, h] at ids [b, s] (+ pos [P, h] at pos_ids [b, s] or [1, s]; pos
// may be undefined) -> [s, b, h], the transformer's layout. On CUDA one kernel forward; backward
// sums each table's gradient per distinct id (sorted: deterministic) straight into its bound main
// gradient. word_other_use: the word table has another use in this graph (the tied output
// layer) through autograd, whose accumulation then fires its grad-ready hook; false when that use
// adds its gradient itself without firing it (fused::linear with notify_grad_ready = false)
// (MEGAHOST_FUSED_EMBEDDING=0: the plain ops).
at::Tensor embedding_sbh(const at::Tensor& word, const at::Tensor& ids, const at::Tensor& pos,
                         const at::Tensor& pos_ids, bool word_other_use);
// x [..., h], w1 [f, h], b1 [f], w2 [h2, f], b2 [h2] or undefined -> [..., h2] =
// gelu_tanh(x w1^T + b1) w2^T + b2 (under tensor parallelism leave b2 out: it is added after the
// reduction). Weight gradients as `linear`.
at::Tensor gelu_mlp(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& b1, const at::Tensor& w2,
                    const at::Tensor& b2, bool accumulate_into_grad);

// gelu_mlp + residual [..., h2] with the add in fc2's product, as linear_add (b2_grad_elsewhere too).
at::Tensor gelu_mlp_add(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& b1, const at::Tensor& w2,
                        const at::Tensor& b2, const at::Tensor& residual, bool accumulate_into_grad,
                        bool b2_grad_elsewhere);

// The output layer and its cross entropy on one device: loss [M] float32 of the logits x w^T
// [M, V] at labels [M] int64; x [M, h], w [V, h]. On CUDA with bf16 / fp16 and
// accumulate_into_grad, one kernel turns the logits into the loss and, in their place, their
// gradient for a loss gradient of one; the backward applies the real per-row gradient to x and to
// the input gradient instead of the [M, V] tensor (MEGAHOST_FUSED_LM_HEAD=0: off). Elsewhere
// linear + cross_entropy. accumulate_into_grad / notify_grad_ready as `linear`.
at::Tensor lm_head_cross_entropy(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& labels,
                                 bool accumulate_into_grad, bool notify_grad_ready = true);
// Whether lm_head_cross_entropy takes the one-kernel path for these operands (any vocabulary
// that is a whole number of 16-byte vectors: a row past shared memory is staged in part).
bool lm_head_fuses(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& labels);

namespace reference {
std::pair<at::Tensor, at::Tensor> norm_passthrough(const at::Tensor& x, const at::Tensor& weight,
                                                   const at::Tensor& bias, double eps, bool rms,
                                                   const at::Tensor& x_bias = at::Tensor());
at::Tensor embedding_sbh(const at::Tensor& word, const at::Tensor& ids, const at::Tensor& pos,
                         const at::Tensor& pos_ids);
at::Tensor gelu_mlp(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& b1, const at::Tensor& w2,
                    const at::Tensor& b2);
std::pair<at::Tensor, at::Tensor> add_norm(const at::Tensor& x, const at::Tensor& residual, const at::Tensor& weight,
                                           const at::Tensor& bias, double eps, bool rms,
                                           const at::Tensor& x_bias = at::Tensor());
std::pair<at::Tensor, at::Tensor> add_dropout_norm(const at::Tensor& x, const at::Tensor& residual,
                                                   const at::Tensor& weight, const at::Tensor& bias, double eps,
                                                   bool rms, const at::Tensor& x_bias, double p);
at::Tensor norm(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, double eps, bool rms);
at::Tensor bias_gelu(const at::Tensor& x, const at::Tensor& bias);
at::Tensor swiglu(const at::Tensor& x);
at::Tensor rotary(const at::Tensor& t, const at::Tensor& angles);
at::Tensor head_norm_rotary(const at::Tensor& t, const at::Tensor& weight, const at::Tensor& bias, double eps,
                            bool rms, const at::Tensor& angles);
at::Tensor cross_entropy(const at::Tensor& logits, const at::Tensor& labels, const parallel::DistGroup* tp);
void adamw(const std::vector<at::Tensor>& params, const std::vector<at::Tensor>& grads,
           const std::vector<at::Tensor>& exp_avgs, const std::vector<at::Tensor>& exp_avg_sqs,
           const std::vector<double>& weight_decays, const AdamWHyper& h, const std::vector<int64_t>& offsets = {});
}  // namespace reference

}  // namespace megahost::sdk::fused
