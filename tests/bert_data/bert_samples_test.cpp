// BERT samples (Megatron's BERTMaskedWordPieceDataset semantics) over a real sentence-split corpus:
// the golden Brown paragraphs, one document each, cut by `preprocess --split-sentences`'s splitter
// and tokenized with the golden uncased WordPiece vocabulary.
#include <gtest/gtest.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "../common/brown_sentences.h"
#include "megahost/core/data/bert_samples.h"

namespace {

namespace fs = std::filesystem;
using namespace megahost::core::data;


// Sentences of every golden text as documents, plus the vocabulary facts.
struct Corpus {
  InMemoryTokenSource source;
  std::vector<int64_t> docs{0};  // .idx document indices: D + 1 boundaries over sentences
  BertVocab vocab;
};

const Corpus& corpus() {
  static const std::unique_ptr<Corpus> c = [] {
    auto out = std::make_unique<Corpus>();
    out->docs = mhtest::brown::add_sentences(out->source);
    out->vocab = mhtest::brown::bert_vocab();
    return out;
  }();
  return *c;
}

int64_t num_docs() { return static_cast<int64_t>(corpus().docs.size()) - 1; }

BertSampleConfig config(int64_t samples = 400, uint32_t seed = 1234) {
  BertSampleConfig cfg;
  cfg.seq_length = 64;
  cfg.num_samples = samples;
  cfg.seed = seed;
  return cfg;
}

BertDataset dataset(const BertSampleConfig& cfg, const BertCacheOptions& cache = {}) {
  return BertDataset(corpus().source, corpus().docs, {0, num_docs()}, cfg, corpus().vocab, "brown (train)", cache);
}

// The tokens before masking: labels where masked, the tokens elsewhere.
std::vector<int64_t> unmasked(const BertSample& s) {
  std::vector<int64_t> out = s.tokens;
  for (size_t p = 0; p < out.size(); ++p)
    if (s.loss_mask[p]) out[p] = s.labels[p];
  return out;
}

std::vector<int64_t> sentence_tokens(int64_t first, int64_t end) {
  std::vector<int64_t> out;
  for (int64_t s = first; s < end; ++s) {
    const int32_t n = corpus().source.sequence_lengths()[s];
    const size_t at = out.size();
    out.resize(at + n);
    corpus().source.read(s, 0, n, out.data() + at);
  }
  return out;
}

int64_t document_of(int64_t sentence) {
  const auto& d = corpus().docs;
  return static_cast<int64_t>(std::upper_bound(d.begin(), d.end(), sentence) - d.begin()) - 1;
}

fs::path scratch() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  const fs::path p = fs::temp_directory_path() / ("mh_bert_data_" + std::string(info->name()) + "_" +
                                                  std::to_string(::getpid()));
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(p, ec)) fs::remove(e.path(), ec);
  fs::create_directories(p);
  return p;
}

}  // namespace

TEST(BertData, CorpusIsSentenceSplit) {
  // Brown paragraphs become documents of several sentences, with "##" pieces among the tokens.
  int64_t multi = 0;
  for (int64_t d = 0; d < num_docs(); ++d) multi += corpus().docs[d + 1] - corpus().docs[d] >= 3;
  EXPECT_GE(multi, 60);
  EXPECT_EQ(corpus().vocab.cls, 12);  // ids are line numbers from 0 (golden README)
  EXPECT_EQ(corpus().vocab.sep, 13);
  EXPECT_EQ(corpus().vocab.mask, 14);
  EXPECT_EQ(corpus().vocab.pad, 0);
}

TEST(BertData, SampleIndexIsMegatronsSentenceRuns) {
  // One epoch (num_samples = 1): the runs partition every usable document's sentences, in order.
  const BertSampleConfig cfg = config(1);
  const auto rows = build_bert_sample_index(corpus().docs, corpus().source.sequence_lengths(), {0, num_docs()}, cfg,
                                            "brown");
  std::vector<std::array<int64_t, 3>> runs;
  for (size_t r = 0; r < rows.size(); r += 3) runs.push_back({rows[r], rows[r + 1], rows[r + 2]});
  EXPECT_FALSE(std::is_sorted(runs.begin(), runs.end())) << "the sample index is shuffled";
  std::sort(runs.begin(), runs.end());
  const auto& lengths = corpus().source.sequence_lengths();
  size_t k = 0;
  int64_t shorter = 0;
  for (int64_t d = 0; d < num_docs(); ++d) {
    const int64_t first = corpus().docs[d], last = corpus().docs[d + 1];
    if (last - first < 2) continue;  // the binary head needs two sentences
    for (int64_t s = first; s < last;) {
      ASSERT_LT(k, runs.size());
      ASSERT_EQ(runs[k][0], s) << "document " << d;
      const int64_t end = runs[k][1], target = runs[k][2];
      ASSERT_LE(end, last) << "run crosses the end of document " << d;
      ASSERT_GE(target, 2);
      ASSERT_LE(target, cfg.target_length());
      shorter += target < cfg.target_length();
      int64_t tokens = 0;
      for (int64_t t = s; t < end; ++t) tokens += lengths[t];
      // Ends at the target (with >= 2 sentences and more than one left) or at the document's end.
      if (end < last) {
        EXPECT_GE(tokens, target);
        EXPECT_GE(end - s, 2);
        EXPECT_GT(last - end, 0);
      }
      s = end;
      ++k;
    }
  }
  EXPECT_EQ(k, runs.size());
  EXPECT_GT(shorter, 0) << "short_seq_prob = 0.1 gives some shorter targets";
  EXPECT_LT(shorter, static_cast<int64_t>(runs.size()) / 3);
}

