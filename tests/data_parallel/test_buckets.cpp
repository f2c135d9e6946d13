// Megatron's buffer arithmetic (reverse order, bucket cuts, padding to the dp-cp size, shards) and
// DataParallel in one process: equal to the trainer's plain loop, bytes per parameter measured.
#include <gtest/gtest.h>

#include <functional>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <map>

#include "dp_util.h"

using namespace dptest;

TEST(DpBuckets, ReverseOrderCutsAtBucketSize) {
  // params 0..3 with 16, 24, 32, 40 elements; bucket_size 50
  const auto plan = core::plan_buckets({16, 24, 32, 40}, {}, 50, 1);
  EXPECT_EQ(plan.numel, 112);
  EXPECT_EQ(plan.param_offset, (std::vector<int64_t>{96, 72, 40, 0}));
  ASSERT_EQ(plan.buckets.size(), 2u);  // [40, 32] = 72 >= 50 closes; [24, 16] = 40 is the last
  EXPECT_EQ(plan.buckets[0].params, (std::vector<size_t>{3, 2}));
  EXPECT_EQ(plan.buckets[0].begin, 0);
  EXPECT_EQ(plan.buckets[0].end, 72);
  EXPECT_EQ(plan.buckets[1].params, (std::vector<size_t>{1, 0}));
  EXPECT_EQ(plan.buckets[1].end, 112);
  EXPECT_EQ(plan.param_bucket, (std::vector<size_t>{1, 1, 0, 0}));
}

TEST(DpBuckets, DistributedOptimizerPadsEveryBucketAndShardsEqually) {
  const auto plan = core::plan_buckets({8, 16, 41, 24}, {}, 50, 4);
  ASSERT_EQ(plan.buckets.size(), 2u);
  EXPECT_EQ(plan.buckets[0].end, 68);  // 24 + 41 = 65 padded to a multiple of 4
  EXPECT_EQ(plan.buckets[1].begin, 68);
  EXPECT_EQ(plan.param_offset[1], 72);  // the next parameter starts aligned, inside bucket 1
  EXPECT_EQ(plan.buckets[1].end, 96);
  EXPECT_EQ(plan.numel, 96);
  EXPECT_EQ(core::bucket_shard(plan.buckets[0], 0, 4), (std::pair<int64_t, int64_t>{0, 17}));
  EXPECT_EQ(core::bucket_shard(plan.buckets[0], 3, 4), (std::pair<int64_t, int64_t>{51, 68}));
  EXPECT_EQ(core::bucket_shard(plan.buckets[1], 1, 4), (std::pair<int64_t, int64_t>{75, 82}));
}

TEST(DpBuckets, EveryParameterStartsAlignedAndNoneOverlap) {
  // BERT's shape of trouble: a 2-element bias before the big matrices.
  const std::vector<int64_t> numels{1024, 2, 3, 4096, 2, 7, 1};
  for (int64_t pad_to : {1, 2, 3}) {
    const auto plan = core::plan_buckets(numels, {}, 4000, pad_to);
    std::vector<std::pair<int64_t, int64_t>> ranges;
    for (size_t i = 0; i < numels.size(); ++i) {
      EXPECT_EQ(plan.param_offset[i] % core::kParamAlignElems, 0) << "param " << i << ", pad_to " << pad_to;
      ranges.emplace_back(plan.param_offset[i], plan.param_offset[i] + numels[i]);
    }
    std::sort(ranges.begin(), ranges.end());
    for (size_t i = 1; i < ranges.size(); ++i) EXPECT_LE(ranges[i - 1].second, ranges[i].first);
    EXPECT_LE(ranges.back().second, plan.numel);
    for (const auto& b : plan.buckets) EXPECT_EQ((b.end - b.begin) % pad_to, 0);
  }
}

TEST(DpBuckets, SharedEmbeddingGetsABucketOfItsOwn) {
  // param 0 (the embedding) alone, even though the bucket size would take everything
  const auto plan = core::plan_buckets({7, 5, 3}, {true, false, false}, 1000, 2);
  ASSERT_EQ(plan.buckets.size(), 2u);
  EXPECT_EQ(plan.buckets[0].params, (std::vector<size_t>{2, 1}));
  EXPECT_EQ(plan.buckets[1].params, (std::vector<size_t>{0}));
  EXPECT_EQ(plan.buckets[0].end, 14);    // 3 at 0, 5 at 8: 13 padded to 14
  EXPECT_EQ(plan.buckets[1].begin, 14);
  EXPECT_EQ(plan.param_offset[0], 16);
  EXPECT_EQ(plan.buckets[1].end, 24);
  EXPECT_EQ(core::default_bucket_size(8), 40000000);
  EXPECT_EQ(core::default_bucket_size(64), 64000000);
}

