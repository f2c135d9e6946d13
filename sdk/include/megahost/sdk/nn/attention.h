// megahost SDK — Megatron-Core's SelfAttention: fused QKV projection, rotary, causal
// scaled-dot-product attention (grouped-query when num_query_groups < num_attention_heads),
// output projection.
//
// linear_qkv (column parallel) produces, per query group g, the group's heads' queries, then its
// key, then its value — [s, b, ng, (np/ng + 2) * hn] — so a checkpoint of Megatron-Core loads
// unchanged and each TP rank holds whole groups. Query head i attends with group i / (np/ng).
//
// Tensor parallel: each rank holds np/tp heads and ng/tp query groups (linear_qkv's dim-0 slice
// is whole groups; linear_proj's dim-1 slice is the same heads); attention dropout draws from the
// per-TP-rank generator (megahost/sdk/parallel/random.h), through the unfused path. Context parallel: each cp rank
// holds two chunks of the sequence (megahost/sdk/parallel/context_parallel.h); K and V are
// all-gathered over the cp group (their grads reduce-scattered back) and the causal mask compares
// GLOBAL positions of the local queries with the gathered keys (Megatron-Core's all-gather CP).
#pragma once

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <optional>
#include <string>

#include "megahost/sdk/nn/linear.h"
#include "megahost/sdk/nn/norm.h"
#include "megahost/sdk/nn/params.h"
#include "megahost/sdk/nn/transformer_config.h"

namespace megahost::sdk::nn {

class SelfAttention {
 public:
  // Registers "<prefix>.linear_qkv.*" and "<prefix>.linear_proj.*".
  SelfAttention(ParamRegistry& reg, const std::string& prefix, const TransformerConfig& cfg);

  // x [s, b, hidden] ([s/tp, b, hidden] under sequence parallelism); rotary_freqs
  // [s, 1, 1, rot_dim] for this rank's positions, or undefined -> same shape as x.
  // Causal, or with cfg.attn_mask_type = Padding bidirectional over the real tokens of
  // key_padding [b, s] bool (true: a real token; undefined: every token is real). Attention
  // dropout only when training. skip_bias: linear_proj's bias is left to the caller
  // (RowParallelLinear::forward). residual: added in linear_proj's product (tp = 1; see
  // RowParallelLinear::forward).
  at::Tensor forward(const at::Tensor& x, const at::Tensor& rotary_freqs, bool training,
                     bool skip_bias = false, const at::Tensor& residual = at::Tensor(),
                     const at::Tensor& key_padding = at::Tensor()) const;

  // The pieces of forward, exposed for tests: x [s, b, hidden] ->
  // q [s, b, np, hn], k [s, b, ng, hn], v [s, b, ng, hn] (np/tp and ng/tp under TP); with
  // rotary_freqs [s, 1, 1, rot] q and k rotated (read from the projection's output in place).
  // Under qk_layernorm q and k are normed per head first.
  void query_key_value(const at::Tensor& x, at::Tensor* q, at::Tensor* k, at::Tensor* v,
                       const at::Tensor& rotary_freqs = at::Tensor()) const;

  ColumnParallelLinear linear_qkv;
  RowParallelLinear linear_proj;
  // qk_layernorm: Megatron-Core's q_layernorm / k_layernorm over each head's kv_channels, shared by
  // the heads (replicated over TP, their gradients summed over it: MH_PARAM_SEQUENCE_PARALLEL).
  std::optional<Norm> q_layernorm, k_layernorm;

 private:
  int64_t heads_, groups_, head_dim_;  // heads and groups held by this rank
  double attention_dropout_;
  AttnMaskType mask_type_;
  bool recompute_core_attention_;  // recompute_granularity = Selective
  ParallelContextPtr parallel_;
};

// Causal attention with grouped queries: q [s, b, np, hn], k/v [s, b, ng, hn] -> context
// [s, b, np * hn]. Under multi-head attention without dropout, q / k / v views of one buffer
// (linear_qkv's output) take fused::packed_causal_attention on CUDA (cuDNN, its backward writing
// their gradients packed). Else megahost::compat::causal_attention (fused kernels on 2.x), for ng < np
// compat::causal_attention_grouped (the groups read by the kernel, libtorch 2.5+) or else k / v
// repeated to every query head; with dropout_gen and dropout_p > 0, the unfused path whose
// dropout draws from dropout_gen (the per-TP-rank generator of megahost/sdk/parallel/random.h).
at::Tensor causal_dot_product_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                        double dropout_p, const std::optional<at::Generator>& dropout_gen = std::nullopt);

// The same with the causal mask by positions: q [sq, b, np, hn] at q_positions [sq] int64,
// k/v [sk, b, ng, hn] at k_positions [sk]; query i sees key j when q_pos[i] >= k_pos[j].
at::Tensor causal_attention_by_positions(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                         const at::Tensor& q_positions, const at::Tensor& k_positions,
                                         double dropout_p, const std::optional<at::Generator>& dropout_gen = std::nullopt);

// Attention with a padding mask (bidirectional models, e.g. BERT; causal adds the causal mask):
// q [sq, b, np, hn], k/v [sk, b, ng, hn], key_padding [b, sk] bool (true: a real token) ->
// [sq, b, np * hn]. Fused kernels on CUDA (libtorch 2.x); grouped-query as above.
at::Tensor padded_dot_product_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                        const at::Tensor& key_padding, bool causal, double dropout_p);

// Megatron's --attention-backend, process-wide: which libtorch attention kernels may run.
//   auto (libtorch's choice), flash, cudnn (Megatron: fused), efficient, math (Megatron: unfused, local)
// False for an unknown name.
bool select_attention_backend(const std::string& name);

}  // namespace megahost::sdk::nn