TEST(BertData, StructureTokenTypesAndPadding) {
  for (bool binary : {true, false}) {
    BertSampleConfig cfg = config();
    cfg.binary_head = binary;
    const BertDataset ds = dataset(cfg);
    ASSERT_GE(ds.size(), cfg.num_samples);
    int64_t random = 0, padded = 0;
    for (int64_t i = 0; i < ds.size(); ++i) {
      const BertSample s = ds.sample(i);
      const auto orig = unmasked(s);
      ASSERT_EQ(static_cast<int64_t>(s.tokens.size()), cfg.seq_length);
      int64_t real = 0;
      for (int64_t m : s.padding_mask) real += m;
      ASSERT_LE(real, ds.sample_index()[3 * i + 2] + 3);
      padded += real < cfg.seq_length;
      ASSERT_EQ(orig[0], corpus().vocab.cls);
      ASSERT_EQ(orig[real - 1], corpus().vocab.sep);
      std::vector<int64_t> seps;
      for (int64_t p = 0; p < real; ++p)
        if (orig[p] == corpus().vocab.sep) seps.push_back(p);
      ASSERT_EQ(seps.size(), binary ? 2u : 1u) << "sample " << i;
      for (int64_t p = 0; p < real; ++p) {
        ASSERT_EQ(s.padding_mask[p], 1);
        ASSERT_EQ(s.token_types[p], p <= seps[0] ? 0 : 1) << "sample " << i << " position " << p;
      }
      for (int64_t p = real; p < cfg.seq_length; ++p) {
        ASSERT_EQ(s.tokens[p], corpus().vocab.pad);
        ASSERT_EQ(s.token_types[p], 0);
        ASSERT_EQ(s.padding_mask[p], 0);
        ASSERT_EQ(s.labels[p], -1);
        ASSERT_EQ(s.loss_mask[p], 0);
      }
      // [CLS] and [SEP] are never masked; labels are -1 exactly where the loss mask is 0.
      for (int64_t p = 0; p < cfg.seq_length; ++p) {
        ASSERT_EQ(s.labels[p] >= 0, s.loss_mask[p] == 1);
        if (p == 0 || std::count(seps.begin(), seps.end(), p)) {
          ASSERT_EQ(s.loss_mask[p], 0);
        }
      }
      random += s.is_random;
      if (!binary) {
        ASSERT_EQ(s.is_random, 0);
      }
    }
    if (binary) {
      const double frac = static_cast<double>(random) / ds.size();
      EXPECT_NEAR(frac, 0.5, 0.08) << "A and B are swapped with probability 0.5";
    }
    EXPECT_GT(padded, 0);
  }
}

TEST(BertData, NoSampleCrossesADocumentAndSwapMeansReversedOrder) {
  const BertDataset ds = dataset(config());
  int64_t checked = 0;
  for (int64_t i = 0; i < ds.size(); ++i) {
    const BertSample s = ds.sample(i);
    const int64_t d = document_of(s.first_sentence);
    ASSERT_LE(s.end_sentence, corpus().docs[d + 1]) << "sample " << i << " crosses document " << d;
    ASSERT_GE(s.end_sentence - s.first_sentence, 2);
    // A and B are contiguous pieces of the sample's sentences; B follows A unless swapped.
    const auto orig = unmasked(s);
    const auto text = sentence_tokens(s.first_sentence, s.end_sentence);
    std::vector<int64_t> a, b;
    size_t p = 1;
    for (; orig[p] != corpus().vocab.sep; ++p) a.push_back(orig[p]);
    for (++p; orig[p] != corpus().vocab.sep; ++p) b.push_back(orig[p]);
    const auto ia = std::search(text.begin(), text.end(), a.begin(), a.end());
    const auto ib = std::search(text.begin(), text.end(), b.begin(), b.end());
    ASSERT_NE(ia, text.end()) << "segment A of sample " << i << " is not in its sentences";
    ASSERT_NE(ib, text.end()) << "segment B of sample " << i << " is not in its sentences";
    if (a.size() >= 8 && b.size() >= 8) {
      EXPECT_EQ(s.is_random == 1, ia > ib) << "sample " << i;
      ++checked;
    }
  }
  EXPECT_GT(checked, ds.size() / 2);
}