namespace {

void expect_same_training(const core::DataParallelOptions& opts,
                          const std::function<void(core::DataParallel&)>& check = nullptr) {
  auto ref_model = tiny_gpt();
  auto ref_opt = adamw();
  auto ref_abi = ref_model->abi_params();
  ref_opt->setup(*ref_abi);
  auto model = tiny_gpt();
  core::DataParallel dp({model.get()}, opts);
  EXPECT_TRUE(dp.bound(0));
  auto opt = adamw();
  dp.setup_optimizer(*opt);
  for (int64_t it = 0; it < kIters; ++it) {
    const IterResult a = plain_iteration(*ref_model, *ref_opt, *ref_abi, it);
    const IterResult b = dp_iteration(*model, dp, *opt, it, 0, 1);
    EXPECT_NEAR(b.loss_sum, a.loss_sum, 1e-6 * a.loss_sum);
    EXPECT_NEAR(b.grad_norm, a.grad_norm, 1e-6 * a.grad_norm);
  }
  if (check) check(dp);
  dp.wait_param_gather();
  auto ref = ref_model->params(), got = model->params();
  for (size_t i = 0; i < ref.size(); ++i)
    EXPECT_LE((ref[i].data - got[i].data).abs().max().item<double>(), 1e-6) << ref[i].name;
}

}  // namespace

TEST(DpSingleProcess, EqualsThePlainLoop) { expect_same_training({}); }

TEST(DpSingleProcess, SmallBucketsOverlapAndDistributedOptimizerEqualThePlainLoop) {
  core::DataParallelOptions o;
  o.bucket_size = 3000;
  o.overlap_grad_reduce = true;
  o.use_distributed_optimizer = true;
  o.overlap_param_gather = true;
  expect_same_training(o);
}

// overlap_optimizer_step: the step in pieces of ~3000 elements, each run (on the CPU) only when
// the next forward names the parameters it holds.
TEST(DpSingleProcess, OptimizerStepInPiecesEqualsThePlainLoop) {
  core::DataParallelOptions o;
  o.overlap_optimizer_step = true;
  o.optimizer_piece_size = 3000;
  expect_same_training(o, [](core::DataParallel& dp) {
    EXPECT_TRUE(dp.gates_forward());
    EXPECT_TRUE(dp.optimizer_overlapped());
    EXPECT_GE(dp.optimizer_pieces(), 4u);
  });
}

// The gate is what finishes a piece: right after step() the parameters still hold their old
// values, a forward of the gating model reads the new ones, and a forward that does not name its
// parameters (gate cleared) would read the old ones. So a model reading a parameter it did not
// name shows up in the comparisons with the plain loop above, deterministically.
TEST(DpSingleProcess, OptimizerPiecesFinishWhenTheForwardNamesTheirParameters) {
  auto ref_model = tiny_gpt();
  auto ref_opt = adamw();
  auto ref_abi = ref_model->abi_params();
  ref_opt->setup(*ref_abi);
  auto model = tiny_gpt();
  core::DataParallelOptions o;
  o.overlap_optimizer_step = true;
  o.optimizer_piece_size = 3000;
  core::DataParallel dp({model.get()}, o);
  auto opt = adamw();
  dp.setup_optimizer(*opt);
  ASSERT_TRUE(dp.optimizer_overlapped());
  const Batch probe = sample(7, 0);
  const double loss_before = model->forward_loss(probe).loss_sum;
  std::vector<at::Tensor> before;
  for (const auto& p : model->params()) before.push_back(p.data.clone());
  plain_iteration(*ref_model, *ref_opt, *ref_abi, 0);
  dp_iteration(*model, dp, *opt, 0, 0, 1);
  const auto params = model->params();
  for (size_t i = 0; i < params.size(); ++i)
    EXPECT_TRUE(at::equal(params[i].data, before[i])) << params[i].name << " was updated before a forward needed it";
  // A forward names them: every piece runs before the layer that reads it, and the loss and the
  // parameters are the plain loop's.
  const double loss_after = model->forward_loss(probe).loss_sum, ref_loss = ref_model->forward_loss(probe).loss_sum;
  EXPECT_NEAR(loss_after, ref_loss, 1e-6 * ref_loss);
  EXPECT_GT(std::abs(loss_after - loss_before), 1e-4 * ref_loss) << "the step must change the loss";
  const auto ref = ref_model->params();
  for (size_t i = 0; i < params.size(); ++i)
    EXPECT_LE((params[i].data - ref[i].data).abs().max().item<double>(), 1e-6) << params[i].name;
}

