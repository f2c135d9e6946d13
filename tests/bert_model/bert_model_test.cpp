// The bert plugin's model (plugins/models/bert/bert_model.cpp) in-process, fed by the core's BERT
// batches (core/engine/bert_batches.h) over real text: the golden Brown paragraphs, one document
// each, cut by preprocess's sentence splitter and tokenized with the golden uncased WordPiece
// vocabulary (as tests/bert_data). Trained with a small Adam loop written here.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "../common/brown_sentences.h"
#include "../common/micro_batch.h"
#include "../common/param_grads.h"
#include "bert_model.h"
#include "megahost/core/engine/bert_batches.h"

namespace {

namespace fs = std::filesystem;
using namespace megahost;
using core::data::BertDataset;
using core::data::BertSampleConfig;
using core::data::BertVocab;

constexpr int64_t kSeq = 64;

struct Corpus {
  std::shared_ptr<core::data::InMemoryTokenSource> sentences = std::make_shared<core::data::InMemoryTokenSource>();
  std::vector<int64_t> docs{0};  // D + 1 boundaries over sentences
  BertVocab vocab;
};

const Corpus& corpus() {
  static const std::unique_ptr<Corpus> c = [] {
    auto out = std::make_unique<Corpus>();
    out->docs = mhtest::brown::add_sentences(*out->sentences);
    out->vocab = mhtest::brown::bert_vocab();
    return out;
  }();
  return *c;
}

// Samples of every document, `seed` choosing pivots, swaps and masks.
std::unique_ptr<core::BertSampleSource> samples(int64_t n, uint32_t seed) {
  BertSampleConfig cfg;
  cfg.seq_length = kSeq;
  cfg.num_samples = n;
  cfg.seed = seed;
  const int64_t docs = static_cast<int64_t>(corpus().docs.size()) - 1;
  auto ds = std::make_unique<BertDataset>(*corpus().sentences, corpus().docs, core::data::DocumentRange{0, docs}, cfg,
                                          corpus().vocab, "golden brown");
  return std::make_unique<core::BertSampleSource>(corpus().sentences, std::move(ds));
}

bert::BertConfig tiny_config(bool binary_head = true) {
  bert::BertConfig c;
  auto& t = c.transformer;
  t.num_layers = 2;
  t.hidden_size = 64;
  t.num_attention_heads = 4;
  t.num_query_groups = 4;
  t.kv_channels = 16;
  t.ffn_hidden_size = 256;
  t.hidden_dropout = 0.0;
  t.attention_dropout = 0.0;
  c.padded_vocab_size = 12160;  // 12131 padded to a multiple of 128
  c.seq_length = kSeq;
  c.max_position_embeddings = kSeq;
  c.binary_head = binary_head;
  return c;
}

using mhtest::get;

struct Losses {
  at::Tensor mlm, sop;  // 0-d: mean CE over masked positions, mean CE over samples
  at::Tensor sop_logits;
};

Losses losses(const bert::BertModel& m, const core::MicroBatchTensors& b, bool training) {
  const bert::BertOutputs o = m.forward(get(b, "tokens"), get(b, "token_types"), get(b, "padding_mask"),
                                        get(b, "labels"), training);
  const at::Tensor mask = get(b, "loss_mask");
  Losses l;
  l.mlm = (o.mlm_loss * mask).sum() / mask.sum();
  if (o.sop_logits.defined()) {
    l.sop = at::cross_entropy_loss(o.sop_logits, get(b, "is_random"));
    l.sop_logits = o.sop_logits;
  }
  return l;
}

// Plain Adam (no weight decay) over the registry's parameters.
class Adam {
 public:
  Adam(const sdk::nn::ParamRegistry& reg, double lr) : reg_(reg), lr_(lr) {
    for (const auto& p : reg.params()) {
      m_.push_back(at::zeros_like(p.data));
      v_.push_back(at::zeros_like(p.data));
    }
  }
  void step() {
    at::NoGradGuard no_grad;
    ++t_;
    const double b1 = 0.9, b2 = 0.999, c1 = 1 - std::pow(b1, t_), c2 = 1 - std::pow(b2, t_);
    for (size_t i = 0; i < reg_.params().size(); ++i) {
      const auto& p = reg_.params()[i];
      m_[i].mul_(b1).add_(p.grad, 1 - b1);
      v_[i].mul_(b2).addcmul_(p.grad, p.grad, 1 - b2);
      p.data.sub_(lr_ * (m_[i] / c1) / ((v_[i] / c2).sqrt() + 1e-8));
    }
  }