TEST(BertData, MaskingRatesMatchTheConfiguration) {
  int64_t adjacent[4] = {};  // masked positions whose right neighbour is masked too, per max_ngram
  for (int ngram : {1, 3}) {
    BertSampleConfig cfg = config(2000);
    cfg.max_ngram = ngram;
    const BertDataset ds = dataset(cfg);
    int64_t tokens = 0, masked = 0, as_mask = 0, unchanged = 0, replaced = 0;
    for (int64_t i = 0; i < ds.size(); ++i) {
      const BertSample s = ds.sample(i);
      for (int64_t p = 0; p < cfg.seq_length; ++p) {
        tokens += s.padding_mask[p];
        if (!s.loss_mask[p]) continue;
        ++masked;
        adjacent[ngram] += p + 1 < cfg.seq_length && s.loss_mask[p + 1];
        if (s.tokens[p] == corpus().vocab.mask) ++as_mask;
        else if (s.tokens[p] == s.labels[p]) ++unchanged;
        else ++replaced;
      }
    }
    const double m = static_cast<double>(masked);
    // Megatron's rate: round(|tokens| * 0.15) per sample, |tokens| counting [CLS] and [SEP].
    EXPECT_NEAR(m / tokens, 0.15, 0.01) << "max_ngram " << ngram;
    EXPECT_NEAR(as_mask / m, 0.80, 0.02);
    EXPECT_NEAR(unchanged / m, 0.10, 0.02);
    EXPECT_NEAR(replaced / m, 0.10, 0.02);
  }
  // n-grams of up to 3 words (P(n) ~ 1/n) mask longer runs than single words.
  EXPECT_GT(adjacent[3], adjacent[1] * 3 / 2) << adjacent[3] << " vs " << adjacent[1];
}

TEST(BertData, WholeWordMaskingMasksAllPiecesOfAWord) {
  const auto& cont = corpus().vocab.is_continuation;
  for (bool whole : {true, false}) {
    BertSampleConfig cfg = config(1000);
    cfg.whole_word_masking = whole;
    cfg.max_ngram = 1;
    const BertDataset ds = dataset(cfg);
    int64_t split_words = 0, whole_words = 0;
    for (int64_t i = 0; i < ds.size(); ++i) {
      const BertSample s = ds.sample(i);
      const auto orig = unmasked(s);
      // Words: a first piece and the "##" pieces after it.
      for (int64_t p = 1; p < cfg.seq_length && s.padding_mask[p]; ++p) {
        if (cont[orig[p]] || orig[p] == corpus().vocab.sep) continue;
        int64_t q = p + 1;
        while (q < cfg.seq_length && s.padding_mask[q] && cont[orig[q]]) ++q;
        if (q - p < 2) continue;  // a one-piece word
        int64_t n = 0;
        for (int64_t r = p; r < q; ++r) n += s.loss_mask[r];
        if (n == q - p) ++whole_words;
        else if (n > 0) ++split_words;
      }
    }
    if (whole) {
      EXPECT_EQ(split_words, 0) << "whole-word masking left a word partly masked";
      EXPECT_GT(whole_words, 50);
    } else {
      EXPECT_GT(split_words, 0) << "piece masking should split some words";
    }
  }
}

TEST(BertData, DeterministicPerSeedAndRebuildableAlone) {
  const BertDataset a = dataset(config(300, 7)), b = dataset(config(300, 7)), c = dataset(config(300, 8));
  EXPECT_EQ(a.sample_index(), b.sample_index());
  EXPECT_NE(a.sample_index(), c.sample_index());
  // Samples in any order equal; a different seed gives different samples.
  int64_t differ = 0;
  for (int64_t i = a.size() - 1; i >= 0; i -= 7) {
    const BertSample x = a.sample(i), y = b.sample(i);
    EXPECT_EQ(x.tokens, y.tokens);
    EXPECT_EQ(x.labels, y.labels);
    EXPECT_EQ(x.token_types, y.token_types);
    EXPECT_EQ(x.is_random, y.is_random);
    if (i < c.size()) differ += x.tokens != c.sample(i).tokens;
  }
  EXPECT_GT(differ, 0);
  const BertSample first = a.sample(5);
  for (int64_t i = 0; i < 20; ++i) (void)a.sample(i);
  EXPECT_EQ(a.sample(5).tokens, first.tokens);
}

