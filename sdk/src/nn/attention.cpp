// megahost SDK — self-attention (see megahost/sdk/nn/attention.h).
#include "megahost/sdk/nn/attention.h"

#include <ATen/ATen.h>

#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>

#include "megahost/sdk/compat.h"
#include "megahost/sdk/error.h"
#include "megahost/sdk/nn/fused.h"
#include "megahost/sdk/nn/recompute.h"
#include "megahost/sdk/nn/rotary.h"
#include "megahost/sdk/parallel/context_parallel.h"
#include "megahost/sdk/parallel/random.h"

namespace megahost::sdk::nn {

SelfAttention::SelfAttention(ParamRegistry& reg, const std::string& prefix, const TransformerConfig& cfg)
    : linear_qkv(reg, join_name(prefix, "linear_qkv"), cfg.hidden_size,
                 cfg.query_projection_size() + 2 * cfg.kv_projection_size(), cfg.add_bias_linear || cfg.add_qkv_bias,
                 Init::normal(cfg.init_method_std), cfg.parallel),
      linear_proj(reg, join_name(prefix, "linear_proj"), cfg.query_projection_size(), cfg.hidden_size,
                  cfg.add_bias_linear, Init::normal(cfg.output_layer_init_std()), cfg.parallel),
      heads_(cfg.num_attention_heads),
      groups_(cfg.num_query_groups),
      head_dim_(cfg.kv_channels),
      attention_dropout_(cfg.attention_dropout),
      mask_type_(cfg.attn_mask_type),
      recompute_core_attention_(cfg.recompute_granularity == RecomputeGranularity::Selective),
      parallel_(cfg.parallel) {
  linear_qkv.gradient_accumulation_fusion = cfg.gradient_accumulation_fusion;
  linear_proj.gradient_accumulation_fusion = cfg.gradient_accumulation_fusion;
  MH_CHECK(groups_ > 0 && heads_ % groups_ == 0, MH_ERR_INVALID_ARG, "num_attention_heads (", heads_,
           ") must be a multiple of num_query_groups (", groups_, ")");
  const int64_t tp = parallel_ ? parallel_->tp.size() : 1;
  if (cfg.qk_layernorm) {
    // Each TP rank norms its own heads with the shared weights: the gradients are partial sums.
    const uint32_t flags = tp > 1 ? MH_PARAM_SEQUENCE_PARALLEL : 0u;
    q_layernorm.emplace(reg, join_name(prefix, "q_layernorm"), cfg.kv_channels, cfg.normalization, cfg.norm_epsilon,
                        flags);
    k_layernorm.emplace(reg, join_name(prefix, "k_layernorm"), cfg.kv_channels, cfg.normalization, cfg.norm_epsilon,
                        flags);
  }
  heads_ = parallel::divide(heads_, tp, "num_attention_heads", "tensor_model_parallel_size");
  groups_ = parallel::divide(groups_, tp, "num_query_groups", "tensor_model_parallel_size");
}

void SelfAttention::query_key_value(const at::Tensor& x, at::Tensor* q, at::Tensor* k, at::Tensor* v,
                                    const at::Tensor& rotary_freqs) const {
  // [s, b, ng * (np/ng + 2) * hn] viewed as [s, b, ng, (np/ng + 2) * hn] and split: one split (on
  // CUDA its backward packs q / k / v's gradients and sums the bias gradient in one kernel), not
  // three narrows (each backward a zero-filled [s, b, 3h] buffer, a copy, and adds to sum them).
  const at::Tensor in = linear_qkv.input_region(x);  // the whole sequence also under SP
  const int64_t per_group = heads_ / groups_;
  const std::vector<at::Tensor> parts =
      fused::linear_split(in, linear_qkv.weight, linear_qkv.bias, groups_, {per_group * head_dim_, head_dim_, head_dim_},
                          linear_qkv.gradient_accumulation_fusion && in.is_cuda());
  const int64_t s = parts[0].size(0), b = parts[0].size(1);
  // q in the grouped layout [s, b, ng, np/ng, hn]: a view (under grouped-query attention merging
  // ng and np/ng copies; the rotary kernel reads the view and writes [s, b, np, hn] instead).
  const at::Tensor q_grouped = parts[0].view({s, b, groups_, per_group, head_dim_}), key = parts[1];
  if (q_layernorm) {  // per head, before the rotation (Megatron-Core's order): one pass with it on CUDA
    *q = q_layernorm->forward_rotary(q_grouped, rotary_freqs);  // [s, b, np, hn]
    *k = k_layernorm->forward_rotary(key, rotary_freqs);        // [s, b, ng, hn]
  } else if (rotary_freqs.defined()) {
    *q = fused::rotary(q_grouped, rotary_freqs);  // [s, b, np, hn]
    *k = fused::rotary(key, rotary_freqs);        // [s, b, ng, hn]
  } else {
    *q = q_grouped.reshape({s, b, heads_, head_dim_});  // [s, b, np, hn]
    *k = key;                                           // [s, b, ng, hn]
  }
  *v = parts[2];  // [s, b, ng, hn]
}

at::Tensor SelfAttention::forward(const at::Tensor& x, const at::Tensor& rotary_freqs, bool training,
                                  bool skip_bias, const at::Tensor& residual, const at::Tensor& key_padding) const {
  at::Tensor q, k, v;
  query_key_value(x, &q, &k, &v, rotary_freqs);
  const double dropout_p = training ? attention_dropout_ : 0.0;
  if (mask_type_ == AttnMaskType::Padding) {
    // Bidirectional over the real tokens (BERT, T5's encoder): {q, k, v, keep}.
    MH_CHECK(parallel_ == nullptr || parallel_->cp.size() == 1, MH_ERR_UNSUPPORTED,
             "attention with a padding mask under context parallelism is not supported"
             "\nHINT: set [parallel] context_parallel_size = 1");
    const int64_t s = q.size(0), b = q.size(1);
    const at::Tensor keep = key_padding.defined() ? key_padding.to(at::kBool)  // [b, s]
                                                  : at::ones({b, s}, q.options().dtype(at::kBool));
    auto padded_attention = [dropout_p](const std::vector<at::Tensor>& in) {
      return padded_dot_product_attention(in[0], in[1], in[2], in[3], /*causal=*/false, dropout_p);
    };
    const std::vector<at::Tensor> in = {q, k, v, keep};
    const at::Tensor context =
        recompute_core_attention_ && training ? checkpoint(padded_attention, in) : padded_attention(in);
    return linear_proj.forward(context, skip_bias, residual);  // [s, b, hidden]
  }
  // Megatron's core attention: softmax(QK^T)V with its dropout. Inputs {q, k, v} or, under
  // context parallelism, {q, k_all, v_all, q_pos, k_pos}.
  auto core_attention = [this, dropout_p](const std::vector<at::Tensor>& in) -> at::Tensor {
    // Each TP rank holds other heads: their dropout masks come from the per-TP-rank generator
    // (Megatron's rng tracker fork); at tp = 1 the kernel draws from the default generator.
    // Built here, from the default generator, so a recompute rebuilds the same one.
    std::optional<at::Generator> dropout_gen;
    if (dropout_p > 0.0 && parallel_ && parallel_->tp.size() > 1)
      dropout_gen = parallel::tensor_parallel_generator(in[0].device(), parallel_->tp);
    if (in.size() == 3) return causal_dot_product_attention(in[0], in[1], in[2], dropout_p, dropout_gen);
    return causal_attention_by_positions(in[0], in[1], in[2], in[3], in[4], dropout_p, dropout_gen);
  };
  // Selective recompute: keep only q, k, v; backward recomputes the [b, n, s, s] scores.
  auto run_core_attention = [&](const std::vector<at::Tensor>& in) {
    return recompute_core_attention_ && training ? checkpoint(core_attention, in) : core_attention(in);
  };
  const int cp = parallel_ ? parallel_->cp.size() : 1;
  if (cp == 1) return linear_proj.forward(run_core_attention({q, k, v}), skip_bias, residual);  // [s, b, hidden]
  // Context parallel: gather every rank's keys/values (already rotated at their own positions).
  const int64_t s = q.size(0);
  const at::Tensor k_all = parallel::gather_from_sequence_parallel_region(k, parallel_->cp);  // [cp*s, b, ng, hn]
  const at::Tensor v_all = parallel::gather_from_sequence_parallel_region(v, parallel_->cp);
  const at::Tensor q_pos = parallel::context_parallel_positions(s, parallel_->cp.rank(), cp, q.device());
  const at::Tensor k_pos = parallel::context_parallel_gathered_positions(s, cp, q.device());
  return linear_proj.forward(run_core_attention({q, k_all, v_all, q_pos, k_pos}), skip_bias, residual);
}

namespace {

// The unfused path, for dropout from an explicit generator (the fused kernels take none):
// qb [b, n, sq, hn], kb/vb [b, n, sk, hn], additive mask [sq, sk] -> [b, n, sq, hn].
at::Tensor attention_with_generator(const at::Tensor& qb, const at::Tensor& kb, const at::Tensor& vb,
                                    const at::Tensor& mask, double dropout_p, const at::Generator& gen) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(qb.size(-1)));
  const at::Tensor scores = at::matmul(qb, kb.transpose(-2, -1)) * scale + mask;  // [b, n, sq, sk]
  const at::Tensor probs = parallel::dropout_with(at::softmax(scores, -1), dropout_p, true, gen);
  return at::matmul(probs, vb);  // [b, n, sq, hn]
}

