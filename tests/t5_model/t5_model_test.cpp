// Megatron's T5 samples (core/data/t5_samples.h) over real text — the golden Brown paragraphs,
// one document each, cut by preprocess's sentence splitter and tokenized with the golden uncased
// WordPiece vocabulary — and the t5 plugin's model (plugins/models/t5/t5_model.cpp) in-process.
#include <gtest/gtest.h>
#include <unistd.h>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "../common/brown_sentences.h"
#include "../common/micro_batch.h"
#include "../common/param_grads.h"
#include "megahost/core/data/t5_samples.h"
#include "megahost/core/engine/t5_batches.h"
#include "megahost/core/error.h"
#include "t5_model.h"
#include "wordpiece_tokenizer.h"

namespace {

namespace fs = std::filesystem;
using namespace megahost;
using core::data::T5Dataset;
using core::data::T5Sample;
using core::data::T5SampleConfig;
using core::data::T5Vocab;

constexpr int64_t kEnc = 64, kDec = 32;

struct Corpus {
  std::shared_ptr<core::data::InMemoryTokenSource> sentences = std::make_shared<core::data::InMemoryTokenSource>();
  std::vector<int64_t> docs{0};  // D + 1 boundaries over sentences
  T5Vocab vocab;
};

const Corpus& corpus() {
  static const std::unique_ptr<Corpus> c = [] {
    auto out = std::make_unique<Corpus>();
    out->docs = mhtest::brown::add_sentences(*out->sentences);
    out->vocab = core::data::t5_vocab_of(core::data::megatron_wordpiece_vocab(mhtest::brown::vocab_pieces(), 100),
                                         "golden vocab");
    return out;
  }();
  return *c;
}

T5SampleConfig config(int64_t n, uint32_t seed, double mask_prob = 0.15) {
  T5SampleConfig cfg;
  cfg.encoder_seq_length = kEnc;
  cfg.decoder_seq_length = kDec;
  cfg.num_samples = n;
  cfg.seed = seed;
  cfg.masked_lm_prob = mask_prob;
  return cfg;
}

std::unique_ptr<T5Dataset> dataset(const T5SampleConfig& cfg, const core::data::BertCacheOptions& cache = {}) {
  const int64_t docs = static_cast<int64_t>(corpus().docs.size()) - 1;
  return std::make_unique<T5Dataset>(*corpus().sentences, corpus().docs, core::data::DocumentRange{0, docs}, cfg,
                                     corpus().vocab, "golden brown", cache);
}

// The run's text, cut to its target (what the sample corrupts).
std::vector<int64_t> run_text(const T5Dataset& ds, int64_t i) {
  const auto& idx = ds.sample_index();
  std::vector<int64_t> out;
  for (int64_t s = idx[3 * i]; s < idx[3 * i + 1]; ++s) {
    std::vector<int64_t> t(static_cast<size_t>(corpus().sentences->sequence_lengths()[s]));
    corpus().sentences->read(static_cast<uint64_t>(s), 0, t.size(), t.data());
    out.insert(out.end(), t.begin(), t.end());
  }
  out.resize(std::min<size_t>(out.size(), static_cast<size_t>(idx[3 * i + 2])));
  return out;
}

TEST(T5Samples, VocabularyMatchesTheTokenizer) {
  // Megatron's tokenizer: file pieces, [BOS], [EOS], <extra_id_0..99>; the core's copy must agree.
  tokenizers::bert::BertWordPieceTokenizer tok(mhtest::brown::wordpiece_vocab(), true, 100);
  const std::vector<std::string> pieces = core::data::megatron_wordpiece_vocab(mhtest::brown::vocab_pieces(), 100);
  ASSERT_EQ(static_cast<int64_t>(pieces.size()), tok.vocab_size());
  for (size_t i = 0; i < pieces.size(); ++i) ASSERT_EQ(pieces[i], tok.token(static_cast<int32_t>(i))) << i;
  const T5Vocab& v = corpus().vocab;
  ASSERT_EQ(v.sentinels.size(), 100u);
  EXPECT_EQ(tok.token(static_cast<int32_t>(v.sentinels[7])), "<extra_id_7>");
  EXPECT_EQ(tok.token(static_cast<int32_t>(v.bos)), "[BOS]");
  EXPECT_EQ(tok.token(static_cast<int32_t>(v.eos)), "[EOS]");
}

// megatron_t5_spans.json: Megatron-LM's _create_masked_lm_predictions with pretrain_t5's settings
// and T5MaskedWordPieceDataset's encoder / decoder assembly, run under numpy 1.24's
// RandomState(seed) on 48 texts of the golden Brown ids (targets 12..510, mask_prob 0.15 and 0.3).
TEST(T5Samples, SpansEqualMegatronsUnderNumpy) {
  std::ifstream in(fs::path(MEGAHOST_T5_TEST_DIR) / "megatron_t5_spans.json");
  ASSERT_TRUE(in.good());
  const nlohmann::json golden = nlohmann::json::parse(in);
  int64_t spans = 0;
  for (const auto& c : golden.at("cases")) {
    const auto tokens = c.at("tokens").get<std::vector<int64_t>>();
    const int64_t target = c.at("target").get<int64_t>();
    T5SampleConfig cfg = config(1, 0, c.at("mask_prob").get<double>());
    cfg.encoder_seq_length = target + 2;
    cfg.decoder_seq_length = 1024;  // never the limit here
    core::data::NumpyRandomState rng(c.at("seed").get<uint32_t>());
    const T5Sample s = core::data::corrupt_spans(tokens, target, cfg, corpus().vocab, rng);
    const auto enc_len = std::count(s.enc_mask.begin(), s.enc_mask.end(), 1);
    const auto dec_len = std::count(s.dec_mask.begin(), s.dec_mask.end(), 1);
    const std::string at = c.at("seed").dump() + " / " + std::to_string(target);
    EXPECT_EQ(std::vector<int64_t>(s.text_enc.begin(), s.text_enc.begin() + enc_len),
              c.at("encoder").get<std::vector<int64_t>>()) << at;
    EXPECT_EQ(std::vector<int64_t>(s.text_dec.begin(), s.text_dec.begin() + dec_len),
              c.at("decoder_input").get<std::vector<int64_t>>()) << at;
    EXPECT_EQ(std::vector<int64_t>(s.labels.begin(), s.labels.begin() + dec_len), c.at("labels").get<std::vector<int64_t>>())
        << at;
    spans += s.num_spans;
  }
  EXPECT_EQ(golden.at("cases").size(), 48u);
  EXPECT_GT(spans, 100);
}

TEST(T5Samples, SentinelsSplitTheTextBetweenEncoderAndDecoder) {
  auto ds = dataset(config(300, 1234));
  const T5Vocab& v = corpus().vocab;
  int64_t unmasked = 0;
  for (int64_t i = 0; i < ds->size(); ++i) {
    const T5Sample s = ds->sample(i);
    ASSERT_EQ(s.text_enc.size(), static_cast<size_t>(kEnc));
    ASSERT_EQ(s.text_dec.size(), static_cast<size_t>(kDec));
    const int64_t enc_len = std::count(s.enc_mask.begin(), s.enc_mask.end(), 1);
    const int64_t dec_len = std::count(s.dec_mask.begin(), s.dec_mask.end(), 1);
    // No span only when every word is longer than the tokens to predict (Megatron's behaviour too).
    unmasked += s.num_spans == 0;
    ASSERT_EQ(dec_len, 1 + s.num_spans + s.num_masked) << i;
    ASSERT_EQ(enc_len, s.num_tokens - s.num_masked + s.num_spans) << i;
    ASSERT_EQ(s.text_dec[0], v.bos);
    // labels = the decoder input shifted left, then [EOS]; -1 and loss 0 on padding.
    for (int64_t p = 0; p < kDec; ++p) {
      const int64_t want = p < dec_len - 1 ? s.text_dec[p + 1] : p == dec_len - 1 ? v.eos : -1;
      ASSERT_EQ(s.labels[p], want) << i << " @" << p;
      ASSERT_EQ(s.loss_mask[p], p < dec_len ? 1 : 0);
      if (p >= dec_len) ASSERT_EQ(s.text_dec[p], v.pad);
    }
    // Undo the corruption: sentinel k in the encoder -> the decoder's tokens after sentinel k.
    std::vector<std::vector<int64_t>> spans;
    for (int64_t p = 1; p < dec_len; ++p) {
      if (spans.size() < v.sentinels.size() && s.text_dec[p] == v.sentinels[spans.size()]) spans.emplace_back();
      else spans.back().push_back(s.text_dec[p]);
    }
    ASSERT_EQ(static_cast<int64_t>(spans.size()), s.num_spans);
    std::vector<int64_t> text;
    size_t k = 0;
    for (int64_t p = 0; p < enc_len; ++p) {
      if (k < spans.size() && s.text_enc[p] == v.sentinels[k]) {
        ASSERT_FALSE(spans[k].empty());
        text.insert(text.end(), spans[k].begin(), spans[k].end());
        ++k;
      } else {
        text.push_back(s.text_enc[p]);
      }
    }
    ASSERT_EQ(k, spans.size()) << "sentinels in order, " << i;
    ASSERT_EQ(text, run_text(*ds, i)) << i;
    for (int64_t p = enc_len; p < kEnc; ++p) ASSERT_EQ(s.text_enc[p], v.pad);
  }
  EXPECT_LT(unmasked, ds->size() / 20);
}

TEST(T5Samples, MaskingStatisticsFollowTheConfiguredRate) {
  for (double rate : {0.15, 0.3}) {
    auto ds = dataset(config(2000, 99, rate));
    int64_t tokens = 0, masked = 0, spans = 0, samples = 0;
    for (int64_t i = 0; i < ds->size(); ++i) {
      const T5Sample s = ds->sample(i);
      tokens += s.num_tokens;
      masked += s.num_masked;
      spans += s.num_spans;
      ++samples;
    }
    const double got = static_cast<double>(masked) / static_cast<double>(tokens);
    const double span_len = static_cast<double>(masked) / static_cast<double>(spans);
    std::printf("mask_prob %.2f: %lld samples, %.4f of %lld tokens masked, %.2f tokens per span\n", rate,
                static_cast<long long>(samples), got, static_cast<long long>(tokens), span_len);
    // num_to_predict = round(|tokens| * rate) per sample (at least 1): the rate within 0.01.
    EXPECT_NEAR(got, rate, 0.01) << "mask_prob " << rate;
    // Spans of geometric(0.2) words (mean 5 before clipping to 10 and shrinking to fit): several
    // tokens each, far from single-token masking.
    EXPECT_GT(span_len, 2.0);
    EXPECT_LT(span_len, 8.0);
  }
}

TEST(T5Samples, DeterministicPerSeedAndCached) {
  const fs::path dir = fs::temp_directory_path() / ("megahost_t5_cache_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  core::data::BertCacheOptions cache;
  cache.folder = dir.string();
  auto built = dataset(config(200, 5), cache);
  auto loaded = dataset(config(200, 5), cache);
  EXPECT_FALSE(built->loaded_from_cache());
  EXPECT_TRUE(loaded->loaded_from_cache());
  EXPECT_NE(built->cache_files().find("T5MaskedWordPieceDataset-train-"), std::string::npos);
  EXPECT_EQ(built->sample_index(), loaded->sample_index());
  auto other = dataset(config(200, 6));
  int differ = 0;
  for (int64_t i = 0; i < 20; ++i) {
    EXPECT_EQ(built->sample(i).text_enc, loaded->sample(i).text_enc);
    EXPECT_EQ(built->sample(i).labels, loaded->sample(i).labels);
    differ += built->sample(i).text_enc != other->sample(i).text_enc;
  }
  EXPECT_GT(differ, 10) << "another seed, other samples";
  fs::remove_all(dir);
}

void expect_refused(const T5SampleConfig& cfg, const T5Vocab& vocab, const std::vector<std::string>& words) {
  try {
    core::data::validate_t5_config(cfg, vocab);
    ADD_FAILURE() << "accepted";
  } catch (const core::Error& e) {
    for (const auto& w : words) EXPECT_NE(std::string(e.what()).find(w), std::string::npos) << w << " in " << e.what();
  }
}

TEST(T5Samples, RefusesConfigurationsThatCannotHoldTheSpans) {
  // 62 tokens at 0.15 mask up to 9: with [BOS] and a sentinel the decoder needs 11 positions.
  T5SampleConfig c = config(10, 1);
  c.decoder_seq_length = 10;
  expect_refused(c, corpus().vocab, {"decoder_seq_length = 10 is too small for the spans", ">= 11", "HINT"});
  c.decoder_seq_length = 11;
  EXPECT_NO_THROW(core::data::validate_t5_config(c, corpus().vocab));
  // Up to 9 spans fit a 32-token decoder: 5 sentinels are too few.
  const T5Vocab few = core::data::t5_vocab_of(core::data::megatron_wordpiece_vocab(mhtest::brown::vocab_pieces(), 5), "vocab");
  expect_refused(config(10, 1), few, {"5 sentinel tokens", "up to 9 masked spans", "vocab_extra_ids = 100"});
  const T5Vocab none = core::data::t5_vocab_of(core::data::megatron_wordpiece_vocab(mhtest::brown::vocab_pieces(), 0), "vocab");
  expect_refused(config(10, 1), none, {"0 sentinel tokens"});
  T5SampleConfig bad_rate = config(10, 1, 1.5);
  expect_refused(bad_rate, corpus().vocab, {"masked_lm_prob = 1.5"});
  std::vector<std::string> no_pad = mhtest::brown::vocab_pieces();
  std::replace(no_pad.begin(), no_pad.end(), std::string("[PAD]"), std::string("[PADDING]"));
  EXPECT_THROW(core::data::t5_vocab_of(no_pad, "vocab"), core::Error);
}

// ---- the model ----

t5::T5Config tiny_config() {
  t5::T5Config c;
  auto& t = c.transformer;
  t.num_layers = 2;
  t.hidden_size = 32;
  t.num_attention_heads = 4;
  t.num_query_groups = 4;
  t.kv_channels = 8;
  t.ffn_hidden_size = 64;
  t.hidden_dropout = 0.0;
  t.attention_dropout = 0.0;
  c.padded_vocab_size = 12288;
  c.encoder_seq_length = kEnc;
  c.decoder_seq_length = kDec;
  c.max_position_embeddings = kEnc;
  return c;
}

using mhtest::get;

TEST(T5Model, DecoderIsCausalAndPaddingIsIgnored) {
  at::manual_seed(0);
  t5::T5Model model(tiny_config(), at::kCPU, at::kFloat, 7);
  core::T5SampleSource src(corpus().sentences, dataset(config(8, 3)));
  const core::MicroBatchTensors b = core::make_t5_batch(src, 0, 4, at::kCPU);
  const at::Tensor enc = get(b, "text_enc"), enc_mask = get(b, "enc_mask"), dec = get(b, "text_dec");
  const at::Tensor dec_mask = get(b, "dec_mask");
  at::NoGradGuard no_grad;
  const at::Tensor memory = model.encode(enc, enc_mask, false);            // [se, b, h]
  const at::Tensor out = model.decode(dec, dec_mask, memory, enc_mask, false);  // [sd, b, h]
  // Other ids on the encoder's padding change nothing the decoder sees.
  const at::Tensor enc2 = at::where(enc_mask.to(at::kBool), enc, at::full_like(enc, 17));
  EXPECT_TRUE(at::allclose(model.decode(dec, dec_mask, model.encode(enc2, enc_mask, false), enc_mask, false), out,
                           1e-5, 1e-6));
  // Changing decoder token 5 changes positions >= 5 only.
  at::Tensor dec2 = dec.clone();
  dec2.select(1, 5).fill_(42);
  const at::Tensor out2 = model.decode(dec2, dec_mask, memory, enc_mask, false);
  EXPECT_TRUE(at::allclose(out2.narrow(0, 0, 5), out.narrow(0, 0, 5), 1e-5, 1e-6));
  EXPECT_FALSE(at::allclose(out2.narrow(0, 5, 1), out.narrow(0, 5, 1), 1e-5, 1e-6));
  // The decoder reads the encoder: other encoder text, other decoder output.
  const at::Tensor enc3 = at::where(enc_mask.to(at::kBool), at::full_like(enc, 100), enc);
  EXPECT_FALSE(at::allclose(model.decode(dec, dec_mask, model.encode(enc3, enc_mask, false), enc_mask, false), out,
                            1e-5, 1e-6));
}

TEST(T5Model, OutputLayerIsTiedToWordEmbeddings) {
  t5::T5Model model(tiny_config(), at::kCPU, at::kFloat, 7);
  core::T5SampleSource src(corpus().sentences, dataset(config(8, 3)));
  const core::MicroBatchTensors b = core::make_t5_batch(src, 0, 4, at::kCPU);
  const at::Tensor hidden = at::randn({3, 2, 32});
  const at::Tensor logits = model.lm_logits(hidden);  // [3, 2, V]
  EXPECT_TRUE(at::allclose(logits, at::matmul(hidden, model.word_embeddings().t()), 1e-5, 1e-5));  // bias starts 0
  const at::Tensor ce = model.forward(get(b, "text_enc"), get(b, "enc_mask"), get(b, "text_dec"), get(b, "dec_mask"),
                                      get(b, "labels"), true);
  EXPECT_EQ(ce.sizes(), (std::vector<int64_t>{4, kDec}));
  EXPECT_TRUE(at::all(ce.masked_select(get(b, "loss_mask") == 0) == 0).item<bool>());
  (ce.sum() / get(b, "loss_mask").sum()).backward();
  // The embedding's grad includes the output layer's: rows of label ids that are never inputs.
  const at::Tensor g = model.word_embeddings().grad();
  ASSERT_TRUE(g.defined());
  const at::Tensor eos_row = g.select(0, corpus().vocab.eos);  // [EOS] is a label only
  EXPECT_GT(eos_row.abs().sum().item<double>(), 0.0);
}

// Under CUDA graphs the head runs over every decoder position (fixed shapes) and masks the loss
// after: the same per-position losses and the same gradient for every parameter as the
// labelled-only head.
TEST(T5Model, LmHeadOverEveryPositionEqualsTheLabelledOnes) {
  t5::T5Config every_cfg = tiny_config();
  every_cfg.lm_head_every_position = true;
  t5::T5Model picked(tiny_config(), at::kCPU, at::kFloat, 7), every(every_cfg, at::kCPU, at::kFloat, 7);
  core::T5SampleSource src(corpus().sentences, dataset(config(8, 3)));
  const core::MicroBatchTensors b = core::make_t5_batch(src, 0, 4, at::kCPU);
  const at::Tensor labels = get(b, "labels");
  ASSERT_GT(labels.lt(0).sum().item<int64_t>(), 0);  // padding in the decoder
  at::Tensor ce[2];
  t5::T5Model* models[2] = {&picked, &every};
  for (int i = 0; i < 2; ++i) {
    ce[i] = models[i]->forward(get(b, "text_enc"), get(b, "enc_mask"), get(b, "text_dec"), get(b, "dec_mask"), labels,
                               /*training=*/false);
    ce[i].sum().backward();
  }
  EXPECT_TRUE(at::allclose(ce[1], ce[0], 1e-5, 1e-6));
  EXPECT_EQ(ce[1].detach().masked_select(labels.lt(0)).abs().max().item<double>(), 0.0);
  mhtest::expect_same_grads(picked.params, every.params, 1e-4);
}

// On CUDA the decoder's residual adds, with the output biases of linear_proj and linear_fc2, run
// inside the next fused norm (the encoder's too, as the SDK's block): the same losses and every
// parameter's gradient as the CPU's plain adds. Hidden 256 in float32: the norm's register
// kernels (64 threads per row).
TEST(T5Model, CudaModelMatchesTheCpuModel) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA in this libtorch or machine";
  t5::T5Config cfg = tiny_config();
  cfg.transformer.hidden_size = 256;
  cfg.transformer.kv_channels = 64;
  cfg.transformer.ffn_hidden_size = 512;
  t5::T5Model cpu(cfg, at::kCPU, at::kFloat, 7), gpu(cfg, at::kCUDA, at::kFloat, 7);
  core::T5SampleSource src(corpus().sentences, dataset(config(8, 3)));
  const core::MicroBatchTensors b = core::make_t5_batch(src, 0, 4, at::kCPU);
  auto run = [&](t5::T5Model& m, const at::Device& d) {
    const at::Tensor ce = m.forward(get(b, "text_enc").to(d), get(b, "enc_mask").to(d), get(b, "text_dec").to(d),
                                    get(b, "dec_mask").to(d), get(b, "labels").to(d), /*training=*/true);
    ce.sum().backward();
    return ce.detach().cpu();
  };
  const at::Tensor want = run(cpu, at::kCPU), got = run(gpu, at::kCUDA);
  EXPECT_TRUE(at::allclose(got, want, 1e-3, 1e-4)) << (got - want).abs().max().item<double>();
  ASSERT_EQ(cpu.params.params().size(), gpu.params.params().size());
  for (size_t i = 0; i < cpu.params.params().size(); ++i) {
    const auto &a = cpu.params.params()[i], &g = gpu.params.params()[i];
    ASSERT_TRUE(g.data.is_cuda()) << g.name;
    EXPECT_TRUE(at::equal(a.data, g.data.cpu())) << a.name;  // init is drawn on the CPU
    ASSERT_TRUE(g.grad.defined()) << g.name;
    EXPECT_TRUE(at::allclose(g.grad.cpu(), a.grad, 1e-2, 1e-4))
        << a.name << ": max difference " << (g.grad.cpu() - a.grad).abs().max().item<double>();
  }
}

// The TFLOP/s line's model FLOPs against a count of every matrix product of the tiny model
// ([m, k] x [k, n]: 2mkn FLOPs forward, x3 with backward).
TEST(T5Model, TrainFlopsCountEveryMatrixProduct) {
  const t5::T5Config c = tiny_config();  // 2 + 2 layers, h 32, 4 heads x 8, ffn 64, se 64, sd 32, V 12288
  const double se = kEnc, sd = kDec, h = 32, heads = 4, d = 8, f = 64, V = 12288, L = 2;
  struct Product {
    double m, k, n, times;
  };
  const std::vector<Product> forward = {
      // encoder layers
      {se, h, 3 * heads * d, L}, {se, d, se, L * heads}, {se, se, d, L * heads}, {se, heads * d, h, L},
      {se, h, f, L}, {se, f, h, L},
      // decoder self-attention and MLP
      {sd, h, 3 * heads * d, L}, {sd, d, sd, L * heads}, {sd, sd, d, L * heads}, {sd, heads * d, h, L},
      {sd, h, f, L}, {sd, f, h, L},
      // cross-attention: linear_q on the decoder, linear_kv on the encoder output, scores, values, proj
      {sd, h, heads * d, L}, {se, h, 2 * heads * d, L}, {sd, d, se, L * heads}, {sd, se, d, L * heads},
      {sd, heads * d, h, L},
      // output layer (tied) at every decoder position
      {sd, h, V, 1},
  };
  double count = 0;
  for (const Product& p : forward) count += 3 * 2 * p.m * p.k * p.n * p.times;
  EXPECT_DOUBLE_EQ(t5::train_flops_per_sample(c), count);
  EXPECT_DOUBLE_EQ(count, 92798976.0);  // by hand: 9437184 (encoder) + 7864320 (decoder) + 75497472 (output)
}

}  // namespace
