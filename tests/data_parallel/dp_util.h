// Shared by the data-parallel tests: the gpt and adamw plugins, a tiny GPT, its batches, and one
// training iteration done the plain way (one process, the trainer's math) or through DataParallel.
#pragma once

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "../optimizers/load_only.h"
#include "megahost/core/config.h"
#include "megahost/core/error.h"
#include "megahost/core/engine/data_parallel.h"
#include "megahost/core/instances.h"
#include "megahost/core/plugins.h"

namespace dptest {

namespace core = megahost::core;
using Batch = std::vector<std::pair<std::string, at::Tensor>>;

inline const core::PluginRegistry& registry() {
  static const auto reg = megahost::test::load_only({MH_TEST_GPT_PLUGIN, MH_TEST_OPTIMIZERS_PLUGIN});
  return *reg;
}

constexpr int64_t kVocab = 64, kSeq = 16;

// 2 layers, hidden 32, tied embeddings, no dropout: small enough for seconds per test.
inline std::unique_ptr<core::Model> tiny_gpt(uint32_t parallel_flags = 0, DLDataType dtype = {kDLFloat, 32, 1},
                                             const std::string& extra = "", const core::ModelOptions& stage = {}) {
  auto cfg = core::parse_config_section(
      "num_layers = 2\nhidden_size = 32\nnum_attention_heads = 4\nseq_length = 16\n"
      "max_position_embeddings = 32\nhidden_dropout = 0.0\nattention_dropout = 0.0\n" + extra,
      "test.toml", "model");
  core::ModelOptions opts = stage;
  opts.padded_vocab_size = kVocab;
  opts.parallel_flags = parallel_flags;
  opts.param_dtype = dtype;
  return core::create_model(registry(), "gpt", cfg, opts);
}

// toml: plugin keys of the [optimizer] table (and the host's use_precision_aware_optimizer).
inline std::unique_ptr<core::Optimizer> adamw(const std::string& toml = "") {
  auto cfg = core::parse_config_section(toml, "test.toml", "optimizer");
  return core::create_optimizer(registry(), "adamw", cfg, {kDLCPU, 0}, {"use_precision_aware_optimizer"});
}

// Global sample `index` of iteration `it`: [1, s] random tokens and labels.
inline Batch sample(int64_t it, int64_t index) {
  at::Generator gen = at::detail::createCPUGenerator(static_cast<uint64_t>(1000 * it + index + 1));
  return {{"tokens", at::randint(kVocab, {1, kSeq}, gen, at::kLong)},
          {"labels", at::randint(kVocab, {1, kSeq}, gen, at::kLong)},
          {"loss_mask", at::ones({1, kSeq}, at::kFloat)}};
}

constexpr int64_t kGlobalBatch = 4, kIters = 3;
// lr 1e-3: the key part of linear_qkv.bias has a zero gradient in exact math (softmax ignores a
// per-key shift), so its float gradient is rounding noise that AdamW normalises to steps of
// ~lr/10 whose sign depends on summation order: a per-step difference nothing can remove.
constexpr double kLr = 1e-3, kWd = 0.1, kClip = 0.5;

struct IterResult {
  double loss_sum = 0;  // sum over this rank's micro-batches of loss_sum / num_tokens
  double grad_norm = 0;
};

// The trainer's global-norm clipping (core/src/engine/trainer.cpp), on the model's own grads.
inline double clip_plain(std::vector<core::Param>& params, double max_norm) {
  at::NoGradGuard no_grad;
  double sq = 0;
  for (auto& p : params) sq += p.grad.to(at::kDouble).pow(2).sum().item<double>();
  const double norm = std::sqrt(sq);
  const double coeff = max_norm / (norm + 1e-6);
  if (coeff < 1.0)
    for (auto& p : params) p.grad.mul_(coeff);
  return norm;
}

// One process, the whole global batch (micro-batch size 1), as the trainer does today.
inline IterResult plain_iteration(core::Model& m, core::Optimizer& opt, core::Model::AbiParams& abi, int64_t it) {
  IterResult r;
  m.zero_grad();
  for (int64_t i = 0; i < kGlobalBatch; ++i) {
    const core::Loss l = m.forward_backward(sample(it, i), 1.0 / kGlobalBatch);
    r.loss_sum += l.loss_sum / l.num_tokens;
  }
  auto params = m.params();
  r.grad_norm = clip_plain(params, kClip);
  opt.step(abi, kLr, kWd, it + 1);
  return r;
}

// Data-parallel rank `rank` of `dp`: micro-batches m * dp + rank (Megatron's sample order).
inline IterResult dp_iteration(core::Model& m, core::DataParallel& dp, core::Optimizer& opt, int64_t it,
                               int64_t rank, int64_t size) {
  IterResult r;
  dp.before_forward();  // as the trainer: a model that gates finishes each pending update as it needs it
  dp.zero_grad();
  const int64_t local = kGlobalBatch / size;
  for (int64_t k = 0; k < local; ++k) {
    dp.enable_grad_sync(k == local - 1);
    const core::Loss l = m.forward_backward(sample(it, k * size + rank), 1.0 / static_cast<double>(local));
    r.loss_sum += l.loss_sum / l.num_tokens;
  }
  dp.finish_grad_sync();
  r.grad_norm = dp.grad_norm_and_clip(kClip);
  dp.step(opt, kLr, kWd, it + 1);
  return r;
}

}  // namespace dptest