TEST(BertData, SampleIndexIsCachedAndReused) {
  const fs::path dir = scratch();
  BertCacheOptions cache;
  cache.folder = dir.string();
  cache.dataset_path = "brown_text_sentence";
  std::vector<std::string> warnings;
  cache.log = [&](LogLevel level, const std::string& msg) {
    if (level == LogLevel::Warn) warnings.push_back(msg);
  };
  const BertDataset built = dataset(config(), cache);
  EXPECT_FALSE(built.loaded_from_cache());
  ASSERT_FALSE(built.cache_files().empty());
  EXPECT_TRUE(fs::exists(built.cache_files() + "sample_index.npy"));
  EXPECT_TRUE(fs::exists(built.cache_files() + "description.txt"));
  EXPECT_NE(built.cache_files().find("BERTMaskedWordPieceDataset-train-"), std::string::npos);

  const BertDataset loaded = dataset(config(), cache);
  EXPECT_TRUE(loaded.loaded_from_cache());
  EXPECT_EQ(loaded.sample_index(), built.sample_index());
  EXPECT_EQ(loaded.sample(3).tokens, built.sample(3).tokens);

  BertSampleConfig other = config();
  other.seq_length = 48;  // another key: another file
  const BertDataset rebuilt = dataset(other, cache);
  EXPECT_FALSE(rebuilt.loaded_from_cache());
  EXPECT_NE(rebuilt.cache_files(), built.cache_files());

  // A damaged cache is rebuilt with a warning, never used.
  std::ofstream(built.cache_files() + "sample_index.npy", std::ios::binary | std::ios::trunc) << "garbage";
  const BertDataset repaired = dataset(config(), cache);
  EXPECT_FALSE(repaired.loaded_from_cache());
  EXPECT_EQ(repaired.sample_index(), built.sample_index());
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("rebuilt"), std::string::npos) << warnings[0];
  EXPECT_TRUE(dataset(config(), cache).loaded_from_cache());
}

TEST(BertData, BadParametersAreRefusedClearly) {
  auto refused = [](const BertSampleConfig& cfg, const std::string& needle, BertVocab vocab = corpus().vocab) {
    try {
      BertDataset ds(corpus().source, corpus().docs, {0, num_docs()}, cfg, std::move(vocab), "brown (train)");
      ADD_FAILURE() << "accepted; expected an error naming " << needle;
    } catch (const megahost::core::Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(needle), std::string::npos) << msg;
      EXPECT_NE(msg.find("HINT"), std::string::npos) << msg;
    }
  };
  BertSampleConfig c = config();
  c.seq_length = 4;
  refused(c, "seq_length");
  c = config();
  c.masked_lm_prob = 0;
  refused(c, "masked_lm_prob");
  c.masked_lm_prob = 1.5;
  refused(c, "masked_lm_prob");
  c = config();
  c.short_seq_prob = -0.1;
  refused(c, "short_seq_prob");
  c = config();
  c.max_ngram = 0;
  refused(c, "max_ngram");
  c = config();
  c.num_samples = 0;
  refused(c, "num_samples");
  BertVocab no_mask = corpus().vocab;
  no_mask.mask = -1;
  refused(config(), "[MASK]", no_mask);

  // Only one-sentence documents (as without --split-sentences): the binary head has nothing.
  InMemoryTokenSource flat;
  std::vector<int64_t> docs{0};
  for (int64_t s = 0; s < 50; ++s) {
    flat.add(sentence_tokens(s, s + 1));
    docs.push_back(s + 1);
  }
  try {
    BertDataset ds(flat, docs, {0, 50}, config(), corpus().vocab, "flat (train)");
    ADD_FAILURE() << "a corpus of one-sentence documents was accepted";
  } catch (const megahost::core::Error& e) {
    EXPECT_NE(std::string(e.what()).find("--split-sentences"), std::string::npos) << e.what();
  }
  // Without the binary head one sentence per sample is enough.
  BertSampleConfig single = config();
  single.binary_head = false;
  EXPECT_GT(BertDataset(flat, docs, {0, 50}, single, corpus().vocab, "flat (train)").size(), 0);
}

TEST(BertData, ADocumentRangeKeepsItsSamplesInside) {
  // A split is a range of documents (Megatron splits sentence datasets by document).
  const auto ranges = split_sequence_ranges("80,20,0", num_docs());
  ASSERT_TRUE(ranges[1].has_value());
  const DocumentRange valid{ranges[1]->begin, ranges[1]->end};
  const BertDataset ds(corpus().source, corpus().docs, valid, config(200), corpus().vocab, "brown (valid)");
  ASSERT_GE(ds.size(), 200);
  for (int64_t i = 0; i < ds.size(); ++i) {
    const BertSample s = ds.sample(i);
    ASSERT_GE(s.first_sentence, corpus().docs[valid.begin]);
    ASSERT_LE(s.end_sentence, corpus().docs[valid.end]);
  }
}