 private:
  const sdk::nn::ParamRegistry& reg_;
  double lr_;
  int t_ = 0;
  std::vector<at::Tensor> m_, v_;
};

// Sentence-order accuracy of batches [first, first + n) of src.
double sop_accuracy(const bert::BertModel& m, const core::BertSampleSource& src, int64_t first, int64_t n) {
  at::NoGradGuard no_grad;
  const auto batch = core::make_bert_batch(src, static_cast<uint64_t>(first), n, at::kCPU);
  const Losses l = losses(m, batch, false);
  return (l.sop_logits.argmax(1) == get(batch, "is_random")).to(at::kDouble).mean().item<double>();
}

TEST(BertModel, MaskedLmLossFallsOnBrown) {
  at::manual_seed(1);
  at::set_num_threads(1);
  constexpr int64_t kSteps = 300, kBatch = 16;
  const auto train = samples(kSteps * kBatch, 1234);
  bert::BertModel model(tiny_config(), at::kCPU, at::kFloat, 42);
  Adam adam(model.params, 2e-3);
  double first_mlm = 0, last_mlm = 0;
  for (int64_t step = 0; step < kSteps; ++step) {
    const auto batch = core::make_bert_batch(*train, static_cast<uint64_t>(step * kBatch), kBatch, at::kCPU);
    model.params.zero_grad();
    const Losses l = losses(model, batch, true);
    (l.mlm + l.sop).backward();
    adam.step();
    const double mlm = l.mlm.item<double>();
    if (step < 10) first_mlm += mlm / 10;
    if (step >= kSteps - 10) last_mlm += mlm / 10;
  }
  // The same documents cut, swapped and masked by another seed.
  at::NoGradGuard no_grad;
  const auto held = samples(512, 777);
  double held_mlm = 0;
  for (int64_t i = 0; i < 512; i += 64)
    held_mlm += losses(model, core::make_bert_batch(*held, static_cast<uint64_t>(i), 64, at::kCPU), false).mlm.item<double>() / 8;
  std::printf("mlm loss %.3f (first 10 steps) -> %.3f (last 10), %.3f on 512 other-seed samples; "
              "sentence-order accuracy on them %.3f (chance 0.5)\n",
              first_mlm, last_mlm, held_mlm, sop_accuracy(model, *held, 0, 512));
  EXPECT_GT(first_mlm, 8.5);  // ~ln(12160) = 9.4 at random init
  EXPECT_LT(last_mlm, first_mlm - 2.0);
  EXPECT_LT(held_mlm, first_mlm - 2.0);
}

// The binary head learns the sentence-order labels of the samples it is trained on (a tiny model
// does not generalise sentence order within a test's budget: see the accuracy printed above).
TEST(BertModel, BinaryHeadLearnsSentenceOrder) {
  at::manual_seed(2);
  at::set_num_threads(1);
  constexpr int64_t kBatch = 32;
  const auto train = samples(kBatch, 1234);
  bert::BertModel model(tiny_config(), at::kCPU, at::kFloat, 42);
  const auto batch = core::make_bert_batch(*train, 0, kBatch, at::kCPU);
  const double before = sop_accuracy(model, *train, 0, kBatch);
  Adam adam(model.params, 1e-3);
  double first_sop = 0, last_sop = 0;
  for (int step = 0; step < 60; ++step) {
    model.params.zero_grad();
    const Losses l = losses(model, batch, true);
    (l.mlm + l.sop).backward();
    adam.step();
    if (step == 0) first_sop = l.sop.item<double>();
    last_sop = l.sop.item<double>();
  }
  const double after = sop_accuracy(model, *train, 0, kBatch);
  const int64_t swapped = get(batch, "is_random").sum().item<int64_t>();
  std::printf("sentence-order loss %.3f -> %.3f, accuracy %.3f -> %.3f on %ld samples (%ld swapped)\n", first_sop,
              last_sop, before, after, static_cast<long>(kBatch), static_cast<long>(swapped));
  ASSERT_GT(swapped, 4);  // both labels present
  ASSERT_LT(swapped, kBatch - 4);
  EXPECT_LT(last_sop, 0.2);
  EXPECT_GE(after, 0.95);
}

// The whole Brown corpus (.data/brown.jsonl, fetched by scripts/fetch_data.sh) as sentences.
const Corpus* whole_brown() {
  static const std::unique_ptr<Corpus> c = []() -> std::unique_ptr<Corpus> {
    const fs::path jsonl = fs::path(MEGAHOST_FETCHED_DATA_DIR) / "brown.jsonl";
    if (!fs::exists(jsonl)) return nullptr;
    auto out = std::make_unique<Corpus>();
    out->docs = mhtest::brown::add_sentences(*out->sentences, jsonl);
    out->vocab = mhtest::brown::bert_vocab();
    return out;
  }();
  return c.get();
}

// Sentence order on documents the model never saw: the whole Brown corpus, its last 10% of
// documents held out. DISABLED: a tiny model does not get there within a test's budget (see
// docs/models.md: held-out accuracy 0.506 / 0.494 after 400 / 600 steps of 32 samples, about 3
// minutes on the shared 2-core machine; the sentence-order training loss stays at ln 2). Kept to
// measure it: --gtest_also_run_disabled_tests --gtest_filter='*HeldOutDocuments'.
TEST(BertModel, DISABLED_BinaryHeadBeatsChanceOnHeldOutDocuments) {
  const Corpus* brown = whole_brown();
  if (brown == nullptr) GTEST_SKIP() << "no .data/brown.jsonl (scripts/fetch_data.sh fetches it)";
  at::manual_seed(3);
  constexpr int64_t kSteps = 600, kBatch = 32, kHeld = 2048;
  const int64_t docs = static_cast<int64_t>(brown->docs.size()) - 1, held_from = docs - docs / 10;
  auto dataset = [&](core::data::DocumentRange range, int64_t n, uint32_t seed) {
    BertSampleConfig cfg;
    cfg.seq_length = kSeq;
    cfg.num_samples = n;
    cfg.seed = seed;
    auto ds = std::make_unique<BertDataset>(*brown->sentences, brown->docs, range, cfg, brown->vocab, "brown");
    return std::make_unique<core::BertSampleSource>(brown->sentences, std::move(ds));
  };
  const auto train = dataset({0, held_from}, kSteps * kBatch, 1234);
  const auto held = dataset({held_from, docs}, kHeld, 99);
  bert::BertModel model(tiny_config(), at::kCPU, at::kFloat, 42);
  Adam adam(model.params, 2e-3);
  for (int64_t step = 0; step < kSteps; ++step) {
    const auto b = core::make_bert_batch(*train, static_cast<uint64_t>(step * kBatch), kBatch, at::kCPU);
    model.params.zero_grad();
    const Losses l = losses(model, b, true);
    (l.mlm + l.sop).backward();
    adam.step();
    if ((step + 1) % 200 == 0)
      std::printf("step %ld: mlm %.3f, sentence order %.3f, held-out accuracy %.4f\n", static_cast<long>(step + 1),
                  l.mlm.item<double>(), l.sop.item<double>(), sop_accuracy(model, *held, 0, kHeld));
  }
  EXPECT_GT(sop_accuracy(model, *held, 0, kHeld), 0.55);  // chance 0.5; 3 sigma over 2048 samples is 0.033
}

TEST(BertModel, OutputLayerIsTiedToWordEmbeddings) {
  bert::BertModel model(tiny_config(), at::kCPU, at::kFloat, 42);
  EXPECT_TRUE(model.output_weight().is_same(model.word_embeddings()));
  EXPECT_EQ(model.params.find("output_layer.weight"), nullptr);
  ASSERT_NE(model.params.find("output_layer.bias"), nullptr);
  EXPECT_EQ(model.params.find("output_layer.bias")->data.size(0), 12160);
  // A label id that is never an input still gets a word-embedding gradient: through the output.
  const auto& v = corpus().vocab;
  const int64_t target = 2000;
  at::Tensor tokens = at::full({1, 8}, v.mask, at::kLong);
  tokens.index_put_({0, 0}, v.cls);
  tokens.index_put_({0, 7}, v.sep);
  at::Tensor labels = at::full({1, 8}, -1, at::kLong);
  labels.index_put_({0, 3}, target);
  const bert::BertOutputs o = model.forward(tokens, at::zeros_like(tokens), at::ones_like(tokens), labels, true);
  o.mlm_loss.select(1, 3).sum().backward();
  const at::Tensor grad = model.params.find("embedding.word_embeddings.weight")->grad;
  EXPECT_GT(grad[target].abs().sum().item<double>(), 0.0);
  EXPECT_GT(grad[v.mask].abs().sum().item<double>(), 0.0);  // and the input rows, as embeddings
}

TEST(BertModel, AttentionIsBidirectionalAndIgnoresPadding) {
  at::NoGradGuard no_grad;
  bert::BertModel model(tiny_config(), at::kCPU, at::kFloat, 42);
  const auto batch = core::make_bert_batch(*samples(64, 1234), 0, 1, at::kCPU);
  at::Tensor tokens = get(batch, "tokens"), types = get(batch, "token_types"), pad = get(batch, "padding_mask");
  const int64_t real = pad.sum().item<int64_t>();
  ASSERT_GE(real, 4);
  const at::Tensor h = model.encode(tokens, types, pad, false);  // [s, 1, h]
  // Changing the last real token changes the first position's output (no causal mask) ...
  at::Tensor later = tokens.clone();
  later.index_put_({0, real - 2}, (tokens[0][real - 2].item<int64_t>() + 1) % 12000);
  EXPECT_GT((model.encode(later, types, pad, false)[0] - h[0]).abs().max().item<double>(), 1e-4);
  // ... changing a padded position changes no real position's output.
  if (real < kSeq) {
    at::Tensor padded = tokens.clone();
    padded.index_put_({0, kSeq - 1}, 1234);
    const at::Tensor h2 = model.encode(padded, types, pad, false);
    EXPECT_LT((h2.narrow(0, 0, real) - h.narrow(0, 0, real)).abs().max().item<double>(), 1e-6);
  }
}

TEST(BertModel, WithoutBinaryHeadNoPoolerNoTokenTypes) {
  bert::BertModel model(tiny_config(false), at::kCPU, at::kFloat, 42);
  for (const char* name : {"pooler.dense.weight", "binary_head.weight", "embedding.tokentype_embeddings.weight"})
    EXPECT_EQ(model.params.find(name), nullptr) << name;
  const bert::BertOutputs o = model.forward(at::full({2, 8}, 5, at::kLong), at::zeros({2, 8}, at::kLong),
                                            at::ones({2, 8}, at::kLong), at::zeros({2, 8}, at::kLong), false);
  EXPECT_FALSE(o.sop_logits.defined());
  EXPECT_EQ(o.mlm_loss.sizes(), (std::vector<int64_t>{2, 8}));
}

// The vocabulary projection runs on the labelled positions only: each one's loss must land on its
// own position, equal to what it is when every position is labelled, and the others stay 0.
TEST(BertModel, EachMaskedLmLossLandsOnItsOwnPosition) {
  at::NoGradGuard no_grad;
  bert::BertModel model(tiny_config(false), at::kCPU, at::kFloat, 42);
  at::manual_seed(7);
  const at::Tensor tokens = at::randint(1000, 2000, {3, kSeq}, at::kLong);
  const at::Tensor hidden = model.encode(tokens, at::zeros_like(tokens), at::ones_like(tokens), false);  // [s, b, h]
  const at::Tensor all_labels = at::randint(0, 12000, {3, kSeq}, at::kLong);
  const at::Tensor every = model.heads(hidden, all_labels).mlm_loss;  // [b, s]
  ASSERT_TRUE((every > 0).all().item<bool>());
  const at::Tensor keep = at::rand({3, kSeq}).lt(0.2);
  const at::Tensor some = model.heads(hidden, at::where(keep, all_labels, at::full_like(all_labels, -1))).mlm_loss;
  ASSERT_GT(keep.sum().item<int64_t>(), 0);
  EXPECT_TRUE(at::allclose(some.masked_select(keep), every.masked_select(keep), 1e-6, 1e-6));
  EXPECT_EQ(some.masked_select(keep.logical_not()).abs().max().item<double>(), 0.0);
}

// Under CUDA graphs the head runs over every position (fixed shapes) and masks the loss after:
// the same per-position losses and the same gradient for every parameter as the labelled-only head.
TEST(BertModel, LmHeadOverEveryPositionEqualsTheLabelledOnes) {
  bert::BertConfig every_cfg = tiny_config();
  every_cfg.lm_head_every_position = true;
  bert::BertModel picked(tiny_config(), at::kCPU, at::kFloat, 42), every(every_cfg, at::kCPU, at::kFloat, 42);
  const auto batch = core::make_bert_batch(*samples(64, 1234), 0, 4, at::kCPU);
  const at::Tensor labels = get(batch, "labels");
  ASSERT_GT(labels.ge(0).sum().item<int64_t>(), 0);
  ASSERT_GT(labels.lt(0).sum().item<int64_t>(), 0);
  at::Tensor losses[2];
  bert::BertModel* models[2] = {&picked, &every};
  for (int i = 0; i < 2; ++i) {
    const bert::BertOutputs o = models[i]->forward(get(batch, "tokens"), get(batch, "token_types"),
                                                   get(batch, "padding_mask"), labels, /*training=*/false);
    (o.mlm_loss.sum() + o.sop_logits.sum()).backward();
    losses[i] = o.mlm_loss.detach();
  }
  EXPECT_TRUE(at::allclose(losses[1], losses[0], 1e-5, 1e-6));
  EXPECT_EQ(losses[1].masked_select(labels.lt(0)).abs().max().item<double>(), 0.0);
  mhtest::expect_same_grads(picked.params, every.params, 1e-4);
}

// The TFLOP/s line's model FLOPs against a count of every matrix product of the tiny model
// ([m, k] x [k, n]: 2mkn FLOPs forward, x3 with backward), and against GPT's formula (FORMATS.md
// §5) for the same encoder without the BERT-only heads.
TEST(BertModel, TrainFlopsCountEveryMatrixProduct) {
  const bert::BertConfig c = tiny_config();  // 2 layers, h 64, 4 heads x 16, ffn 256, s 64, V 12160
  const double s = 64, h = 64, heads = 4, d = 16, f = 256, V = 12160, L = 2;
  struct Product {
    double m, k, n, times;
  };
  const std::vector<Product> forward = {
      {s, h, 3 * heads * d, L},  // linear_qkv
      {s, d, s, L * heads},      // Q K^T per head
      {s, s, d, L * heads},      // probabilities x V per head
      {s, heads * d, h, L},      // linear_proj
      {s, h, f, L},              // linear_fc1
      {s, f, h, L},              // linear_fc2
      {s, h, h, 1},              // lm_head.dense (every position)
      {s, h, V, 1},              // output layer (tied)
      {1, h, h, 1},              // pooler on [CLS]
      {1, h, 2, 1},              // binary head
  };
  double count = 0;
  for (const Product& p : forward) count += 3 * 2 * p.m * p.k * p.n * p.times;
  EXPECT_DOUBLE_EQ(bert::train_flops_per_sample(c), count);
  EXPECT_DOUBLE_EQ(count, 344482560.0);  // by hand: 2 x 22020096 (layers) + 1572864 + 298844160 + 24576 + 768
  // Without the binary head and lm_head.dense it is GPT's 72 s l h^2 (1 + s / 6h + V / 12lh).
  const double gpt = 72 * s * L * h * h * (1 + s / (6 * h) + V / (12 * L * h));
  EXPECT_DOUBLE_EQ(bert::train_flops_per_sample(tiny_config(false)) - 3 * 2 * s * h * h, gpt);
}

}  // namespace