// MEGAHOST_GQA_REPEAT=1: grouped-query k / v repeated to every query head even where the
// kernels could read the groups (the A/B of docs/performance.md).
bool gqa_repeat_forced() {
  static const bool on = [] {
    const char* v = std::getenv("MEGAHOST_GQA_REPEAT");
    return v != nullptr && *v != '\0' && std::string(v) != "0";
  }();
  return on;
}

// Additive causal mask [sq, sk]: 0 where visible, -inf where the key lies in the query's future.
at::Tensor additive_mask(const at::Tensor& q_positions, const at::Tensor& k_positions, const at::TensorOptions& opts) {
  const at::Tensor visible = q_positions.unsqueeze(1) >= k_positions.unsqueeze(0);
  return at::zeros(visible.sizes(), opts).masked_fill(visible.logical_not(), -std::numeric_limits<double>::infinity());
}

}  // namespace

at::Tensor causal_dot_product_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                        double dropout_p, const std::optional<at::Generator>& dropout_gen) {
  const int64_t s = q.size(0), b = q.size(1), heads = q.size(2), groups = k.size(2), hn = q.size(3);
  const bool own_dropout = dropout_gen && dropout_p > 0.0;
  // [s, b, n, hn] -> [b, n, s, hn], the layout of scaled_dot_product_attention
  const at::Tensor qb = q.permute({1, 2, 0, 3});
  at::Tensor out;
  if (groups == heads && dropout_p == 0.0)  // cuDNN, its gradients written packed for linear_qkv
    out = fused::packed_causal_attention(qb, k.permute({1, 2, 0, 3}), v.permute({1, 2, 0, 3}));
  if (!out.defined() && groups != heads && !own_dropout && !gqa_repeat_forced())  // the kernels read the groups (libtorch 2.5+)
    out = compat::causal_attention_grouped(qb, k.permute({1, 2, 0, 3}), v.permute({1, 2, 0, 3}), dropout_p);
  if (out.defined()) return out.permute({2, 0, 1, 3}).reshape({s, b, heads * hn});  // [s, b, np * hn]
  at::Tensor key = k, value = v;
  if (groups != heads) {  // grouped-query: query head i uses group i / (np / ng)
    key = k.repeat_interleave(heads / groups, /*dim=*/2);
    value = v.repeat_interleave(heads / groups, /*dim=*/2);
  }
  const at::Tensor kb = key.permute({1, 2, 0, 3}), vb = value.permute({1, 2, 0, 3});
  if (own_dropout) {
    const at::Tensor pos = at::arange(s, q.options().dtype(at::kLong));
    out = attention_with_generator(qb, kb, vb, additive_mask(pos, pos, q.options()), dropout_p, *dropout_gen);
  } else {
    out = compat::causal_attention(qb, kb, vb, dropout_p);
  }
  return out.permute({2, 0, 1, 3}).reshape({s, b, heads * hn});  // [s, b, np * hn]
}