// On CUDA the pieces run on a side stream and each layer of the next forward waits for its piece's
// event: four iterations train as the plain step does. 50 bf16 4096^3 products queued on the side
// stream before the pieces (MEGAHOST_DEBUG_OPTIMIZER_DELAY, ~10 ms on an H200) keep them late, and
// the piece model's iterations run back to back (the plain model's all ran before), so its next
// forward starts while the pieces are still queued: a layer that read its parameters without the
// gate's wait would read the old ones, and the losses would differ by about the learning rate.
// (An earlier form interleaved the two models' iterations; the plain model's work gave the pieces
// time to finish, and it passed on an H200 with the gate cleared on purpose. This form has not run
// on a GPU yet.)
TEST(DpCuda, OptimizerPiecesOnASideStreamEqualThePlainStep) {
  if (!at::hasCUDA()) GTEST_SKIP() << "needs a CUDA device";
  setenv("MEGAHOST_DEBUG_OPTIMIZER_DELAY", "50", 1);  // read once, at the first step in pieces
  core::ModelOptions on_gpu;
  on_gpu.device = {kDLCUDA, 0};
  auto cfg = core::parse_config_section("", "test.toml", "optimizer");
  auto plain_model = tiny_gpt(0, {kDLFloat, 32, 1}, "", on_gpu), model = tiny_gpt(0, {kDLFloat, 32, 1}, "", on_gpu);
  core::DataParallel plain_dp({plain_model.get()}, {});
  core::DataParallelOptions o;
  o.overlap_optimizer_step = true;
  o.optimizer_piece_size = 3000;
  core::DataParallel dp({model.get()}, o);
  auto plain_opt = core::create_optimizer(registry(), "adamw", cfg, {kDLCUDA, 0});
  auto opt = core::create_optimizer(registry(), "adamw", cfg, {kDLCUDA, 0});
  plain_dp.setup_optimizer(*plain_opt);
  dp.setup_optimizer(*opt);
  ASSERT_TRUE(dp.optimizer_overlapped());
  auto iteration = [](core::Model& m, core::DataParallel& d, core::Optimizer& opt, int64_t it) {
    double loss = 0;
    d.before_forward();
    d.zero_grad();
    for (int64_t k = 0; k < kGlobalBatch; ++k) {
      Batch b = sample(it, k);
      for (auto& [name, t] : b) t = t.to(at::kCUDA);
      const core::Loss l = m.forward_backward(b, 1.0 / kGlobalBatch);
      loss += l.loss_sum / l.num_tokens;
    }
    d.finish_grad_sync();
    d.grad_norm_and_clip(kClip);
    d.step(opt, kLr, kWd, it + 1);
    return loss;
  };
  std::vector<double> plain_losses;
  for (int64_t it = 0; it < 4; ++it) plain_losses.push_back(iteration(*plain_model, plain_dp, *plain_opt, it));
  for (int64_t it = 0; it < 4; ++it) {
    const double a = plain_losses[static_cast<size_t>(it)], b = iteration(*model, dp, *opt, it);
    EXPECT_NEAR(b, a, 1e-5 * std::abs(a)) << "iteration " << it;
  }
  plain_dp.wait_param_gather();
  dp.wait_param_gather();
  const auto ref = plain_model->params(), got = model->params();
  for (size_t i = 0; i < ref.size(); ++i)
    EXPECT_LE((ref[i].data - got[i].data).abs().max().item<double>(), 1e-5) << ref[i].name;
}

