// T5 model (see t5_model.h).
#include "t5_model.h"

#include <ATen/ATen.h>

#include "megahost/sdk/error.h"
#include "megahost/sdk/nn/cross_entropy.h"
#include "megahost/sdk/nn/flops.h"
#include "megahost/sdk/parallel/random.h"

namespace megahost::t5 {

using sdk::nn::Init;
using sdk::nn::join_name;

CrossAttention::CrossAttention(sdk::nn::ParamRegistry& reg, const std::string& prefix,
                               const sdk::nn::TransformerConfig& cfg)
    : linear_q(reg, join_name(prefix, "linear_q"), cfg.hidden_size, cfg.query_projection_size(), cfg.add_bias_linear,
               Init::normal(cfg.init_method_std), cfg.parallel),
      linear_kv(reg, join_name(prefix, "linear_kv"), cfg.hidden_size, 2 * cfg.query_projection_size(),
                cfg.add_bias_linear, Init::normal(cfg.init_method_std), cfg.parallel),
      linear_proj(reg, join_name(prefix, "linear_proj"), cfg.query_projection_size(), cfg.hidden_size,
                  cfg.add_bias_linear, Init::normal(cfg.output_layer_init_std()), cfg.parallel),
      head_dim_(cfg.kv_channels) {}

at::Tensor CrossAttention::forward(const at::Tensor& x, const at::Tensor& memory, const at::Tensor& memory_keep,
                                   double attention_dropout, bool skip_bias) const {
  const at::Tensor q_all = linear_q.forward(x);        // [sd, b, np/tp * hn]
  const at::Tensor kv_all = linear_kv.forward(memory);  // [se, b, np/tp * 2hn]
  const int64_t heads = q_all.size(2) / head_dim_;
  const at::Tensor q = q_all.view({q_all.size(0), q_all.size(1), heads, head_dim_});  // [sd, b, np/tp, hn]
  const at::Tensor kv = kv_all.view({kv_all.size(0), kv_all.size(1), heads, 2 * head_dim_});
  const at::Tensor k = kv.narrow(3, 0, head_dim_), v = kv.narrow(3, head_dim_, head_dim_);  // [se, b, np/tp, hn]
  const at::Tensor context =
      sdk::nn::padded_dot_product_attention(q, k, v, memory_keep, /*causal=*/false, attention_dropout);
  return linear_proj.forward(context, skip_bias);  // [sd, b, h]
}

DecoderLayer::DecoderLayer(sdk::nn::ParamRegistry& reg, const std::string& prefix, const sdk::nn::TransformerConfig& cfg)
    : input_layernorm(reg, join_name(prefix, "input_layernorm"), cfg.hidden_size, cfg.normalization, cfg.norm_epsilon),
      self_attention(reg, join_name(prefix, "self_attention"), cfg),
      pre_mlp_layernorm(reg, join_name(prefix, "pre_mlp_layernorm"), cfg.hidden_size, cfg.normalization,
                        cfg.norm_epsilon),
      mlp(reg, join_name(prefix, "mlp"), cfg),
      // Registered after the MLP; names follow Megatron-Core's T5 layers (checkpoints are keyed by name).
      pre_cross_attn_layernorm(reg, join_name(prefix, "pre_cross_attn_layernorm"), cfg.hidden_size,
                               cfg.normalization, cfg.norm_epsilon),
      cross_attention(reg, join_name(prefix, "cross_attention"), cfg),
      hidden_dropout_(cfg.hidden_dropout),
      attention_dropout_(cfg.attention_dropout),
      parallel_(cfg.parallel) {}

at::Tensor DecoderLayer::forward(const at::Tensor& x, const at::Tensor& keep, const at::Tensor& memory,
                                 const at::Tensor& memory_keep, bool training) const {
  return forward_deferred({x, at::Tensor(), at::Tensor()}, keep, memory, memory_keep, training).materialize();
}

sdk::nn::DeferredResidual DecoderLayer::forward_deferred(const sdk::nn::DeferredResidual& in, const at::Tensor& keep,
                                                         const at::Tensor& memory, const at::Tensor& memory_keep,
                                                         bool training) const {
  const double p = training ? hidden_dropout_ : 0.0, pa = training ? attention_dropout_ : 0.0;
  const auto [normed_in, x] = in.norm_with(input_layernorm);  // the previous layer's last add, fused
  // Each sub-layer's hidden dropout and output bias join the next norm's add (on CUDA).
  const sdk::nn::HiddenDropoutPlan plan = sdk::nn::plan_hidden_dropout(p, normed_in);
  auto deferred = [&](const at::Tensor& residual, const at::Tensor& out, const at::Tensor& bias) {
    const at::Tensor delta = plan.in_norm ? out : sdk::parallel::hidden_dropout(out, p, training, parallel_.get());
    return sdk::nn::DeferredResidual{residual, delta, plan.fold_bias ? bias : at::Tensor(), at::Tensor(),
                                     plan.norm_p, parallel_};
  };
  at::Tensor q, k, v;  // [sd, b, np/tp, hn]: this rank's heads
  self_attention.query_key_value(normed_in, &q, &k, &v);
  const at::Tensor context = sdk::nn::padded_dot_product_attention(q, k, v, keep, /*causal=*/true, pa);
  const at::Tensor attn = self_attention.linear_proj.forward(context, plan.fold_bias);  // [sd, b, h]
  const auto [normed_c, h] =
      deferred(x, attn, self_attention.linear_proj.bias).norm_with(pre_cross_attn_layernorm);
  const at::Tensor cross = cross_attention.forward(normed_c, memory, memory_keep, pa, plan.fold_bias);
  const auto [normed_m, h2] = deferred(h, cross, cross_attention.linear_proj.bias).norm_with(pre_mlp_layernorm);
  return deferred(h2, mlp.forward(normed_m, plan.fold_bias), mlp.linear_fc2.bias);
}

T5Model::T5Model(const T5Config& cfg, at::Device device, at::ScalarType param_dtype, uint64_t init_seed)
    : params(device, param_dtype, init_seed), cfg_(cfg) {
  const sdk::nn::TransformerConfig& t = cfg.transformer;
  const int64_t h = t.hidden_size;
  const Init normal = Init::normal(t.init_method_std);
  // Megatron-Core's T5Model: one embedding for encoder and decoder, encoder, decoder, lm_head.
  word_embeddings_.emplace(params, "embedding.word_embeddings", cfg.padded_vocab_size, h, normal, t.parallel);
  position_embeddings_.emplace(params, "embedding.position_embeddings", cfg.max_position_embeddings, h, normal);
  sdk::nn::TransformerConfig encoder = t;
  encoder.attn_mask_type = sdk::nn::AttnMaskType::Padding;  // every real token sees every real token
  encoder_.emplace(params, "encoder", encoder, 0, t.num_layers, /*with_final_layernorm=*/true);
  for (int64_t i = 0; i < t.num_layers; ++i)
    decoder_.push_back(std::make_unique<DecoderLayer>(params, "decoder.layers." + std::to_string(i), t));
  decoder_final_layernorm_.emplace(params, "decoder.final_layernorm", h, t.normalization, t.norm_epsilon);
  // T5LMHead: the tied word embeddings plus its own vocab-parallel bias.
  output_bias_ = sdk::nn::create_tensor_parallel(params, "lm_head.output_layer.bias", {cfg.padded_vocab_size},
                                                 Init::zeros(), 0, MH_PARAM_NO_WEIGHT_DECAY, t.parallel.get());
}

at::Tensor T5Model::embed(const at::Tensor& tokens, bool training) const {
  const int64_t b = tokens.size(0), s = tokens.size(1);
  MH_CHECK(s <= cfg_.max_position_embeddings, MH_ERR_INVALID_ARG, "t5: sequence length ", s,
           " exceeds max_position_embeddings = ", cfg_.max_position_embeddings,
           "\nHINT: raise max_position_embeddings in [model] or feed shorter sequences");
  const at::Tensor pos = at::arange(s, tokens.options()).unsqueeze(0).expand({b, s});           // [b, s]
  const at::Tensor e = word_embeddings_->forward(tokens) + position_embeddings_->forward(pos);  // [b, s, h]
  const at::Tensor x = sdk::nn::embeddings_to_hidden_states(e, cfg_.transformer.parallel.get());  // [s, b, h]
  return sdk::parallel::hidden_dropout(x, training ? cfg_.transformer.hidden_dropout : 0.0, training,
                                       cfg_.transformer.parallel.get());
}

at::Tensor T5Model::encode(const at::Tensor& text_enc, const at::Tensor& enc_mask, bool training) const {
  const at::Tensor keep = enc_mask.to(at::kBool);  // [b, se]
  return encoder_->forward(embed(text_enc, training), /*rotary_freqs=*/at::Tensor(), training, keep);  // [se, b, h]
}

at::Tensor T5Model::decode(const at::Tensor& text_dec, const at::Tensor& dec_mask, const at::Tensor& memory,
                           const at::Tensor& enc_mask, bool training) const {
  at::Tensor x = embed(text_dec, training);  // [sd, b, h]
  const at::Tensor keep = dec_mask.to(at::kBool), memory_keep = enc_mask.to(at::kBool);
  sdk::nn::DeferredResidual state{x, at::Tensor(), at::Tensor()};
  for (const auto& layer : decoder_) state = layer->forward_deferred(state, keep, memory, memory_keep, training);
  return state.norm_with(*decoder_final_layernorm_).first;  // the last layer's add inside the final norm
}

at::Tensor T5Model::lm_logits(const at::Tensor& hidden) const {
  return sdk::nn::parallel_lm_logits(hidden, word_embeddings_->weight, cfg_.transformer.parallel.get()) +
         output_bias_;  // [s, b, V/tp]
}

at::Tensor T5Model::forward(const at::Tensor& text_enc, const at::Tensor& enc_mask, const at::Tensor& text_dec,
                            const at::Tensor& dec_mask, const at::Tensor& labels, bool training) const {
  const at::Tensor memory = encode(text_enc, enc_mask, training);                    // [se, b, h]
  const at::Tensor hidden = decode(text_dec, dec_mask, memory, enc_mask, training);  // [sd, b, h]
  const at::Tensor labelled = labels.ge(0);  // [b, sd]
  if (cfg_.lm_head_every_position) {
    // Every position through the head, as Megatron-Core; the padding's CE (against token 0) and
    // its gradient zeroed. Fixed shapes: a CUDA graph can hold it.
    const at::Tensor ce = sdk::nn::vocab_parallel_cross_entropy(lm_logits(hidden), labels.clamp_min(0).t(),
                                                                cfg_.transformer.parallel.get());  // [sd, b]
    return ce.t() * labelled;                                                                       // [b, sd]
  }
  // The vocabulary projection only where there is a label (padding has -1); every TP rank picks
  // the same positions.
  const at::Tensor picked = hidden.transpose(0, 1).index({labelled}).unsqueeze(1);  // [n, 1, h]
  const at::Tensor ce = sdk::nn::vocab_parallel_cross_entropy(lm_logits(picked), labels.index({labelled}).unsqueeze(1),
                                                              cfg_.transformer.parallel.get());  // [n, 1]
  return at::zeros(labels.sizes(), ce.options()).index_put({labelled}, ce.squeeze(1));  // [b, sd]
}

double train_flops_per_sample(const T5Config& c) {
  namespace flops = sdk::nn::flops;
  const sdk::nn::TransformerConfig& t = c.transformer;
  const double se = static_cast<double>(c.encoder_seq_length), sd = static_cast<double>(c.decoder_seq_length);
  const double layers = static_cast<double>(t.num_layers);  // encoder layers, and as many decoder layers
  double forward = layers * flops::self_attention_layer(t, se);
  forward += layers * (flops::self_attention_layer(t, sd) + flops::cross_attention(t, sd, se));
  forward += flops::linear(sd, static_cast<double>(t.hidden_size), static_cast<double>(c.padded_vocab_size));
  return flops::kTrainPerForward * forward;
}

}  // namespace megahost::t5
