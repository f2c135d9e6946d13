// A tiny GPT split into pipeline stages, run by core::run_schedule, against the whole model in
// one process: shared by the in-process (threads) and multi-process (Gloo) tests.
#pragma once

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "megahost/core/config.h"
#include "megahost/core/engine/pipeline_layout.h"
#include "megahost/core/engine/schedules.h"
#include "megahost/core/instances.h"
#include "megahost/core/plugins.h"
#include "megahost/megahost.h"

namespace gptpp {

namespace core = megahost::core;

constexpr int64_t kVocab = 64, kSeq = 8, kMicroBatchSize = 2, kMicroBatches = 4, kLayers = 4;

inline const core::PluginRegistry& registry() {
  static const core::PluginRegistry reg({MEGAHOST_BUILD_PLUGIN_DIR});
  return reg;
}

// 4 layers, hidden 16, learned positions, no dropout; tied (GPT-2) or untied embeddings.
inline core::ConfigSection model_section(bool untied) {
  std::string t =
      "num_layers = 4\nhidden_size = 16\nnum_attention_heads = 2\nseq_length = 8\n"
      "max_position_embeddings = 16\nhidden_dropout = 0.0\nattention_dropout = 0.0\n";
  if (untied) t += "untie_embeddings_and_output_weights = true\n";
  return core::parse_config_section(t, "recipe.toml", "model");
}

// Micro-batch m: seeded random tokens, next-token labels, a few masked tokens.
inline core::MicroBatch micro_batch(int64_t m) {
  at::Generator gen = at::detail::createCPUGenerator(1234 + m);
  const at::Tensor seq = at::randint(kVocab, {kMicroBatchSize, kSeq + 1}, gen, at::kLong);
  at::Tensor mask = at::ones({kMicroBatchSize, kSeq}, at::kFloat);
  mask.index_put_({0, m % kSeq}, 0.0f);
  const at::Tensor pos = at::arange(kSeq, at::kLong).unsqueeze(0).expand({kMicroBatchSize, kSeq}).contiguous();
  return {{"tokens", seq.narrow(1, 0, kSeq).contiguous()},
          {"labels", seq.narrow(1, 1, kSeq).contiguous()},
          {"loss_mask", mask},
          {"position_ids", pos}};
}

// One rank's result: the last stage's losses, and every gradient by name (a name held by two
// stages, the tied embedding, appears twice).
struct RankResult {
  std::vector<core::Loss> losses;
  std::vector<std::pair<std::string, at::Tensor>> grads;
};

inline std::vector<std::unique_ptr<core::Model>> build_chunks(bool untied, int64_t pp, int64_t layers_per_virtual,
                                                              int64_t rank) {
  std::vector<std::unique_ptr<core::Model>> chunks;
  for (const core::StageSpec& s : core::stages_for_rank(kLayers, pp, layers_per_virtual, rank)) {
    core::ModelOptions opts;
    opts.padded_vocab_size = kVocab;
    opts.layer_offset = s.layer_offset;
    opts.num_stage_layers = s.num_layers;
    opts.stage_flags = s.stage_flags;
    chunks.push_back(core::create_model(registry(), "gpt", model_section(untied), opts));
  }
  return chunks;
}

// One training step's forward/backward over kMicroBatches (grad_scale 1 / kMicroBatches, as
// the trainer does) on this rank's chunks; comm == nullptr: no pipelining.
inline RankResult run_step(std::vector<std::unique_ptr<core::Model>>& chunks, core::PipelineComm* comm) {
  core::ScheduleArgs args;
  for (auto& c : chunks) args.chunks.push_back(c.get());
  args.num_microbatches = kMicroBatches;
  args.micro_batch_size = kMicroBatchSize;
  args.batch = micro_batch;
  args.grad_scale = 1.0 / kMicroBatches;
  args.comm = comm;
  RankResult r;
  r.losses = core::run_schedule(args);
  for (auto& c : chunks)
    for (const core::Param& p : c->params()) r.grads.emplace_back(p.name, p.grad.clone());
  return r;
}

inline RankResult reference(bool untied) {
  auto whole = build_chunks(untied, 1, 0, 0);
  return run_step(whole, nullptr);
}

// Losses within 1e-5 relative; every gradient (copies of a shared name summed, as the host's
// "embedding" all-reduce does) within 1e-5 of the reference relative to its largest entry.
inline void expect_matches(const RankResult& ref, const std::vector<RankResult>& ranks) {
  const RankResult& last = ranks.back();
  ASSERT_EQ(last.losses.size(), ref.losses.size());
  for (size_t m = 0; m < ref.losses.size(); ++m) {
    EXPECT_EQ(last.losses[m].num_tokens, ref.losses[m].num_tokens) << "micro-batch " << m;
    EXPECT_NEAR(last.losses[m].loss_sum, ref.losses[m].loss_sum, 1e-5 * std::abs(ref.losses[m].loss_sum))
        << "micro-batch " << m;
  }
  for (size_t r = 0; r + 1 < ranks.size(); ++r) EXPECT_TRUE(ranks[r].losses.empty()) << "rank " << r;

  std::map<std::string, at::Tensor> summed;
  for (const RankResult& r : ranks)
    for (const auto& [name, g] : r.grads) {
      auto it = summed.find(name);
      if (it == summed.end()) summed.emplace(name, g.clone());
      else it->second.add_(g);
    }
  ASSERT_EQ(summed.size(), ref.grads.size());
  for (const auto& [name, want] : ref.grads) {
    auto it = summed.find(name);
    ASSERT_NE(it, summed.end()) << name << " is held by no stage";
    const double scale = want.abs().max().item<double>();
    ASSERT_GT(scale, 0.0) << name << ": the reference gradient is zero (the test would prove nothing)";
    EXPECT_LE((it->second - want).abs().max().item<double>(), 1e-5 * scale) << name;
  }
}

}  // namespace gptpp