// What a GPT forward names, and in what order: the embeddings first, then each layer's
// parameters as one call before the layer runs, then the final norm; each exactly once.
TEST(ParamGate, GptNamesEveryParameterOnceInTheOrderItReadsThem) {
  auto model = tiny_gpt();
  const auto params = model->params();
  std::vector<std::pair<size_t, size_t>> calls;
  model->set_param_gate([&calls](size_t first, size_t count) { calls.emplace_back(first, count); });
  for (int pass = 0; pass < 2; ++pass) {  // the training forward, then an evaluation forward
    calls.clear();
    if (pass == 0)
      model->forward_backward(sample(0, 0), 1.0);
    else
      model->forward_loss(sample(0, 0));
    auto layer_of = [&](size_t i) {
      const std::string& n = params[i].name;
      if (n.rfind("embedding.", 0) == 0) return -1;
      if (n.rfind("decoder.layers.", 0) == 0) return std::stoi(n.substr(std::string("decoder.layers.").size()));
      return 100;  // final norm
    };
    ASSERT_EQ(calls.size(), 4u) << "embeddings, layer 0, layer 1, final norm";
    std::vector<int> seen(params.size(), 0);
    int last_layer = -2;
    for (const auto& [first, count] : calls) {
      ASSERT_GT(count, 0u);
      const int layer = layer_of(first);
      for (size_t i = first; i < first + count; ++i) {
        ASSERT_LT(i, params.size());
        ++seen[i];
        EXPECT_EQ(layer_of(i), layer) << params[i].name << " named with " << params[first].name;
      }
      EXPECT_GT(layer, last_layer) << params[first].name << " named after a later layer";
      last_layer = layer;
    }
    for (size_t i = 0; i < params.size(); ++i) EXPECT_EQ(seen[i], 1) << params[i].name;
  }
  model->set_param_gate({});
  calls.clear();
  model->forward_loss(sample(0, 0));
  EXPECT_TRUE(calls.empty());
}

// BERT's binary-head bias has 2 elements: packed back to back it put every later parameter on a
// 4-byte boundary, and cuBLASLt ran each product on them with sm80 "align2" kernels. Bound
// through DataParallel, every parameter and gradient must start 16-byte aligned.
TEST(DpSingleProcess, BoundParametersAndGradientsStartSixteenByteAligned) {
  static const auto bert_registry = megahost::test::load_only({MH_TEST_BERT_PLUGIN});
  auto cfg = core::parse_config_section(
      "num_layers = 2\nhidden_size = 32\nnum_attention_heads = 4\nseq_length = 16\n"
      "max_position_embeddings = 16\nbert_binary_head = true\n",
      "test.toml", "model");
  core::ModelOptions opts;
  opts.padded_vocab_size = kVocab;
  opts.param_dtype = {kDLBfloat, 16, 1};
  auto model = core::create_model(*bert_registry, "bert", cfg, opts);
  bool odd = false;
  for (const auto& p : model->params()) odd = odd || p.data.numel() % 8 != 0;  // 8 elements: 16 bytes in bf16
  ASSERT_TRUE(odd) << "the model must have a parameter whose size is not a multiple of the alignment";
  for (bool distributed : {false, true}) {
    core::DataParallelOptions o;
    o.use_distributed_optimizer = distributed;
    core::DataParallel dp({model.get()}, o);
    ASSERT_TRUE(dp.bound(0));
    for (const auto& p : model->params()) {
      EXPECT_EQ(reinterpret_cast<uintptr_t>(p.data.data_ptr()) % 16, 0u) << p.name;
      EXPECT_EQ(reinterpret_cast<uintptr_t>(p.grad.data_ptr()) % 16, 0u) << p.name;
    }
  }
}

TEST(DpSingleProcess, MemoryPerParameterIsMeasured) {
  auto model = tiny_gpt();
  core::DataParallel dp({model.get()}, {});
  auto opt = adamw();
  dp.setup_optimizer(*opt);
  const core::DataParallelMemory m = dp.memory(opt.get());
  EXPECT_EQ(m.param_buffer_bytes, 4 * m.num_params);  // fp32, no padding without the distributed optimizer
  EXPECT_EQ(m.grad_buffer_bytes, 4 * m.num_params);
  EXPECT_EQ(m.master_bytes, 0);
  // AdamW: exp_avg + exp_avg_sq in fp32 (+ a step counter)
  EXPECT_NEAR(static_cast<double>(m.optimizer_state_bytes), 8.0 * m.num_params, 64.0);
  EXPECT_NEAR(m.bytes_per_param(), 16.0, 0.01);
}