at::Tensor causal_attention_by_positions(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                         const at::Tensor& q_positions, const at::Tensor& k_positions,
                                         double dropout_p, const std::optional<at::Generator>& dropout_gen) {
  const int64_t sq = q.size(0), b = q.size(1), heads = q.size(2), groups = k.size(2), hn = q.size(3);
  at::Tensor key = k, value = v;
  if (groups != heads) {
    key = k.repeat_interleave(heads / groups, /*dim=*/2);
    value = v.repeat_interleave(heads / groups, /*dim=*/2);
  }
  const at::Tensor mask = additive_mask(q_positions, k_positions, q.options());  // [sq, sk]
  const at::Tensor qb = q.permute({1, 2, 0, 3}), kb = key.permute({1, 2, 0, 3}), vb = value.permute({1, 2, 0, 3});
  if (dropout_gen && dropout_p > 0.0) {
    const at::Tensor out = attention_with_generator(qb, kb, vb, mask, dropout_p, *dropout_gen);  // [b, n, sq, hn]
    return out.permute({2, 0, 1, 3}).reshape({sq, b, heads * hn});
  }
#if MH_TORCH_AT_LEAST(2, 0)
  const at::Tensor out = at::scaled_dot_product_attention(qb, kb, vb, mask, dropout_p, /*is_causal=*/false);
#else
  const at::Tensor scores = at::matmul(qb, kb.transpose(-2, -1)) / std::sqrt(static_cast<double>(hn)) + mask;
  const at::Tensor probs = at::dropout(at::softmax(scores, -1), dropout_p, dropout_p > 0.0);  // [b, n, sq, sk]
  const at::Tensor out = at::matmul(probs, vb);                                               // [b, n, sq, hn]
#endif
  return out.permute({2, 0, 1, 3}).reshape({sq, b, heads * hn});  // [sq, b, np * hn]
}

at::Tensor padded_dot_product_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                        const at::Tensor& key_padding, bool causal, double dropout_p) {
  const int64_t sq = q.size(0), b = q.size(1), heads = q.size(2), groups = k.size(2), hn = q.size(3);
  const int64_t sk = k.size(0);
  at::Tensor key = k, value = v;
  if (groups != heads) {
    key = k.repeat_interleave(heads / groups, /*dim=*/2);
    value = v.repeat_interleave(heads / groups, /*dim=*/2);
  }
  at::Tensor keep = key_padding.to(at::kBool).view({b, 1, 1, sk}).expand({b, 1, sq, sk});  // [b, 1, sq, sk]
  if (causal) {
    const at::Tensor pos_q = at::arange(sq, q.options().dtype(at::kLong)), pos_k = at::arange(sk, pos_q.options());
    keep = keep.logical_and((pos_q.unsqueeze(1) >= pos_k.unsqueeze(0)).view({1, 1, sq, sk}));
  }
  const at::Tensor qb = q.permute({1, 2, 0, 3}), kb = key.permute({1, 2, 0, 3}), vb = value.permute({1, 2, 0, 3});
  const at::Tensor out = compat::masked_attention(qb, kb, vb, keep, dropout_p);  // [b, n, sq, hn]
  return out.permute({2, 0, 1, 3}).reshape({sq, b, heads * hn});              // [sq, b, np * hn]
}

bool select_attention_backend(const std::string& name) {
  if (name == "auto") return compat::set_attention_kernels(true, true, true, true), true;
  if (name == "flash") return compat::set_attention_kernels(true, false, false, true), true;
  if (name == "cudnn" || name == "fused") return compat::set_attention_kernels(false, false, true, true), true;
  if (name == "efficient") return compat::set_attention_kernels(false, true, false, true), true;
  if (name == "math" || name == "unfused" || name == "local") return compat::set_attention_kernels(false, false, false, true), true;
  return false;
}

}  // namespace megahost::sdk::nn