// Two model chunks (as under interleaved pipelining: one rank, several stages) driven stage by
// stage: one buffer set per chunk, hooks per chunk, the result equals the whole model's.
TEST(DpSingleProcess, TwoChunksStageByStageEqualTheWholeModel) {
  const std::string untied = "untie_embeddings_and_output_weights = true\n";
  auto whole = tiny_gpt(0, {kDLFloat, 32, 1}, untied);
  auto ref_opt = adamw();
  auto ref_abi = whole->abi_params();
  ref_opt->setup(*ref_abi);
  core::ModelOptions first, last;
  first.layer_offset = 0;
  first.num_stage_layers = 1;
  first.stage_flags = MH_STAGE_FIRST;
  last.layer_offset = 1;
  last.num_stage_layers = 1;
  last.stage_flags = MH_STAGE_LAST;
  auto a = tiny_gpt(0, {kDLFloat, 32, 1}, untied, first), b = tiny_gpt(0, {kDLFloat, 32, 1}, untied, last);
  ASSERT_TRUE(a->has_pipeline() && b->has_pipeline());
  core::DataParallelOptions o;
  o.bucket_size = 3000;
  o.overlap_grad_reduce = true;
  o.use_distributed_optimizer = true;
  core::DataParallel dp({a.get(), b.get()}, o);
  auto opt = adamw();
  dp.setup_optimizer(*opt);
  int64_t buckets = 0;
  for (size_t c = 0; c < 2; ++c) {
    EXPECT_TRUE(dp.bound(c));
    buckets += static_cast<int64_t>(dp.plan(c).buckets.size());
  }
  for (int64_t it = 0; it < kIters; ++it) {
    const IterResult ref = plain_iteration(*whole, *ref_opt, *ref_abi, it);
    dp.wait_param_gather();
    dp.zero_grad();
    double loss_sum = 0;
    for (int64_t i = 0; i < kGlobalBatch; ++i) {
      dp.enable_grad_sync(i == kGlobalBatch - 1);
      auto fa = a->forward_stage(sample(it, i), {}, true);
      auto fb = b->forward_stage(sample(it, i), fa.activation, true);
      loss_sum += fb.loss.loss_sum / fb.loss.num_tokens;
      at::Tensor g = b->backward_stage(std::move(fb.state), {}, 1.0 / kGlobalBatch);
      a->backward_stage(std::move(fa.state), g, 1.0 / kGlobalBatch);
    }
    dp.finish_grad_sync();
    const double norm = dp.grad_norm_and_clip(kClip);
    dp.step(*opt, kLr, kWd, it + 1);
    EXPECT_NEAR(loss_sum, ref.loss_sum, 1e-6 * ref.loss_sum);
    EXPECT_NEAR(norm, ref.grad_norm, 1e-6 * ref.grad_norm);
  }
  EXPECT_EQ(dp.overlapped_launches(), kIters * buckets);
  std::map<std::string, at::Tensor> got;
  for (auto* m : {a.get(), b.get()})
    for (auto& p : m->params()) got[p.name] = p.data;
  auto ref = whole->params();
  EXPECT_EQ(got.size(), ref.size());
  for (auto& p : ref) {
    ASSERT_TRUE(got.count(p.name)) << p.name;
    EXPECT_LE((got[p.name] - p.data).abs().max().item<double>(), 1e-6) << p.name;
  }
}

// bf16 parameters keep fp32 master copies for the optimizer; a checkpoint load writes the
// parameters, reload_model_params() brings the masters along (else the next step undoes it).
TEST(DpSingleProcess, Bf16MastersFollowReloadedParams) {
  auto model = tiny_gpt(0, {kDLBfloat, 16, 1});
  core::DataParallel dp({model.get()}, {});
  auto opt = adamw();
  dp.setup_optimizer(*opt);
  const core::DataParallelMemory m = dp.memory(opt.get());
  EXPECT_EQ(m.master_bytes, 4 * m.num_params);
  EXPECT_NEAR(m.bytes_per_param(), 2 + 4 + 4 + 8, 0.01);  // Megatron's 18 bytes without sharding
  {
    at::NoGradGuard no_grad;
    for (auto& p : model->params()) p.data.fill_(0.25);  // "loaded"
  }
  dp.reload_model_params();
  dp.zero_grad();  // zero grads, no weight decay: AdamW moves nothing
  dp.step(*opt, kLr, 0.0, 1);
  for (auto& p : model->params()) EXPECT_TRUE(at::equal(p.data, at::full_like(p.data, 0.25))) << p.name;
}

// The clipping coefficient on the device is clip_coefficient's float64 value, rounded to float32,
// for every norm: below and above max_norm, zero, huge, and non-finite (1: no clipping).
TEST(DpClip, CoefficientTensorEqualsTheHostFormula) {
  using megahost::core::DataParallel;
  const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
  for (const double max_norm : {1.0, 0.05, 0.0, -1.0})
    for (const double norm : {0.0, 0.3, 1.0, 1.0 + 1e-7, 3.7, 1e30, inf, nan}) {
      SCOPED_TRACE(testing::Message() << "norm " << norm << ", max_norm " << max_norm);
      const at::Tensor t = DataParallel::clip_coefficient_tensor(at::full({1}, norm, at::kDouble), max_norm);
      ASSERT_EQ(t.scalar_type(), at::kFloat);
      ASSERT_EQ(t.numel(), 1);
      EXPECT_EQ(t.item<float>(), static_cast<float>(DataParallel::clip_coefficient(norm, max_norm)));
    }
}
